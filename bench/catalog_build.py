"""Catalog builds end to end: from ``catalog add`` to searchable, at 1,000 and 10,000 real-photo JPEGs.

    python bench/catalog_build.py [--sizes 1000 10000] [--with-load] [--out bench/results/catalog_build.json]

Each size's JPEGs (about 600 px, random crops/flips/scales of the ~144 labelled real photos in
``bench/checksets/catalog_{dev,test}.csv``, ``core.photosets.materialize_jpegs``) are made once into a cache
folder under /tmp and reused. Each build is ``python -m core catalog add bench-N FOLDER --json --replace`` in a
subprocess with its own empty ``RECS_MODELS_DIR`` (the ONNX graphs and concept-word caches are shared through
``RECS_ENCODER_CACHE``), so the wall time covers every step a person waits for: interpreter and imports, reading
the folder, decode, thumbnails, embeddings, words, index, near-duplicates and the atomic rename. Peak memory is
the subprocess's own high-water mark (``VmHWM`` of its address space, read by the child as it exits: every
thread, including decode threads). ``ru_maxrss`` would not do: Linux carries the parent's high-water mark into a
child across fork and exec, so a benchmark run inside a large process (a test session) reports that process.

Beside each build, the bare encoder's images/s in this process (preprocessed 224 px batches of 32, warm, median of
repeats) shows how much of the build's time is the CNN itself. ``--with-load`` runs ``bench/app_load.py``'s
journey for a few browser sessions against a running app while a build runs (the app must have its models).

The machine this runs on is usually shared: the JSON records the load average before and after every step.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import artifacts  # noqa: E402
from core.encoders import ENCODER_CACHE  # noqa: E402
from core.photosets import load_photoset, materialize_jpegs  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from core.encoders import get_image_encoder  # noqa: E402
from bench import app_load  # noqa: E402

log = logging.getLogger("bench.catalog_build")

PHOTOSETS = ("bench/checksets/catalog_dev.csv", "bench/checksets/catalog_test.csv")
CACHE = Path(tempfile.gettempdir()) / "catalog-bench"
#: The issue's bars: seconds per size, the lenient images/s floor at 1,000 and the memory ceiling.
BARS = {"seconds": {1000: 40.0, 10000: 360.0}, "min_images_per_s_1000": 25.0, "peak_rss_mb": 2048.0}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- inputs ---------------------------------------------------------------------------------------------
def jpeg_folder(n: int, cache: Path = CACHE, size: int = 600, seed: int = 0,
                photosets: Sequence[str] = PHOTOSETS) -> Path:
    """A folder of ``n`` photo-like JPEGs, made once and reused while its manifest says the same inputs."""
    photos = [p for csv in photosets for p in load_photoset(ROOT / csv)]
    folder = cache / f"jpegs-{n}-s{size}-seed{seed}"
    manifest = folder / "manifest.json"
    if manifest.is_file():
        made = json.loads(manifest.read_text())
        same = {"n": n, "size": size, "seed": seed, "pool": len(photos), "labels": sorted({p.label for p in photos})}
        if all(made.get(k) == v for k, v in same.items()):
            return folder
    started = time.perf_counter()
    materialize_jpegs(photos, folder, n, size=size, seed=seed)
    log.info("made %d JPEGs in %.0f s", n, time.perf_counter() - started)
    return folder


# -- one build ------------------------------------------------------------------------------------------
def build_env(models_dir: Path) -> dict[str, str]:
    """The build's environment: a private models folder, the shared encoder cache, no progress bars."""
    return {**os.environ, "RECS_MODELS_DIR": str(models_dir), "RECS_ENCODER_CACHE": str(ENCODER_CACHE),
            "PYTHONPATH": str(ROOT), "KERAS_BACKEND": "torch", "HF_HUB_OFFLINE": "1", "RECS_NO_TQDM": "1"}


# ``python -m core ARGS`` that writes its own VmHWM (kB) to argv[1] as it exits, on Linux.
_REPORT_PEAK = """
import atexit, pathlib, re, runpy, sys
peak_file = pathlib.Path(sys.argv.pop(1))
def _report():
    status = pathlib.Path("/proc/self/status")
    found = re.search(r"VmHWM:\\s+(\\d+)", status.read_text()) if status.exists() else None
    if found:
        peak_file.write_text(found.group(1))
atexit.register(_report)
sys.argv[0] = "core"
runpy.run_module("core", run_name="__main__", alter_sys=True)
"""


