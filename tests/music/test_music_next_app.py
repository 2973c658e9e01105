"""The "up next" product surface: the trained bundle, the CLI verbs and the Streamlit section.

A small simulated log (seeded, 40 listeners) keeps training to a few seconds; ``RECS_MODELS_DIR``
points at the test session's private folder (tests/conftest.py), so nothing touches ``models/``.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch").set_num_threads(1)

SMALL = {"n_users": 40, "n_songs": 300, "n_artists": 40}


@pytest.fixture(scope="module")
def bundle_trained(models_dir):
    from music.next.train import train_bundle

    out = train_bundle("simulated", init="onehot", repeat=True, epochs=2, force=True, **SMALL)
    assert out["skipped"] is False and (models_dir / "music" / "next_simulated.keras").is_file()
    again = train_bundle("simulated", init="onehot", repeat=True, epochs=2, **SMALL)
    assert again["skipped"] is True  # a fresh artifact is not retrained
    return out


def test_bundle_recommends_for_user_and_sequence(bundle_trained):
    from music.next.service import NextBundle, UnknownListener

    b = NextBundle("simulated")
    user = b.seqs.user_ids[0]
    picks = b.recommend(user=user, top=5)
    assert len(picks) == 5 and all(p.reason and p.title for p in picks)
    assert picks == sorted(picks, key=lambda p: -p.score)
    chosen = b.search_items()[:3]
    own = b.recommend(items=chosen, top=10)
    assert not {p.item for p in own} & set(chosen)  # a hand-built sequence gets what comes after it
    knn = b.recommend(items=chosen, top=3, method="session_knn")
    assert any("nearest session" in p.reason for p in knn)
    ex = b.explain(items=chosen, item=own[0].item)
    assert len(ex["positions"]) == b.cfg.L and "vertical" in ex["filters"]
    with pytest.raises(UnknownListener):
        b.recommend(user="nobody-at-all")
    with pytest.raises(ValueError):
        b.recommend(items=["not-an-item"])


def test_cli_next_prints_json_only(bundle_trained, capsys):
    from music.__main__ import main
    from music.next.service import NextBundle

    user = NextBundle("simulated").seqs.user_ids[1]
    assert main(["next", "--user", user, "--top", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 4 and {"item", "title", "score", "reason"} <= set(out[0])
    items = ",".join(NextBundle("simulated").search_items()[:2])
    assert main(["next", "--items", items, "--top", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
    assert main(["next", "--user", "nobody-at-all", "--json"]) == 2  # bad input: one readable error line
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]] and err[0].startswith("error:") and "nobody-at-all" in err[0]


def test_next_verbs_with_a_bad_argument_are_one_error_line(bundle_trained, capsys):
    """train-next, next and evaluate-next: a bad argument is one ``error: ...`` line and exit 2, no traceback."""
    from music.__main__ import main

    cases = [
        (["next", "--items", "not-an-item,also-not", "--json"], "not-an-item"),
        (["next", "--items", ",", "--json"], "empty"),
        (["next", "--user", "x", "--top", "0"], "--top"),
        (["next", "--dataset", "nosuch", "--user", "x"], "nosuch"),
        (["next"], "--user"),
        (["train-next", "--dataset", "nosuch"], "nosuch"),
        (["train-next", "--dataset", "lastfm-1k"], "--path"),
        (["train-next", "--init", "bert"], "bert"),
        (["evaluate-next", "--dataset", "csv"], "--path"),
        (["evaluate-next", "--variants", "onehot+wings"], "onehot+wings"),
        (["evaluate-next", "--split", "sideways"], "sideways"),
        (["evaluate-next", "--epochs", "0"], "--epochs"),
    ]
    for argv, needle in cases:
        try:
            code = main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
        err = capsys.readouterr().err.strip().splitlines()
        errors = [line for line in err if line.startswith("error:")]
        assert code == 2, (argv, err)
        assert len(errors) == 1 and needle in errors[0], (argv, err)
        assert not any("Traceback" in line for line in err), (argv, err)


def test_session_knn_is_built_once_under_concurrent_first_use(bundle_trained, monkeypatch):
    """The app shares one loaded bundle between sessions: concurrent first clicks build session-kNN once."""
    import threading

    from music.next import service
    from music.next.service import NextBundle

    fits = []
    real_fit = service.SessionKNN.fit

    def slow_fit(self, *args, **kwargs):
        fits.append(threading.get_ident())
        threading.Event().wait(0.2)  # widen the race window
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(service.SessionKNN, "fit", slow_fit)
    b = NextBundle("simulated")
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(b.knn)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fits) == 1 and len(got) == 4 and all(k is got[0] for k in got)


def test_up_next_section_apptest(bundle_trained):
    from streamlit.testing.v1 import AppTest

    from music.next.service import NextBundle

    user = NextBundle("simulated").seqs.user_ids[2]

    def app(user: str) -> None:
        from ui.music_next import render_up_next

        render_up_next("simulated", user)

    at = AppTest.from_function(app, kwargs={"user": user}, default_timeout=120).run()
    assert not at.exception
    assert any("Simulated" in c.value for c in at.caption)
    assert len(at.dataframe) >= 1 and len(at.dataframe[0].value) == 10
    at.radio(key="next_mode_simulated").set_value("A sequence I build").run()
    ms = at.multiselect(key="next_items_simulated")
    ms.set_value(ms.options[:3]).run()
    assert not at.exception and len(at.dataframe[0].value) == 10
    at.radio(key="next_method_simulated").set_value("Session-kNN (nearest sessions)").run()
    assert not at.exception
    assert at.dataframe[0].value["why"].str.contains("session").any()


def test_up_next_without_model_says_how_to_train(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    def app():
        from ui.music_next import render_up_next

        render_up_next("no-such-dataset", None)

    at = AppTest.from_function(app, default_timeout=60).run()
    assert not at.exception
    assert any("train-next" in i.value for i in at.info)
