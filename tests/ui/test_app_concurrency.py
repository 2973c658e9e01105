"""Many sessions in one server: builds under a file lock, lazy objects built once, no global state changed
from request threads, and a failing tab that leaves the others working."""

from __future__ import annotations

import sys
import threading
import time
import types

import pytest

from core.locks import BuildInProgress, LazyValue, build_lock, build_once


@pytest.mark.slow(reason="builds an index twice at once")
def test_two_threads_building_the_same_index_end_with_one_valid_index():
    from fashion.data import catalog_key, load_catalog
    from fashion.model import FashionIndex, index_stem
    from fashion.train import build_index

    stem = index_stem(catalog_key("tuxpaint-clothes"))
    manifest = stem.with_suffix(".json")
    before = manifest.stat().st_mtime_ns if manifest.is_file() else None
    builds, errors, inside, most_inside = [], [], [0], [0]
    gate = threading.Barrier(2)
    guard = threading.Lock()

    def build():
        with guard:
            inside[0] += 1
            most_inside[0] = max(most_inside[0], inside[0])
        try:
            index, _ = build_index("tuxpaint-clothes", force=True)  # force: without the lock both would write
            builds.append(len(index))
        finally:
            with guard:
                inside[0] -= 1

    def fresh() -> bool:
        return (manifest.stat().st_mtime_ns if manifest.is_file() else None) != before

    def session():
        gate.wait()
        try:
            build_once("fashion-index-tuxpaint-clothes", build, fresh)
        except BaseException as exc:  # noqa: BLE001 - the test reports any exception
            errors.append(exc)

    threads = [threading.Thread(target=session) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors
    assert len(builds) == 1 and most_inside[0] == 1
    index = FashionIndex.load(stem)
    assert len(index) == builds[0] == 48
    first = load_catalog("tuxpaint-clothes")
    assert index.search(first.image(0), 3)[0].id == first.ids[0]


def test_a_held_lock_fails_fast_without_waiting_and_builds_nothing():
    ran = []
    with build_lock("demo-artifact"):
        holder_done = threading.Event()
        result: list = []

        def other():
            try:
                build_once("demo-artifact", lambda: ran.append(1), lambda: False, wait=False)
            except BuildInProgress as exc:
                result.append(str(exc))
            holder_done.set()

        threading.Thread(target=other).start()
        assert holder_done.wait(10)
    assert result and "being built by another session" in result[0]
    assert not ran
    assert build_once("demo-artifact", lambda: "built", lambda: False, wait=False) == "built"  # released


def test_two_users_asking_for_the_index_get_one_background_build(tmp_path, monkeypatch):
    """"Build it now" queues the index build for a worker (it never runs in a page's thread); a second person
    asking while it waits gets the same job, and both see its progress row."""
    from streamlit.testing.v1 import AppTest

    from core.jobs import JobQueue

    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    monkeypatch.setenv("RECS_DATABASE_URL", url)
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda *a, **k: False)  # no worker process in a test

    def tab():
        from ui.fashion import render

        render()

    sessions = [AppTest.from_function(tab, default_timeout=60) for _ in range(2)]
    for at in sessions:
        at.run()
        assert at.button(key="fashion_build")  # no Fashion-MNIST index in the tests' models folder
        at.button(key="fashion_build").click().run()
        assert not at.exception
        assert any("waiting for a worker" in str(p.proto.text) for p in at.get("progress"))
    jobs = JobQueue(url).list()
    assert [(j.kind, j.params["catalog"], j.status) for j in jobs] == [("fashion.index", "fashion-mnist", "queued")]


def test_lazy_value_is_built_once_when_many_threads_ask_together():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return object()

    lazy = LazyValue(slow)
    gate = threading.Barrier(8)
    seen = []

    def ask():
        gate.wait()
        seen.append(lazy.get())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(v) for v in seen}) == 1


