"""The music CLI: train skips fresh models, recommend --json prints only JSON, errors are readable;
evaluation writes its results JSON for the app's plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "tests" / "fixtures" / "music" / "csv" / "plays.csv"


def _run(*args: str, models: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, RECS_MODELS_DIR=str(models), PYTHONPATH=str(ROOT), RECS_NO_TQDM="1")
    return subprocess.run([sys.executable, "-m", "music", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow(reason="python -m music processes train")
def test_train_recommend_json_and_skip(tmp_path):
    r = _run("train", "--dataset", "csv", "--path", str(CSV), "--json", models=tmp_path)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)  # stdout is JSON only
    assert first["dataset"] == "csv" and not first.get("skipped")
    assert (tmp_path / "music" / "csv" / "mf.keras").is_file()
    again = json.loads(_run("train", "--dataset", "csv", "--path", str(CSV), "--json", models=tmp_path).stdout)
    assert again["skipped"] is True  # fresh artifact: not retrained

    r = _run("recommend", "--dataset", "csv", "--user", "alice", "--top", "2", "--json", models=tmp_path)
    assert r.returncode == 0, r.stderr
    recs = json.loads(r.stdout)
    assert 1 <= len(recs) <= 2
    for rec in recs:
        assert {"item", "title", "score", "reason", "artist", "genres"} <= set(rec)
        assert rec["item"] not in ("song-10", "song-12")  # alice has heard these

    r = _run("recommend", "--dataset", "csv", "--genres", "rock", "--json", models=tmp_path)
    assert json.loads(r.stdout)[0]["title"] == "Paranoid Android"

    r = _run("recommend", "--dataset", "csv", "--user", "mallory", "--json", models=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "mallory" in r.stderr and r.stdout == ""


def test_recommend_without_models_says_what_to_run(tmp_path):
    r = _run("recommend", "--user", "u0001", models=tmp_path)
    assert r.returncode == 1
    assert "python -m music train" in r.stderr


@pytest.mark.slow(reason="python -m music processes train and evaluate")
def test_evaluate_writes_results_for_the_plot(tmp_path, monkeypatch):
    from music.mf import data as mfdata
    from music.mf import train as mtrain
    from music.data import load_dataset
    from music.mf.evaluate import evaluate

    monkeypatch.setattr(mfdata, "music_dir", lambda: tmp_path / "music")
    data = load_dataset("simulated", n_users=120, n_songs=250, n_artists=30, seed=5)
    from bench.music_peers import peers_for

    res = evaluate("simulated", data=data, tune=False, spark=False,  # Spark's row: tests/music/test_music_spark.py
                   peers=peers_for(data.kind))
    methods = res["methods"]
    assert {"mf", "popularity", "genre", "implicit_als", "implicit_bpr"} <= set(methods)
    for name in ("mf", "popularity"):
        assert {"precision@10", "recall@10", "ndcg@10", "hr@10", "coverage"} <= set(methods[name])
        assert 0 <= methods[name]["ndcg@10"] <= 1
    saved = json.loads((tmp_path / "music" / "evaluation-simulated.json").read_text())
    assert saved["methods"]["mf"]["ndcg@10"] == pytest.approx(methods["mf"]["ndcg@10"])
    assert mtrain.load_results("simulated")["dataset"] == "simulated"


def _main(argv: list[str], capsys) -> tuple[int, list[str]]:
    """Run ``python -m music`` in-process: (exit status, stderr lines)."""
    from music.__main__ import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own complaints
        code = int(exc.code or 0)
    return code, capsys.readouterr().err.strip().splitlines()


def test_every_verb_with_a_bad_argument_is_one_error_line(capsys):
    """Bad input: exactly one ``error: ...`` line saying what is wrong, exit 2, never a traceback."""
    code, _ = _main(["train", "--dataset", "csv", "--path", str(CSV), "--json"], capsys)
    assert code == 0
    cases = [
        (["recommend", "--dataset", "csv", "--user", "nobody"], "nobody"),
        (["recommend", "--dataset", "csv", "--genres", "nosuchgenre"], "jazz"),  # names the known genres
        (["recommend", "--dataset", "csv", "--genres", "rock,nosuchgenre", "--json"], "'nosuchgenre'"),
        (["recommend", "--dataset", "csv"], "--user"),
        (["recommend", "--dataset", "csv", "--user", "alice", "--top", "0"], "--top"),
        (["recommend", "--dataset", "csv", "--user", "alice", "--top", "many"], "--top"),
        (["recommend", "--dataset", "nosuch", "--user", "alice"], "nosuch"),
        (["train", "--dataset", "nosuch"], "nosuch"),
        (["train", "--dataset", "csv"], "--path"),
        (["train", "--dataset", "csv", "--path", str(CSV.parent / "no-such.csv")], "does not exist"),
        (["evaluate", "--dataset", "lastfm-1k"], "--path"),
        (["evaluate", "--dataset", "nosuch"], "nosuch"),
        (["evaluate", "--dataset", "csv", "--seed", "x"], "--seed"),
        (["frobnicate"], "frobnicate"),
    ]
    for argv, needle in cases:
        code, err = _main(argv, capsys)
        errors = [line for line in err if line.startswith("error:")]
        assert code == 2, (argv, err)
        assert len(errors) == 1 and needle in errors[0], (argv, err)
        assert not any("Traceback" in line for line in err), (argv, err)
