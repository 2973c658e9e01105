"""Every tab's ``service.py`` offers the one contract of ``core.contract``, and its model card carries real numbers.

The cards are checked against the committed evaluation files in ``bench/results/``: each number a card shows must
be the number in the file it names, inside its own 95 % interval, so a card can never drift from its evidence.
"""

from __future__ import annotations

import importlib
import inspect
import json
import threading
import time
from pathlib import Path

import pytest

from core.contract import CONTRACT, Handles, ModelCard, TabService, interval_of, metrics_of, without

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "bench" / "results"  # the committed evaluations

TABS = ("hashtag", "music", "fashion", "multimodal")


def _service(tab: str):
    return importlib.import_module(f"{tab}.service")


def _shape(fn) -> list[tuple[str, object, object]]:
    """A call's parameters as (name, kind, default): what a caller relies on (annotations may name the tab's types)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


@pytest.mark.parametrize("tab", TABS)
def test_every_service_offers_the_contract_with_the_same_signatures(tab):
    service = _service(tab)
    assert isinstance(service, TabService)  # the module itself satisfies the protocol
    for name in CONTRACT:
        fn = getattr(service, name, None)
        assert callable(fn), f"{tab}/service.py lacks {name}()"
        assert getattr(fn, "__module__", "") == service.__name__, f"{tab}.service.{name} is not the service's own"
        assert _shape(fn) == _shape(getattr(TabService, name)), f"{tab}.service.{name} differs from the contract"
        assert name in getattr(service, "__all__", CONTRACT), f"{tab}.service.__all__ hides {name}"


def test_the_contract_names_are_the_protocols_calls():
    calls = {n for n, v in vars(TabService).items() if callable(v) and not n.startswith("_")}
    assert calls == set(CONTRACT)


def _committed(tab: str, name: str) -> Path:
    return {"hashtag": RESULTS_DIR / "hashtag_evaluate.json", "fashion": RESULTS_DIR / "fashion_evaluate.json",
            "multimodal": RESULTS_DIR / "multimodal_evaluate.json"}.get(
        tab, RESULTS_DIR / (f"music_evaluate_next_{name[5:]}.json" if name.startswith("next:")
                            else f"music_evaluate_{name}.json"))


CARDS = [("hashtag", None), ("fashion", "fashion-mnist"), ("multimodal", "tuxpaint"), ("music", "lastfm-2k"),
         ("music", "movielens-100k"), ("music", "next:lastfm-2k")]


@pytest.fixture
def no_artifact_evaluations(monkeypatch, tmp_path):
    """Point every artifact's own evaluation at an empty folder, so the cards read the committed results."""
    import core.metrics
    import fashion.service
    import hashtag.service
    import multimodal.service
    import music.service

    monkeypatch.setattr(core.metrics, "RESULTS_DIR", RESULTS_DIR)  # other tests redirect it for their runs
    monkeypatch.setattr(fashion.service, "evaluation_path", lambda: tmp_path / "evaluation.json")
    monkeypatch.setattr(hashtag.service, "served_dir", lambda root: tmp_path)
    monkeypatch.setattr(multimodal.service, "index_dir", lambda: tmp_path)
    monkeypatch.setattr(music.service, "results_path", lambda name: tmp_path / f"evaluation-{name}.json")
    monkeypatch.setattr(music.service, "next_results_path", lambda name: tmp_path / f"next_eval_{name}.json")


def _value_in(results: dict, method: str, metric: str) -> float:
    """The number a results file holds for (method, metric), wherever that tab's evaluation put it."""
    for rows in (results, results.get("results", {}), results.get("methods", {})):
        if isinstance(rows, dict) and isinstance(rows.get(method), dict) and metric in rows[method]:
            return float(rows[method][metric])
    raise KeyError((method, metric))


