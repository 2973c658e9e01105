"""How long a small import of tagged photos and the background retrain take, on a copy of the installed model.

Copies the trained Tux Paint dataset + model (``models/hashtag/tuxpaint``, without ``last.pt``) to a temporary
folder, imports N real photos with hand-written hashtags (the dev photo set that ships in packages,
``bench/checksets/realphotos_dev.csv``) as an administrator, runs the retrain job in-process exactly as the worker
would (``core.jobs.handlers.execute``, default ``TrainConfig``), and writes the timings, each epoch's
validation F1@5 and the serve/keep decision to ``bench/results/tagged_photos_retrain.json``. The installed model
is never touched.

    python bench/tagged_photos_retrain.py [--photos 20] [--source models/hashtag/tuxpaint]
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from core import artifacts, metrics
from core.feedback import FeedbackStore
from core.jobs.handlers import Progress, execute

log = logging.getLogger("bench.tagged_photos_retrain")


def _zip_of(photos) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        rows = ["image,hashtags"]
        for i, photo in enumerate(photos):
            name = f"p{i}{Path(photo.path).suffix}"
            zf.write(photo.path, f"mine/{name}")
            rows.append(f"{name},{' '.join('#' + t for t in photo.tags)}")
        zf.writestr("mine/tags.csv", "\n".join(rows) + "\n")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--source", default="models/hashtag/tuxpaint")
    args = parser.parse_args(argv)
    source = Path(args.source)
    if not (source / "model" / "hashtag.json").is_file():
        print(f"error: no trained hashtag model in {source}; run `python -m hashtag train` first", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="tagged-bench-"))
    os.environ["RECS_DATABASE_URL"] = f"sqlite:///{work / 'fb.sqlite3'}"
    results = metrics.RESULTS_DIR
    artifacts.MODELS_DIR = work / "models"
    try:
        root = work / "tuxpaint"
        shutil.copytree(source, root, ignore=shutil.ignore_patterns("last.pt", "versions", "serving.json"))
        # after MODELS_DIR points into the scratch folder: hashtag.data fixes its model paths from it when imported
        from hashtag import service
        from hashtag.concepts import load_photo_set

        photos = load_photo_set("dev", require_all=False)[: args.photos]
        store = FeedbackStore.open(images_dir=work / "images")
        store.create_profile("bench")
        load = os.getloadavg()[0]
        started = time.perf_counter()
        report = service.import_photos(store, "bench", _zip_of(photos), label="bench.zip", permission=(True, ""))
        import_s = time.perf_counter() - started
        lines: list[tuple[float, float, str]] = []

        class Recorder(Progress):
            def __call__(self, fraction: float, message: str = "") -> None:
                lines.append((round(time.perf_counter() - t0, 1), round(fraction, 3), message))

        t0 = time.perf_counter()
        outcome = execute("hashtag.jobs:retrain_job", {"dataset": str(root), "images_dir": str(work / "images")},
                          Recorder(None, work / "scratch"))
        retrain_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {"photos": report["photos"], "import_seconds": round(import_s, 2), "retrain_seconds": round(retrain_s, 1),
           "load_average_at_start": round(load, 2), "cores": os.cpu_count(), "outcome": outcome,
           "epochs": [{"seconds": s, "message": m} for s, _, m in lines if "val F1" in m]}
    artifacts.write_json(results / "tagged_photos_retrain.json", out)
    print(f"{out['photos']} photos: import {out['import_seconds']} s, retrain {out['retrain_seconds']} s "
          f"(load {load:.1f}); {outcome}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    raise SystemExit(main())
