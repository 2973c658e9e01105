"""The Music tab: AppTest of its states (picks with reasons, unknown user, new listener, no models),
and one real-browser test of the whole app."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from music.data import load_dataset


def _app() -> None:
    import ui.music

    ui.music.render()


@pytest.fixture(scope="module")
def bundle():
    """A small simulated bundle in the session's private models folder (conftest's RECS_MODELS_DIR)."""
    from music.mf.train import train

    data = load_dataset("simulated", n_users=80, n_songs=250, n_artists=30, seed=2)
    return train("simulated", data=data, force=True, mf_params={"epochs": 4})


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "error", "warning") for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def test_tab_shows_history_and_picks_with_reasons(bundle):
    at = AppTest.from_function(_app, default_timeout=120).run()
    assert not at.exception, at.exception
    assert "simulated" in _texts(at).lower()  # the simulated log is labelled as such
    assert at.selectbox(key="music_dataset").value == "simulated"
    assert "About this model" in [e.label for e in at.expander]  # the dataset's model card
    user = at.selectbox(key="music_user").value
    frames = [df.value for df in at.dataframe]
    assert len(frames) >= 2  # the "Up next" section below may add its own tables when its model is trained
    picks, history = frames[:2]  # picks first, full width (reasons are sentences), then the history
    assert len(history) > 0 and len(picks) == 10
    assert {"title", "artist", "genres", "score", "why"} <= set(picks.columns)
    # the history shown is this listener's own (heaviest first), and no pick is anything they already played
    from music.mf import service
    from music.mf.train import load_bundle

    loaded = load_bundle("simulated")
    assert list(history["title"]) == list(service.history(loaded, user, n=10)["title"])
    c = loaded.mf.catalog
    seen_titles = {c.titles[i] for i in c.seen(c.users.index(user))}
    assert len(seen_titles) >= len(history) and set(history["title"]) <= seen_titles
    assert not set(picks["title"]) & seen_titles
    assert picks["why"].str.startswith(("because you listened to", "popular in")).all()
    assert f"Top 10 picks for {user}" in _texts(at)

    at.slider(key="music_top").set_value(5).run()
    assert len(at.dataframe[0].value) == 5


@pytest.mark.slow(reason="AppTest of the Music tab (~5 s)")
def test_unknown_user_and_new_listener(bundle):
    at = AppTest.from_function(_app, default_timeout=120).run()
    at.text_input(key="music_user_typed").set_value("no-such-listener").run()
    assert any("Unknown listener 'no-such-listener'" in e.value for e in at.error)
    assert len(at.dataframe) == 0

    at.text_input(key="music_user_typed").set_value("").run()
    at.radio(key="music_mode").set_value("A new listener").run()
    at.multiselect(key="music_genres").set_value(["jazz"]).run()
    assert not at.exception
    picks = at.dataframe[0].value
    assert len(picks) > 0 and picks["genres"].str.contains("jazz").all()
    assert (picks["why"] == "popular in jazz").all()
    at.multiselect(key="music_genres").set_value([]).run()
    assert any("at least one genre" in i.value for i in at.info)


def test_no_models_says_what_to_run(tmp_path, monkeypatch):
    from music.mf import data as mfdata

    monkeypatch.setattr(mfdata, "music_dir", lambda: tmp_path / "music")
    at = AppTest.from_function(_app, default_timeout=60).run()
    assert not at.exception
    assert any("python -m music train" in i.value for i in at.info)


def test_evaluation_plot_from_saved_results(bundle):
    from core.artifacts import write_json
    from music.mf.evaluate import results_path

    write_json(results_path("simulated"), {
        "dataset": "simulated", "label": "Simulated listening log (simulated)", "protocol": "test",
        "methods": {"mf": {"ndcg@10": 0.3, "hr@10": 0.6}, "popularity": {"ndcg@10": 0.1, "hr@10": 0.3}}})
    at = AppTest.from_function(_app, default_timeout=120).run()
    assert not at.exception
    assert at.selectbox(key="music_eval_dataset").value == "simulated"
    assert len(at.get("vega_lite_chart")) == 1  # the bar chart
    results_path("simulated").unlink()


@pytest.mark.slow(reason="browser")
@pytest.mark.browser
def test_music_tab_in_a_real_browser(bundle, browser_page, artifacts_dir):
    page = browser_page
    page.get_by_role("tab", name="Music").click()
    page.get_by_text("Top 10 picks for").first.wait_for()
    panel = page.get_by_role("tabpanel", name="Music")
    panel.get_by_text("simulated", exact=False).first.wait_for()
    grids = panel.locator('[data-testid="stDataFrame"]')
    grids.nth(1).wait_for()
    assert grids.count() >= 2
    page.screenshot(path=str(artifacts_dir / "music-tab.png"), full_page=True)
