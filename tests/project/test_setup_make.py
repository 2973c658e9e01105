"""`make run`'s model step: every default model is built once, lanes keep their order, and a failing step is loud.

The runner itself is exercised with tiny real subprocesses (progress bars drawn with carriage returns, a step that
fails) so that its bookkeeping, not just its plan, is under test.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import build_models  # noqa: E402

#: What the app needs before it starts (one command per default artifact, each skipped when fresh).
DEFAULT_MODELS = [
    "-m fashion index", "-m core catalog add tuxpaint-clothes shipped:tuxpaint-clothes --update",
    "-m multimodal index", "-m music train",
    "-m music train-next", "-m hashtag build-dataset", "-m hashtag train",
]


def _plan(jobs: int) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_models.py"), "--jobs", str(jobs), "--dry-run"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("jobs", [2, 1])
def test_every_default_model_is_built_once_and_threads_share_the_cores(jobs):
    plan = _plan(jobs)
    built = [" ".join(args) for lane in plan["lanes"].values() for args in lane]
    assert sorted(built) == sorted(DEFAULT_MODELS)
    assert plan["threads"] == max(1, len(os.sched_getaffinity(0)) // jobs)
    # a step that reads another step's artifact comes after it, in the same lane
    lanes = {lane: [" ".join(a) for a in steps] for lane, steps in plan["lanes"].items()}
    images, training = lanes["images"], lanes["training"]
    assert images.index("-m fashion index") < images.index("-m multimodal index")
    assert training.index("-m hashtag build-dataset") < training.index("-m hashtag train")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_models_runs_the_builder():
    out = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "models", "MODEL_JOBS=1"],
                         capture_output=True, text=True, check=True).stdout
    assert "scripts/build_models.py --jobs 1" in out


def _step(name: str, code: str) -> build_models.Step:
    return build_models.Step(name, ("-c", code))


BAR = "import sys,time\nfor i in range(3):\n    sys.stdout.write(f'\\rencoding {i+1}/3'); sys.stdout.flush(); time.sleep(0.05)\n"


def test_lanes_run_side_by_side_and_report_each_step(tmp_path):
    order = tmp_path / "order.txt"
    write = f"open({str(order)!r}, 'a').write('{{}}\\n')"
    lanes = {
        "a": (_step("a1", BAR + write.format("a1")), _step("a2", write.format("a2"))),
        "b": (_step("b1", "import time; time.sleep(0.3);" + write.format("b1")),),
    }
    out = io.StringIO()
    code = build_models.Builder(lanes, jobs=2, log_dir=tmp_path / "logs", python=sys.executable, out=out,
                                live=False).run(poll=0.02, heartbeat=0.05)
    assert code == 0
    done = order.read_text().split()
    assert sorted(done) == ["a1", "a2", "b1"] and done.index("a1") < done.index("a2")
    text = out.getvalue()
    assert "a1: done" in text and "encoding 3/3" in text  # the last progress line, not the whole redraw history
    assert "default models ready" in text
    assert (tmp_path / "logs" / "a1.log").read_bytes().count(b"\r") == 3  # the full output is kept in the log


def test_a_failing_step_stops_its_lane_shows_its_log_and_fails_the_build(tmp_path):
    lanes = {
        "a": (_step("broken", "import sys; print('index is corrupt: rebuild with --force'); sys.exit(3)"),
              _step("after", "open('never', 'w')")),
        "b": (_step("slow", "import time; time.sleep(0.3); print('built')"),),
    }
    out = io.StringIO()
    code = build_models.Builder(lanes, jobs=2, log_dir=tmp_path / "logs", python=sys.executable, out=out,
                                live=False).run(poll=0.02)
    text = out.getvalue()
    assert code == 1
    assert "broken: FAILED (exit 3)" in text and "index is corrupt: rebuild with --force" in text
    assert "slow: done" in text  # the other lane finished its running step rather than being cut mid-write
    assert not (tmp_path / "logs" / "after.log").exists() and not (ROOT / "never").exists()
    assert "model build failed at broken" in text


def test_last_progress_line_reads_the_latest_redraw(tmp_path):
    log = tmp_path / "x.log"
    log.write_bytes(b"loading\n 10%|#   | 1/10\r 50%|#####  | 5/10\r\x1b[A")
    assert build_models.last_progress_line(log) == "50%|#####  | 5/10"
    assert build_models.last_progress_line(tmp_path / "missing.log") == ""


def test_first_run_benchmark_reads_the_runners_report(tmp_path):
    """bench/first_run.py times each step from the runner's own lines: the two must keep speaking the same format."""
    sys.path.insert(0, str(ROOT / "bench"))
    import first_run

    lanes = {"images": (_step("fashion-mnist", "print('ok')"),), "training": (_step("hashtag", "print('ok')"),)}
    out = io.StringIO()
    assert build_models.Builder(lanes, jobs=2, log_dir=tmp_path, python=sys.executable, out=out,
                                live=False).run(poll=0.02) == 0
    parsed = first_run.parse_log(out.getvalue())
    assert sorted((s["lane"], s["step"]) for s in parsed["steps"]) == [("images", "fashion-mnist"),
                                                                       ("training", "hashtag")]
    assert parsed["models_seconds"] is not None


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_starts_the_app_first_and_builds_beside_it():
    out = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "run", "PORT=8599"],
                         capture_output=True, text=True, check=True).stdout
    assert "scripts/serve.py --port 8599" in out
    assert "build_models.py" not in out  # the models are built by serve.py after the app answers, not before


