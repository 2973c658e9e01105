"""`make run`'s model step: every default model is still built, once, whether the lanes run side by side or not."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What the app needs before it starts (one command per default artifact, each skipped when fresh).
DEFAULT_MODELS = [
    "-m fashion index", "-m fashion index --catalog tuxpaint-clothes", "-m multimodal index", "-m music train",
    "-m music train-next", "-m hashtag build-dataset", "-m hashtag train",
]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _planned(*args: str) -> list[str]:
    """The model commands `make -n` would run (a dry run: nothing is built)."""
    out = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), *args],
                         capture_output=True, text=True, check=True).stdout
    return [line.split("python ", 1)[1].strip() for line in out.splitlines()
            if "python -m " in line and any(f"-m {tab} " in line for tab in ("fashion", "multimodal", "music", "hashtag"))]


@pytest.mark.parametrize("jobs", ["2", "1"])
def test_models_target_builds_every_default_model_once(jobs):
    planned = _planned("models", f"MODEL_JOBS={jobs}")  # set-up steps are listed too, but not run
    assert sorted(planned) == sorted(DEFAULT_MODELS)


def test_each_lane_keeps_its_order_and_threads_share_the_cores():
    planned = _planned("model-multimodal", "model-music-next", "MODEL_JOBS=1")
    # a dry run lists each lane's steps in the order they depend on each other
    assert planned.index("-m fashion index") < planned.index("-m fashion index --catalog tuxpaint-clothes")
    assert planned.index("-m hashtag build-dataset") < planned.index("-m hashtag train")
    out = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "model-fashion-mnist", "MODEL_JOBS=2"],
                         capture_output=True, text=True, check=True).stdout
    share = max(1, len(os.sched_getaffinity(0)) // 2)  # what `nproc` counts
    assert f"RECS_THREADS={share} " in out and f"OMP_NUM_THREADS={share} " in out
