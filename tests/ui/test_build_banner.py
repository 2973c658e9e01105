"""The banner above the tabs while `make run` builds the default models beside the app (ui/build_banner.py)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

import core.build_status as build_status
from core.build_status import write_status


def _banner() -> None:
    from ui.build_banner import render

    render()


def _steps(*states: str) -> list[dict]:
    names = ["fashion-mnist", "hashtag", "music"]
    rows = []
    for name, state in zip(names, states):
        row = {"name": name, "lane": "x", "state": state}
        if state == "running":
            row["progress"] = "epoch 2/12"
        rows.append(row)
    return rows


def test_the_banner_shows_the_build_while_it_runs_and_nothing_after(tmp_path, monkeypatch):
    monkeypatch.setattr(build_status, "MODELS_DIR", tmp_path)
    path = tmp_path / build_status.STATUS_FILE
    write_status(path, state="running", steps=_steps("done", "running", "queued"), started=0.0)  # this pid: alive
    at = AppTest.from_function(_banner).run()
    assert not at.exception
    bars = at.get("progress")
    assert len(bars) == 1 and bars[0].value == 33
    text = str(bars[0].proto.text)
    assert "1 of 3 default models ready" in text and "hashtag (epoch 2/12)" in text

    write_status(path, state="done", steps=_steps("done", "done", "done"), started=0.0)
    at = AppTest.from_function(_banner).run()
    assert not at.exception and not at.get("progress") and not at.warning


def test_a_stopped_build_says_where_it_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr(build_status, "MODELS_DIR", tmp_path)
    write_status(tmp_path / build_status.STATUS_FILE, state="failed", steps=_steps("done", "failed", "queued"),
                 started=0.0)
    at = AppTest.from_function(_banner).run()
    assert not at.get("progress")
    assert len(at.warning) == 1
    assert "stopped at hashtag" in at.warning[0].value and "make run" in at.warning[0].value