def test_the_runner_writes_each_steps_state_for_the_app(tmp_path):
    """The app's banner reads this file: queued → running (with its progress line) → done, and the build's end."""
    from core.build_status import read_status, summary

    status = tmp_path / "build-status.json"
    seen = tmp_path / "seen.txt"
    peek = f"import shutil; shutil.copy({str(status)!r}, {str(seen)!r})"
    lanes = {"a": (_step("first", BAR), _step("second", peek))}
    code = build_models.Builder(lanes, jobs=1, log_dir=tmp_path / "logs", python=sys.executable, out=io.StringIO(),
                                live=False, status=status).run(poll=0.02)
    assert code == 0
    during = json.loads(seen.read_text())  # what the app saw while the second step ran
    assert during["state"] == "running"
    assert [(s["name"], s["state"]) for s in during["steps"]] == [("first", "done"), ("second", "running")]
    final = read_status(tmp_path)
    assert final["state"] == "done" and {s["state"] for s in final["steps"]} == {"done"}
    assert summary(final) == "2 of 2 default models ready"


def test_a_failed_or_abandoned_build_reads_as_stopped(tmp_path):
    from core.build_status import read_status, write_status

    lanes = {"a": (_step("broken", "import sys; sys.exit(2)"), _step("never", "pass"))}
    build_models.Builder(lanes, jobs=1, log_dir=tmp_path / "logs", python=sys.executable, out=io.StringIO(),
                         live=False, status=tmp_path / "build-status.json").run(poll=0.02)
    failed = read_status(tmp_path)
    assert failed["state"] == "failed"
    assert [(s["name"], s["state"]) for s in failed["steps"]] == [("broken", "failed"), ("never", "queued")]
    # a runner that died mid-build (its pid is gone) is not shown as still building
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_status(tmp_path / "build-status.json", state="running", steps=failed["steps"], started=0.0)
    status = json.loads((tmp_path / "build-status.json").read_text())
    status["pid"] = dead.pid
    (tmp_path / "build-status.json").write_text(json.dumps(status))
    assert read_status(tmp_path)["state"] == "interrupted"


def test_a_step_ending_in_json_reports_a_line_that_says_something(tmp_path):
    log = tmp_path / "x.log"
    log.write_text('encoded 70000 images\n{\n  "items": 70000\n}\n')
    assert build_models.last_progress_line(log) == '"items": 70000'