def test_request_threads_leave_process_settings_alone():
    import faiss
    import torch
    from PIL import Image

    from core.images import ImageError, load_image
    from core.threads import faiss_threads, torch_threads

    before_threads, before_pixels = torch.get_num_threads(), Image.MAX_IMAGE_PIXELS
    before_faiss = faiss.omp_get_max_threads()
    inside = []

    def request():
        with torch_threads(max(1, before_threads + 3)):
            inside.append(torch.get_num_threads())
        with faiss_threads(max(1, before_faiss + 3)):  # an index built from a session's "build now" button
            inside.append(faiss.omp_get_max_threads())
        try:
            load_image(b"\x89PNG\r\n\x1a\n" + b"0" * 10, max_pixels=1000)
        except ImageError:
            pass
        inside.append(Image.MAX_IMAGE_PIXELS)

    t = threading.Thread(target=request)
    t.start()
    t.join()
    assert inside == [before_threads, before_faiss, before_pixels]
    assert torch.get_num_threads() == before_threads


def test_decoder_limit_is_passed_per_call():
    import io

    from PIL import Image

    from core.images import ImageError, load_image

    buf = io.BytesIO()
    Image.new("RGB", (100, 100)).save(buf, format="PNG")
    assert load_image(buf.getvalue(), max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageError, match="limit"):
        load_image(buf.getvalue(), max_pixels=9_999)


def test_a_failing_tab_shows_an_error_panel_and_the_other_tabs_still_render(monkeypatch, caplog):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    broken = types.ModuleType("ui.music")

    def render():
        raise RuntimeError("boom in the music tab")

    broken.render = render
    monkeypatch.setitem(sys.modules, "ui.music", broken)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["recs_tab"] = "Music"  # the tabs are lazy: open the broken one
    with caplog.at_level("ERROR", logger="recs.app"):
        at.run()
    assert not at.exception
    panels = [e.value for e in at.error if "Something went wrong in the Music tab" in e.value]
    assert len(panels) == 1
    error_id = panels[0].split("error id `")[1].split("`")[0]
    assert any(error_id in r.getMessage() and r.exc_info and "boom in the music tab" in str(r.exc_info[1])
               for r in caplog.records)
    for label, header in (("Hashtags", "Hashtags for a photo"), ("Fashion", "Similar garments"),
                          ("Product search", "Multimodal product search")):
        at.session_state["recs_tab"] = label  # the session goes on: every other tab still works
        at.run()
        assert not at.exception, label
        assert header in [h.value for h in at.subheader], label


def test_the_index_build_job_builds_the_index_the_tab_opens(tmp_path):
    """The worker's side of "Build it now", run in-process on the small shipped catalog."""
    from core.jobs.handlers import Progress, execute
    from fashion import service
    from fashion.jobs import HANDLER

    outcome = execute(HANDLER, {"catalog": "tuxpaint-clothes"}, Progress(None, tmp_path / "scratch"))
    assert outcome["done"]["items"] > 0
    assert len(service.open_index("tuxpaint-clothes")) == outcome["done"]["items"]
    refused = execute(HANDLER, {"catalog": "no-such-catalog"}, Progress(None, tmp_path / "scratch"))
    assert "failed" in refused


def test_product_search_builds_its_index_as_one_background_job(tmp_path, monkeypatch):
    """Product search's "Build it now" queues a job too (it used to encode in the page's thread); a second person
    asking gets the same job, and both see it waiting."""
    from streamlit.testing.v1 import AppTest

    from core.jobs import JobQueue

    url = f"sqlite:///{tmp_path / 'jobs.sqlite3'}"
    monkeypatch.setenv("RECS_DATABASE_URL", url)
    monkeypatch.setattr("core.jobs.worker.ensure_worker", lambda *a, **k: False)  # no worker process in a test
    monkeypatch.setattr("multimodal.service.sources", lambda: [])  # as before `make run` built the index

    def tab():
        from ui.multimodal import render

        render()

    sessions = [AppTest.from_function(tab, default_timeout=60) for _ in range(2)]
    for at in sessions:
        at.run()
        at.button(key="mm_build").click().run()
        assert not at.exception
        assert any("waiting for a worker" in str(p.proto.text) for p in at.get("progress"))
    jobs = JobQueue(url).list()
    assert [(j.kind, j.params["catalog"], j.status) for j in jobs] == [("multimodal.index", "tuxpaint", "queued")]


def test_the_product_index_job_refuses_anything_but_the_shipped_catalog(tmp_path):
    from core.jobs.handlers import Progress, execute
    from multimodal.jobs import HANDLER

    refused = execute(HANDLER, {"catalog": "../etc"}, Progress(None, tmp_path / "scratch"))
    assert "failed" in refused and "Data tab" in str(refused["failed"])
