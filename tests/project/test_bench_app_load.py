"""bench/app_load.py's server settings: ``--env`` and ``--config`` reach the server, configs are interleaved
round by round, and the medians over the rounds are what the thread-policy table reads."""

from __future__ import annotations

import subprocess
import sys
from argparse import Namespace

import pytest

from bench import app_load
from tests.paths import ROOT


def test_env_items_parse_and_malformed_ones_say_so():
    assert app_load.parse_env(["RECS_SERVER_THREADS=2", "A_B=x=y", "EMPTY="]) == {
        "RECS_SERVER_THREADS": "2", "A_B": "x=y", "EMPTY": ""}
    for bad in ["NOVALUE", "=2", "BAD KEY=1"]:
        with pytest.raises(ValueError, match="KEY=VALUE"):
            app_load.parse_env([bad])


def test_config_has_a_label_and_its_environment():
    assert app_load.parse_config("t2-int8:RECS_SERVER_THREADS=2,RECS_ENCODER_PRECISION=int8") == (
        "t2-int8", {"RECS_SERVER_THREADS": "2", "RECS_ENCODER_PRECISION": "int8"})
    with pytest.raises(ValueError):
        app_load.parse_config("RECS_SERVER_THREADS=2")


def test_env_overrides_the_inherited_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RECS_SERVER_THREADS", "1")
    env = app_load.server_env(str(tmp_path), {"RECS_SERVER_THREADS": "2"})
    assert env["RECS_SERVER_THREADS"] == "2" and env["RECS_MODELS_DIR"] == str(tmp_path.resolve())


def _phase(p50: float, p95: float, cpu: float, errors: int = 0) -> dict:
    acts = {a: {"n": 10, "p50_s": p50, "p95_s": p95, "max_s": p95} for a in app_load.ACTIONS}
    return {"actions": acts, "errors": errors, "page_load_timeouts": 0, "completed_journeys": 10 - errors,
            "server_cpu_s_per_journey": cpu, "wall_s": 60.0}


def test_configs_run_interleaved_with_their_own_env_inputs_and_medians(monkeypatch, tmp_path):
    calls = []

    def fake_measure(app_dir, env, counts, images, first, args, log_path):
        calls.append((env["RECS_SERVER_THREADS"], env["BASE"], first))
        k = len(calls)
        return {"phases": {"10": _phase(p50=float(k), p95=10.0 * k, cpu=k / 10, errors=k % 2)}}

    monkeypatch.setattr(app_load, "measure", fake_measure)
    monkeypatch.setattr(app_load, "session_images", lambda n, folder: [(folder, folder)] * n)
    configs = [("t1", {"RECS_SERVER_THREADS": "1"}), ("t2", {"RECS_SERVER_THREADS": "2"})]
    saved = []
    out = app_load.run_configs(tmp_path, {"BASE": "b", "RECS_SERVER_THREADS": "9"}, configs, [10],
                               Namespace(repeats=3), tmp_path, save=lambda partial: saved.append(list(partial["order"])))
    assert saved[0] == ["t1"] and saved[-1] == out["order"] and len(saved) == 6  # kept after every run
    # t1, t2, t1, t2, t1, t2: each run on 11 inputs of its own (warm-up + 10 sessions)
    assert out["order"] == ["t1", "t2"] * 3
    assert calls == [("1", "b", 0), ("2", "b", 11), ("1", "b", 22), ("2", "b", 33), ("1", "b", 44), ("2", "b", 55)]
    t1 = out["configs"]["t1"]["median"]["10"]  # runs 1, 3, 5
    assert t1["actions"]["fashion"] == {"p50_s": 3.0, "p95_s": 30.0}
    assert t1["server_cpu_s_per_journey"] == 0.3 and t1["server_cpu_s_per_journey_runs"] == [0.1, 0.3, 0.5]
    assert t1["errors"] == 3 and t1["runs"] == 3
    assert out["configs"]["t2"]["median"]["10"]["errors"] == 0


def test_a_malformed_env_is_one_error_line_and_exit_2():
    proc = subprocess.run([sys.executable, "bench/app_load.py", "--env", "RECS_SERVER_THREADS"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
