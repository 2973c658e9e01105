"""The product's numbers with int8 image embeddings against fp32, in one run, each from a clean start.

    python bench/encoders_downstream.py [--steps fashion multimodal] [--queries N] [--out ...]

For each precision (``RECS_ENCODER_PRECISION`` = fp32, then int8) every step runs its real CLI commands in a
fresh models folder and a fresh encoder cache (so the int8 run pays for quantizing its graphs, as a first
`make run` would), and records the children's CPU-seconds and wall-clock per command:

- fashion: ``python -m fashion index`` (the Fashion-MNIST step of ``make models``: 70,000 items at 96 px plus the
  projection) then ``python -m fashion evaluate --json`` (precision@10 on the test split, with its interval);
- multimodal: ``python -m multimodal evaluate --json`` (it encodes the Tux Paint catalog itself; fused recall@10);
- catalog: ``python bench/catalog_quality.py`` (own-catalog word search and photo search on the labelled real
  photos of ``bench/checksets/catalog_*.csv``; its result file is read back, one per precision);
- hashtag: ``python -m hashtag build-dataset``, ``train`` and ``evaluate --json`` (the real-photo hit rates of the
  model trained on that precision's grids; long: run it alone with ``--steps hashtag``).

The machine is shared: CPU-seconds are the comparable figure, wall-clock depends on the neighbours.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core import int8  # noqa: E402  (light: numpy and PIL; records which engine ``auto`` resolves to)

STEPS = {
    "fashion": [("index", ["-m", "fashion", "index", "--json"]), ("evaluate", ["-m", "fashion", "evaluate", "--json"])],
    "multimodal": [("evaluate", ["-m", "multimodal", "evaluate", "--json"])],  # encodes the catalog itself
    "catalog": [("quality", ["bench/catalog_quality.py", "--out", "encoders_downstream_catalog_{precision}"])],
    "hashtag": [("build-dataset", ["-m", "hashtag", "build-dataset", "--json"]),
                ("train", ["-m", "hashtag", "train", "--json"]), ("evaluate", ["-m", "hashtag", "evaluate", "--json"])],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], env: dict[str, str]) -> dict[str, object]:
    """One CLI command: its CPU-seconds, wall-clock and parsed JSON output (or the end of its error)."""
    cpu, wall = children_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True)
    out: dict[str, object] = {"command": " ".join(["python", *args]), "cpu_s": round(children_cpu() - cpu, 1),
                              "wall_s": round(time.perf_counter() - wall, 1), "exit": proc.returncode}
    if proc.returncode:
        out["error"] = proc.stderr[-2000:]
        return out
    try:
        out["result"] = json.loads(proc.stdout[proc.stdout.index("{"):] if "{" in proc.stdout else proc.stdout)
    except ValueError:
        out["stdout_tail"] = proc.stdout[-2000:]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=list(STEPS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--threads", type=int, default=1, help="RECS_THREADS (make run's image lane: 1)")
    parser.add_argument("--encoder-cache", default=None,
                        help="reuse this encoder cache (already quantized graphs) instead of a fresh one per precision")
    parser.add_argument("--out", default="bench/results/encoders_downstream.json")
    args = parser.parse_args()
    result: dict[str, object] = {"load_avg_start": os.getloadavg(), "threads": args.threads, "runs": {},
                                 "int8_engine": os.environ.get("RECS_INT8_ENGINE", "auto"),
                                 "int8_engine_resolved": int8.int8_engine(), "cpu_int8": list(int8.int8_flags())}
    for precision in args.precisions:
        with tempfile.TemporaryDirectory(prefix=f"downstream-{precision}-") as work:
            env = dict(os.environ, RECS_ENCODER_PRECISION=precision, RECS_MODELS_DIR=f"{work}/models",
                       RECS_ENCODER_CACHE=args.encoder_cache or f"{work}/encoders", RECS_THREADS=str(args.threads),
                       OMP_NUM_THREADS=str(args.threads), RECS_NO_TQDM="1", PYTHONPATH=str(ROOT))
            for step in args.steps:
                for name, command in STEPS[step]:
                    row = run([c.format(precision=precision) for c in command], env)
                    result_file = ROOT / "bench" / "results" / f"encoders_downstream_catalog_{precision}.json"
                    if step == "catalog" and row["exit"] == 0 and result_file.is_file():
                        row["result"] = json.loads(result_file.read_text())
                    result["runs"].setdefault(precision, {}).setdefault(step, {})[name] = row
                    print(precision, step, name, {k: v for k, v in row.items() if k != "result"}, flush=True)
                    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    result["load_avg_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
