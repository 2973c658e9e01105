"""How long a listening log takes to train under its own name: MF, then "up next", at two sizes.

    python bench/music_logs.py [--repeats 3] [--out bench/results/music_logs.json]

Two logs: the test fixture (``tests/fixtures/music/logs/service_log.csv``, 432 plays) and a seeded synthetic
service log of 100,000 plays (2,000 listeners × 50 plays over 2,000 tracks in 20 taste clusters, sessions of 10
plays a day apart). Each is trained ``--repeats`` times with ``music.logs.train_log`` (what the Data page's job and
``python -m music train --name`` run), in this process, into a private models folder; the JSON gives medians of
the MF fit, the up-next fit and the whole call (reading and checking the CSV included), and the machine's load
average (the machine is usually shared).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RECS_NO_TQDM", "1")
os.environ["RECS_MODELS_DIR"] = tempfile.mkdtemp(prefix="bench-music-logs-")

import numpy as np  # noqa: E402

from core.metrics import write_result  # noqa: E402
from music.logs import train_log  # noqa: E402
import torch  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "music" / "logs" / "service_log.csv"
FIXTURE_COLUMNS = {"user": "listener_id", "item": "track_id", "weight": "play_count", "timestamp": "played_at",
                   "title": "track_name", "artist": "artist_name"}


def synthetic_log(path: Path, *, listeners: int = 2000, tracks: int = 2000, plays: int = 50, seed: int = 1) -> Path:
    """A service log with taste clusters and daily sessions of 10 plays (seeded: same seed, same file)."""
    rng = np.random.default_rng(seed)
    u = np.repeat(np.arange(listeners), plays)
    k = np.tile(np.arange(plays), listeners)
    cluster = tracks // 20
    item = np.where(rng.random(len(u)) < 0.8, (u % 20) * cluster + rng.integers(0, cluster, len(u)),
                    rng.integers(0, tracks, len(u)))
    t = 1_700_000_000 + u * 10_000_000 + (k // 10) * 86_400 + k * 240 + rng.integers(0, 60, len(u))
    with open(path, "w") as f:
        f.write("uid,tid,n,ts\n")
        f.writelines(f"u{a},t{b},{c},{d}\n" for a, b, c, d in zip(u, item, rng.integers(1, 5, len(u)), t))
    return path


def run(path: Path, columns: dict[str, str], repeats: int) -> dict[str, Any]:
    total, mf, nxt, result = [], [], [], {}
    for k in range(repeats):
        started = time.perf_counter()
        result = train_log(f"bench-{k}", "csv", path, columns=columns, weight_kind="plays", force=True)
        total.append(time.perf_counter() - started)
        mf.append(result["train_seconds"])
        nxt.append((result["up_next"] or {}).get("seconds") or 0.0)
    return {"plays": result["report"].get("rows_read"), "summary": result["summary"],
            "validation": result["validation"], "up_next": result["up_next"], "repeats": repeats,
            "median_total_s": round(statistics.median(total), 1), "median_mf_s": round(statistics.median(mf), 1),
            "median_up_next_fit_s": round(statistics.median(nxt), 1), "load_average": os.getloadavg()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="music_logs", help="result name under bench/results/")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        big = synthetic_log(Path(tmp) / "service-100k.csv")
        out = {"command": "python bench/music_logs.py", "cpu_count": os.cpu_count(),
               "fixture_432_plays": run(FIXTURE, FIXTURE_COLUMNS, args.repeats),
               "synthetic_100k_plays": run(big, {"user": "uid", "item": "tid", "weight": "n", "timestamp": "ts"},
                                           args.repeats)}
    write_result(args.out, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
