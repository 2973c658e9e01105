"""Spark engines in local mode: catalog encoding (mapInPandas) and MLlib ALS, on small real data.

One ``local[2]`` session serves the whole module (starting one costs ~10 s quiet, a minute under load);
the CLI run below picks it up through ``core.spark.spark_job`` instead of starting its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

pytestmark = pytest.mark.slow(reason="starts a local Spark (~20 s) for the module; its tests run Spark jobs")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spark():
    from core.spark import SparkUnavailable, spark_session, stop_session

    try:
        session = spark_session("local[2]", ui=False)
    except SparkUnavailable as exc:
        pytest.skip(str(exc))
    yield session
    stop_session(session)


# ----------------------------------------------------------------------------------------------
# Java check


def test_missing_java_is_one_clear_line_naming_the_debian_package(tmp_path):
    """A CLI asked for Spark on a machine without Java prints one `error:` line with the package, exit 2."""
    env = dict(os.environ, JAVA_HOME=str(tmp_path / "no-java"), PATH=str(tmp_path / "no-bin"),
               PYTHONPATH=str(ROOT), RECS_MODELS_DIR=str(tmp_path / "models"))
    result = subprocess.run([sys.executable, "-m", "fashion", "index", "--catalog", "tuxpaint-clothes",
                             "--engine", "spark", "--json"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "openjdk-17-jre-headless" in lines[0] and "Java" in lines[0]


def test_old_java_is_refused_with_the_package_name(tmp_path, monkeypatch):
    from core.spark import SparkUnavailable, java_version

    fake = tmp_path / "jdk11" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho \'openjdk version "11.0.22" 2024-01-16\' >&2\n')
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(fake.parent.parent))
    with pytest.raises(SparkUnavailable, match="Java 11.*openjdk-17-jre-headless"):
        java_version()
    monkeypatch.delenv("JAVA_HOME")
    assert java_version() >= 17  # the machine's own Java passes


# ----------------------------------------------------------------------------------------------
# catalog encoding


def test_spark_vectors_equal_in_process_vectors(spark):
    """300 Tux Paint stamps (PNG and SVG) encoded by executors match the in-process encoder row by row."""
    from core.datasets import load_tuxpaint
    from core.encoders import get_image_encoder, l2_normalize
    from core.spark.encode import encode_catalog, encoder_spec

    stamps = load_tuxpaint()
    picked = [stamps[i] for i in np.linspace(0, len(stamps) - 1, 300).astype(int)]
    paths = [s.image_path for s in picked]
    stats: dict = {}
    spark_vecs = encode_catalog(spark, paths, encoder_spec(), partitions=3, stats=stats)
    encoder = get_image_encoder()
    local = encoder.grid(paths).max(axis=(2, 3))
    assert spark_vecs.shape == local.shape == (300, encoder.dim)
    cosine = (l2_normalize(spark_vecs) * l2_normalize(local)).sum(axis=1)
    assert cosine.min() >= 0.999, f"worst row {int(cosine.argmin())}: {cosine.min():.5f}"
    # rows come back in catalog order, not partition order: each row is nearest to its own local vector
    assert (np.argmax(l2_normalize(spark_vecs) @ l2_normalize(local).T, axis=1) == np.arange(300)).mean() > 0.95
    assert stats["partitions"] == 3
    assert stats["max_encoder_loads_per_process"] == 1  # the encoder is built once per worker process


def test_fashion_index_on_spark_gives_the_in_process_neighbours(spark, capsys):
    """`python -m fashion index --engine spark` on Tux Paint clothes: every item's top-10 equals in-process."""
    from fashion.__main__ import main
    from fashion.train import build_index, open_index

    assert main(["index", "--catalog", "tuxpaint-clothes", "--engine", "spark", "--force", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["built"] and out["engine"] == "spark" and out["items"] == 48
    on_spark = open_index("tuxpaint-clothes")
    neighbours_spark = {i: [h.id for h in on_spark.similar(i, 10)] for i in on_spark.ids}
    local, built = build_index("tuxpaint-clothes", force=True)
    assert built and local.manifest["engine"] == "local"
    neighbours_local = {i: [h.id for h in local.similar(i, 10)] for i in local.ids}
    differing = [i for i in local.ids if neighbours_spark[i] != neighbours_local[i]]
    assert not differing, f"{len(differing)} items differ, e.g. {differing[:3]}"
    assert spark.sparkContext._jsc is not None  # the CLI reused the module's session and left it running


def test_fashion_mnist_bytes_path_matches_in_process(spark):
    """28 px grey items travel as raw bytes and are preprocessed on executors exactly as in process."""
    from fashion.data import load_fashion_mnist
    from fashion.model import catalog_features
    from fashion.train import default_config, spark_features

    catalog = load_fashion_mnist().subset(np.arange(0, 70000, 350))  # 200 items, train and test
    config = default_config(True)
    on_spark = spark_features(catalog, config)
    local = catalog_features(catalog, config.encoder())
    cosine = (on_spark * local).sum(1) / np.linalg.norm(on_spark, axis=1) / np.linalg.norm(local, axis=1)
    assert cosine.min() >= 0.999


# ----------------------------------------------------------------------------------------------
# ALS


def _top10_overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b)]))