def _peak_mb(peak_file: Path, usage: Any) -> float:
    """The child's own high-water mark; ``ru_maxrss`` only where /proc is missing (it may include the parent's)."""
    kb = int(peak_file.read_text()) if peak_file.exists() else usage.ru_maxrss
    return round(kb / 1024, 1)


def run_build(name: str, folder: Path, models_dir: Path, log_dir: Path) -> dict[str, Any]:
    """``catalog add`` in a subprocess: wall time from start to exit, its peak RSS, and the CLI's JSON."""
    out, err, peak_file = log_dir / f"{name}.json", log_dir / f"{name}.log", log_dir / f"{name}.peak"
    load_before = load_average()
    with open(out, "w") as stdout, open(err, "w") as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _REPORT_PEAK, str(peak_file), "catalog", "add", name,
                                 str(folder), "--json", "--replace"], cwd=ROOT, env=build_env(models_dir),
                                stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time, not every child's so far
        seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = err.read_text().strip().splitlines()[-3:]
        raise RuntimeError(f"catalog add {name} exited {proc.returncode}: {' | '.join(tail)}")
    result = json.loads(out.read_text())
    return {"images": result["items"], "skipped": result["skipped"]["count"], "seconds": round(seconds, 2),
            "images_per_s": round(result["items"] / seconds, 1), "peak_rss_mb": _peak_mb(peak_file, usage),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "cli_seconds": result["seconds"],
            "phases": result["phases"], "search": result["search"],
            "load_avg_before": load_before, "load_avg_after": load_average()}


# -- the bare encoder -----------------------------------------------------------------------------------
def encoder_images_per_s(folder: Path, repeats: int = 5, batch: int = 32) -> dict[str, Any]:
    """The CNN alone on preprocessed 224 px batches of ``batch`` (warm): images/s of the median repeat."""
    encoder = get_image_encoder("efficientnet_lite0", "max")
    files = sorted(folder.glob("*/*.jpg"))[:batch]
    arrays = np.stack([encoder.preprocess(Image.open(f).convert("RGB")) for f in files])
    encoder.grid_batch(arrays)  # warm: session load and first-run allocations
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        encoder.grid_batch(arrays)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {"images_per_s": round(len(arrays) / median, 1), "batch": len(arrays), "repeats": repeats,
            "median_batch_s": round(median, 3), "input_size": encoder.input_size}


# -- app sessions during a build ------------------------------------------------------------------------
def sessions_during_build(folder: Path, models_dir: Path, log_dir: Path, app_models: Path,
                          sessions: int = 5) -> dict[str, Any]:
    """Run a build and, at the same time, ``sessions`` browser journeys against a freshly started app."""
    env = {**os.environ, "RECS_MODELS_DIR": str(app_models), "KERAS_BACKEND": "torch", "HF_HUB_OFFLINE": "1",
           "RECS_NO_TQDM": "1"}
    images = app_load.session_images(1 + sessions, log_dir)
    proc, url = app_load.start_app(ROOT, env, log_dir / "streamlit.log")
    build: dict[str, Any] = {}
    try:  # warm-up journey first (models load), so the phase measures the app under the build, not cold start
        asyncio.run(app_load.run_phase(url, 1, images, 120.0, 360.0, 600.0))

        def target() -> None:
            try:
                build.update(run_build("bench-load", folder, models_dir, log_dir))
            except RuntimeError as exc:
                build["error"] = str(exc)

        worker = threading.Thread(target=target)
        cpu0, started = app_load.cpu_seconds(proc.pid), time.perf_counter()
        worker.start()
        results = asyncio.run(app_load.run_phase(url, sessions, images, 30.0, 120.0, 600.0, first=1))
        phase = app_load.phase_summary(results, app_load.cpu_seconds(proc.pid) - cpu0,
                                       time.perf_counter() - started, proc.pid)
        phase["build_running_at_end"] = worker.is_alive()
        worker.join()
    finally:
        app_load.stop_app(proc)
    return {"sessions": phase, "build": build, "bar_zero_errors": phase["errors"] == 0 and "error" not in build}