@pytest.mark.parametrize("tab,name", CARDS)
def test_each_card_reads_real_numbers_with_intervals_from_the_committed_results(tab, name, no_artifact_evaluations):
    service = _service(tab)
    name = name or str(service.DEFAULT_DATASET)
    card = service.card(name)
    assert isinstance(card, ModelCard) and card.model and card.data and card.limits and card.command
    assert card.metrics, f"{tab} card of {name} shows no measured quality"
    path = _committed(tab, name)
    assert Path(card.results) == path
    results = json.loads(path.read_text(encoding="utf-8"))
    for m in card.metrics:
        assert m.low <= m.value <= m.high and m.low < m.high, m
        if tab == "music" and name.startswith("next:"):
            split = m.name.rsplit("(", 1)[1].rstrip(")")
            head = results["splits"][split]["headline"]
            assert (m.value, [m.low, m.high]) == (head["ratio"], head["ratio_ci95"])
        elif m.method.startswith("fused on"):
            key = "real_photos_check" if "held-out" in m.method else "real_photos"
            assert m.value == results[key]["fused"][m.name]
        else:
            assert m.value == pytest.approx(_value_in(results, m.method, m.name))


def test_a_card_without_evaluation_says_not_measured(no_artifact_evaluations):
    import fashion.service

    card = fashion.service.card("tuxpaint-clothes")  # only Fashion-MNIST is measured
    assert card.metrics == () and card.results == "" and card.limits


def test_metrics_need_an_interval_in_any_layout():
    rows = {"a": {"p": 0.5, "ci95": {"p": [0.4, 0.6]}, "queries": 10}, "b": {"p": 0.3, "p_ci95": [0.2, 0.4]},
            "c": {"p": 0.9}, "d": {"p": 0.7}}
    separate = {"d": {"ci95": {"p": [0.6, 0.8]}, "n": 5}}
    found = metrics_of(rows, [("a", "p"), ("b", "p"), ("c", "p"), ("d", "p")], separate)
    assert [(m.method, m.low, m.high, m.n) for m in found] == [("a", 0.4, 0.6, 10), ("b", 0.2, 0.4, None),
                                                                ("d", 0.6, 0.8, 5)]
    assert interval_of({"p": 1.0}, "p") is None


def test_without_drops_hidden_items_and_keeps_k():
    hits = ["a", "b", "c", "d"]
    assert without(hits, ["b"], 2, key=str) == ["a", "c"]


def test_handles_open_once_under_concurrent_callers_and_release_an_old_version():
    handles, calls = Handles(keep=2), []

    def open_slowly(tag: str):
        def factory():
            calls.append(tag)
            time.sleep(0.05)
            return object()
        return factory

    got = []
    threads = [threading.Thread(target=lambda: got.append(handles.get("index", 1, open_slowly("v1"))))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["v1"] and all(g is got[0] for g in got)
    newer = handles.get("index", 2, open_slowly("v2"))
    assert calls == ["v1", "v2"] and newer is not got[0]
    assert handles.get("index", 2, open_slowly("again")) is newer  # the current version is kept
    handles.get("other", 1, open_slowly("o")), handles.get("third", 1, open_slowly("t"))
    assert handles.get("index", 2, open_slowly("reopened")) is not newer  # pushed out by `keep`


@pytest.mark.parametrize("tab,name", CARDS[:4])
def test_the_about_this_model_expander_shows_the_card(tab, name, no_artifact_evaluations):
    from streamlit.testing.v1 import AppTest

    def app(tab: str, name: str) -> None:
        import importlib

        from ui import model_card

        service = importlib.import_module(f"{tab}.service")
        model_card.show(service.card, name or str(service.DEFAULT_DATASET), key="card")

    at = AppTest.from_function(app, kwargs={"tab": tab, "name": name}, default_timeout=120).run()
    assert not at.exception
    assert [e.label for e in at.expander] == ["About this model"]
    text = "\n".join(m.value for m in at.markdown)
    service = _service(tab)
    card = service.card(name or str(service.DEFAULT_DATASET))
    head = card.metrics[0]
    assert f"{head.value:.3f}" in text and f"{head.low:.3f}–{head.high:.3f}" in text
    assert "Known limits" in text and card.command in text
