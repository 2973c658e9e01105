"""How long reading a listening-history export takes, and how names collide in a real artist list.

    python bench/history_read.py [--plays 200000 2000000] [--repeats 3] [--lastfm-path ../shared/data/lastfm-2k]
                                 [--out bench/results/history_read.json]

Reading: for each size a synthetic Spotify extended-history zip is written once (the fixture's records with
3,000 artists, 20 titles each, one play every 150 s; split in 15,000-play files as Spotify does), then each
repeat reads it in a fresh subprocess, so the time (``read_exports`` alone, imports excluded) and the peak memory
(the child's own ``VmHWM``; ``ru_maxrss`` would carry the parent's high-water mark across fork and exec) are
those of one import. The machine is usually shared: the load average is recorded.

Names (with ``--lastfm-path``): how many of Last.fm-2K's artist names share a matching key, with examples, to
show what the key merges in real data.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from music.history import read_exports  # noqa: E402
from music.history.names import normalize  # noqa: E402

FIXTURE = ROOT / "tests/fixtures/history/spotify-extended/Streaming_History_Audio_2019-2021_0.json"
FILE_PLAYS = 15_000


def write_export(plays: int, path: Path, seed: int = 0) -> None:
    """A Spotify-shaped zip of ``plays`` records, written file by file to keep the generator's memory small."""
    base = json.loads(FIXTURE.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for start in range(0, plays, FILE_PLAYS):
            records = []
            for i in range(start, min(plays, start + FILE_PLAYS)):
                r = dict(base[i % len(base)])
                if r["master_metadata_album_artist_name"]:
                    r["master_metadata_album_artist_name"] += f" {rng.randrange(3000)}"
                    r["master_metadata_track_name"] += f" {rng.randrange(20)}"
                    r["ms_played"] = rng.randrange(1000, 400_000)
                r["ts"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_400_000_000 + 150 * i))
                records.append(r)
            name = f"Spotify Extended Streaming History/Streaming_History_Audio_{start // FILE_PLAYS}.json"
            zf.writestr(name, json.dumps(records, indent=2, ensure_ascii=False))


def own_peak_kb() -> int:
    """This process's own memory high-water mark: /proc's ``VmHWM``, ``ru_maxrss`` where /proc is missing."""
    status = Path("/proc/self/status")
    found = re.search(r"VmHWM:\s+(\d+)", status.read_text()) if status.exists() else None
    return int(found.group(1)) if found else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def read_once(path: Path) -> dict:
    """One import in this process: seconds in ``read_exports`` and the process's peak memory."""
    t = time.perf_counter()
    history = read_exports([path])
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "peak_rss_mb": own_peak_kb() / 1024,
            "plays": history.report["plays"], "records": history.report["records"]}


def bench_reads(sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="history-bench-") as tmp:
        for n in sizes:
            path = Path(tmp) / f"my_spotify_data_{n}.zip"
            write_export(n, path)
            runs = []
            for _ in range(repeats):
                load = os.getloadavg()[0]
                out = subprocess.run([sys.executable, __file__, "--read", str(path)], check=True,
                                     capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
                runs.append({**json.loads(out.stdout.strip().splitlines()[-1]), "load_before": load})
            row = {"records": n, "zip_mb": round(path.stat().st_size / 2**20, 1),
                   "median_seconds": round(statistics.median(r["seconds"] for r in runs), 2),
                   "median_peak_rss_mb": round(statistics.median(r["peak_rss_mb"] for r in runs)),
                   "plays": runs[0]["plays"], "runs": runs}
            print(json.dumps({k: v for k, v in row.items() if k != "runs"}), flush=True)
            rows.append(row)
    return rows


def bench_names(folder: Path) -> dict:
    """Last.fm-2K artist names that share a matching key with another name."""
    with open(folder / "artists.dat", encoding="utf-8", newline="") as f:
        names = [r[1] for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)][1:]
    by_key: dict[str, list[str]] = defaultdict(list)
    for name in names:
        by_key[normalize(name)].append(name)
    shared = {k: v for k, v in by_key.items() if len(v) > 1}
    return {"names": len(names), "keys": len(by_key), "shared_keys": len(shared),
            "names_in_shared_keys": sum(len(v) for v in shared.values()),
            "examples": [v for _, v in sorted(shared.items())[:40]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plays", type=int, nargs="+", default=[200_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lastfm-path", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/history_read.json")
    parser.add_argument("--read", type=Path, help=argparse.SUPPRESS)  # the child: one import
    args = parser.parse_args()
    if args.read:
        print(json.dumps(read_once(args.read)))
        return
    result = {"load_average_start": os.getloadavg(), "cpus": os.cpu_count(), "reads": bench_reads(args.plays,
                                                                                                  args.repeats)}
    if args.lastfm_path:
        result["lastfm_2k_names"] = bench_names(args.lastfm_path)
    result["load_average_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