# -- the run --------------------------------------------------------------------------------------------
def bars_for(n: int, row: dict[str, Any]) -> dict[str, Any]:
    """Which of the issue's bars this size meets (a size without a seconds bar gets only the memory bar)."""
    out: dict[str, Any] = {"peak_rss_mb_le_2048": row["peak_rss_mb"] <= BARS["peak_rss_mb"]}
    if n in BARS["seconds"]:
        out[f"seconds_le_{BARS['seconds'][n]:.0f}"] = row["seconds"] <= BARS["seconds"][n]
    if n == 1000:
        out["images_per_s_ge_25"] = row["images_per_s"] >= BARS["min_images_per_s_1000"]
    return out


def run(sizes: Sequence[int], cache: Path = CACHE, repeats: int = 5, with_load: bool = False,
        app_models: Optional[Path] = None, load_sessions: int = 5, keep: bool = False,
        photosets: Sequence[str] = PHOTOSETS) -> dict[str, Any]:
    """Every size's build beside the bare encoder, plus the app-under-build phase when asked; the result JSON."""
    result: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg_start": load_average(),
                              "environment": artifacts.environment(), "encoder_cache": str(ENCODER_CACHE),
                              "what": "wall time of `python -m core catalog add NAME FOLDER --json --replace` "
                                      "in a subprocess, start to exit (every step included)",
                              "bars": {"seconds": {str(k): v for k, v in BARS["seconds"].items()},
                                       "min_images_per_s_1000": BARS["min_images_per_s_1000"],
                                       "peak_rss_mb": BARS["peak_rss_mb"]},
                              "sizes": {}}
    work = Path(tempfile.mkdtemp(prefix="catalog-build-", dir=cache if cache.is_dir() else None))
    for n in sizes:
        folder = jpeg_folder(n, cache, photosets=photosets)
        models_dir = work / f"models-{n}"
        row = run_build(f"bench-{n}", folder, models_dir, work)
        row["encoder"] = encoder_images_per_s(folder, repeats)
        row["encoder_images_per_s"] = row["encoder"]["images_per_s"]
        row["bars"] = bars_for(n, row)
        result["sizes"][str(n)] = row
        log.info("%d images: %.1f s, %.1f images/s (encoder alone %.1f), peak RSS %.0f MB, phases %s", n,
                 row["seconds"], row["images_per_s"], row["encoder_images_per_s"], row["peak_rss_mb"], row["phases"])
        if not keep:
            subprocess.run(["rm", "-rf", str(models_dir)], check=False)
    if with_load:
        if app_models is None:
            raise ValueError("--with-load needs --app-models: a models folder built by `make models`.")
        folder = jpeg_folder(1000, cache, photosets=photosets)
        result["with_load"] = sessions_during_build(folder, work / "models-load", work, app_models, load_sessions)
    result["load_avg_end"] = load_average()
    result["work_dir"] = str(work)
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--out", default="bench/results/catalog_build.json")
    parser.add_argument("--cache", default=str(CACHE), help="where the JPEG sets are made once and reused")
    parser.add_argument("--repeats", type=int, default=5, help="bare-encoder repeats (median)")
    parser.add_argument("--with-load", action="store_true", help="browser sessions against the app during a build")
    parser.add_argument("--app-models", default=os.environ.get("RECS_APP_MODELS"),
                        help="the app's RECS_MODELS_DIR for --with-load (built by `make models`)")
    parser.add_argument("--sessions", type=int, default=5, help="browser sessions for --with-load")
    parser.add_argument("--keep", action="store_true", help="keep the built catalogs")
    parser.add_argument("--photosets", nargs="+", default=list(PHOTOSETS), help="labelled photo-set CSVs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if min(args.sizes) < 1:
        print("error: --sizes must be positive", file=sys.stderr)
        return 2
    if args.with_load and not args.app_models:
        print("error: --with-load needs --app-models (a models folder built by `make models`)", file=sys.stderr)
        return 2
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    result = run(args.sizes, cache, args.repeats, args.with_load,
                 Path(args.app_models) if args.app_models else None, args.sessions, args.keep, args.photosets)
    out = Path(args.out)
    artifacts.write_json(out if out.is_absolute() else ROOT / out, result)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