def test_spark_als_top10_agrees_with_implicit_als(spark):
    """Spark's implicit ALS on 150 MovieLens-100K users recommends like implicit's ALS does.

    Tolerance, and why: two ALS solvers never give identical lists (random initialisation, Spark's
    count-scaled λ), and even implicit's ALS under a second seed changes part of its top-10. So the
    bar is relative to that noise floor: Spark-vs-implicit overlap ≥ 0.8 × implicit-vs-implicit(other seed),
    and clearly above what popularity alone shares with implicit (so the agreement is personal, not just
    "both recommend the blockbusters").
    """
    pytest.importorskip("implicit")
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    from core.datasets import DataUnavailable
    from music.mf.spark_als import top_k, train_als
    from music.data import load_dataset

    try:
        data = load_dataset("movielens-100k")
    except DataUnavailable as exc:
        pytest.skip(str(exc))
    frame = data.interactions
    frame = frame[frame["user"].isin(frame["user"].drop_duplicates().iloc[:150])]
    u, i, w = data.codes(frame)
    values = np.log1p(w)
    n_users, n_items = data.n_users, data.n_items
    seen = sparse.csr_matrix((np.ones(len(u)), (u, i)), shape=(n_users, n_items))
    users = np.unique(u)
    rank, alpha = 16, 2.0

    def implicit_factors(seed: int) -> tuple[np.ndarray, np.ndarray]:
        conf = sparse.csr_matrix((1.0 + alpha * values, (u, i)), shape=(n_users, n_items))
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(factors=rank, regularization=0.1, iterations=10, random_state=seed,
                                            num_threads=1, calculate_training_loss=False)
            model.fit(conf, show_progress=False)
        return np.asarray(model.user_factors), np.asarray(model.item_factors)

    U, V = train_als(u, i, values, n_users, n_items, implicit=True, rank=rank, reg=0.01, alpha=alpha, max_iter=10,
                     seed=0, spark=spark)
    assert U.shape == (n_users, rank) and V.shape == (n_items, rank)
    unseen_users = np.setdiff1d(np.arange(n_users), users)
    assert not U[unseen_users].any()  # users outside the slice: zero rows, as documented
    assert np.abs(U[users]).sum(axis=1).min() > 0
    reference, other_seed = top_k(*implicit_factors(0), users, 10, seen), top_k(*implicit_factors(1), users, 10, seen)
    popularity = np.asarray(seen.sum(axis=0)).ravel().astype(np.float64)
    popular = top_k(np.ones((n_users, 1)), popularity[:, None], users, 10, seen)
    ours = top_k(U, V, users, 10, seen)
    noise_floor = _top10_overlap(reference, other_seed)
    agreement = _top10_overlap(ours, reference)
    assert agreement >= 0.8 * noise_floor, (agreement, noise_floor)
    assert agreement >= _top10_overlap(popular, reference) + 0.1
    small = dict(implicit=False, rank=4, reg=0.1, max_iter=3, spark=spark)  # explicit ratings this time
    first = train_als(u, i, w, n_users, n_items, seed=7, **small)
    assert all(np.allclose(a, b) for a, b in zip(first, train_als(u, i, w, n_users, n_items, seed=7, **small)))
