"""Encode an image catalog on Spark: ``mapInPandas`` over (row, image) → pooled CNN features in Parquet.

Why this shape: encoding is the one catalog job that grows with the number of products (a few million
photos is hours in one process), and it is embarrassingly parallel. Each Spark task gets a pandas batch
of rows, the executor's Python worker builds the ONNX encoder of ``core.encoders`` ONCE (a module-level
cache that lives as long as the reused worker process) and runs it over the batch, and the vectors land
in Parquet next to their row number. The driver then reads them back in catalog order, so the tab builds
its index exactly as from in-process features (same ONNX graph, same preprocessing: equal vectors).

    features = encode_catalog(spark, paths, {"backbone": "efficientnet_lite0", "pooling": "max"})

Inputs are either file paths (``str``; every executor must see the same path: a shared or distributed
filesystem on a cluster) or raw bytes (encoded images, or a tab's own pixel format with its own
``preprocess``). Outputs are the pooled, NOT normalised features, like ``fashion.model.catalog_features``;
callers normalise or project them as they do in process.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd

from core.int8 import int8_engine, int8_recipe, resolve_precision

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from core.encoders import ImageEncoder

log = logging.getLogger(__name__)

#: (encoder, a pandas Series of the input column) → (n, 3, S, S) float32, normalised for the backbone.
Preprocess = Callable[["ImageEncoder", pd.Series], np.ndarray]
#: Rows per Spark partition: big enough that per-task overhead (~50 ms) is noise, small enough to spread.
ROWS_PER_PARTITION = 2048
#: Where executors write the Parquet vectors; on a cluster set it to shared storage (hdfs://, s3a://, NFS).
SCRATCH = os.environ.get("RECS_SPARK_SCRATCH")
OUTPUT_SCHEMA = "row long, vector array<float>, worker_pid int, encoder_loads int"
ENCODER_KEYS = ("backbone", "pooling", "runtime", "input_size", "weights", "precision", "int8_engine", "int8_recipe")

# -- executor side --------------------------------------------------------------------------------
# These live in the executor's Python worker. Spark reuses workers between tasks
# (spark.python.worker.reuse, on by default and set by core.spark), so the encoder is built once per process.
_ENCODERS: dict[tuple, "ImageEncoder"] = {}
_LOADS = 0


def worker_encoder(spec: dict[str, Any], threads: int) -> "ImageEncoder":
    """The process's encoder for ``spec`` (built on first use; ONNX graph from ``RECS_ENCODER_CACHE``)."""
    global _LOADS
    key = tuple(spec.get(k) for k in ENCODER_KEYS) + (threads,)
    encoder = _ENCODERS.get(key)
    if encoder is None:
        # torch and onnxruntime load in seconds: once per Spark worker, not in the driver
        from core.encoders import ImageEncoder

        encoder = ImageEncoder(
            spec.get("backbone") or "efficientnet_lite0", pooling=spec.get("pooling") or "max",
            runtime=spec.get("runtime") or "onnx", input_size=spec.get("input_size"), weights=spec.get("weights"),
            threads=threads, precision=spec.get("precision"), int8_engine=spec.get("int8_engine"),
            int8_recipe=spec.get("int8_recipe"),
        )
        _ENCODERS[key] = encoder
        _LOADS += 1
        log.info("executor pid %d loaded %s (load %d)", os.getpid(), encoder.name, _LOADS)
    return encoder


def preprocess_images(encoder: "ImageEncoder", sources: pd.Series) -> np.ndarray:
    """Default preprocessing: each value is a file path or encoded image bytes → the backbone's input."""
    return np.stack([encoder.preprocess(s if isinstance(s, str) else bytes(s)) for s in sources])


def encode_partition(
    batches: Iterator[pd.DataFrame],
    *,
    spec: dict[str, Any],
    column: str,
    preprocess: Preprocess,
    batch_size: int,
    threads: int,
) -> Iterator[pd.DataFrame]:
    """The ``mapInPandas`` function: (row, column) batches → (row, pooled feature vector) batches."""
    encoder = worker_encoder(spec, threads)
    for frame in batches:
        for start in range(0, len(frame), batch_size):
            chunk = frame.iloc[start : start + batch_size]
            grid = encoder.grid_batch(preprocess(encoder, chunk[column]))
            pooled = grid.max(axis=(2, 3)) if encoder.pooling == "max" else grid.mean(axis=(2, 3))
            yield pd.DataFrame({
                "row": chunk["row"].to_numpy(np.int64),
                "vector": list(pooled.astype(np.float32)),
                "worker_pid": np.full(len(chunk), os.getpid(), np.int32),
                "encoder_loads": np.full(len(chunk), _LOADS, np.int32),
            })


# -- driver side ----------------------------------------------------------------------------------


def encoder_spec(backbone: str = "efficientnet_lite0", pooling: str = "max", runtime: str = "onnx",
                 input_size: Optional[int] = None, weights: Optional[str] = None,
                 precision: Optional[str] = None) -> dict[str, Any]:
    """The settings an executor needs to build the same encoder as the driver (plain JSON-able values).

    The precision and the int8 engine are resolved here, on the driver, so executors on other machines encode as
    the driver would (an executor without the driver's engine fails loudly instead of mixing vectors).
    """
    precision = resolve_precision(precision) if runtime == "onnx" else "fp32"
    return {"backbone": backbone, "pooling": pooling, "runtime": runtime, "input_size": input_size, "weights": weights,
            "precision": precision, "int8_engine": int8_engine() if precision == "int8" else None,
            "int8_recipe": int8_recipe() if precision == "int8" else None}


def encode_catalog(
    spark: "SparkSession",
    sources: Sequence[str | Path | bytes],
    spec: dict[str, Any],
    *,
    preprocess: Preprocess = preprocess_images,
    batch_size: int = 256,
    partitions: Optional[int] = None,
    output: Optional[str] = None,
    stats: Optional[dict[str, Any]] = None,
) -> np.ndarray:
    """Pooled features (N, D) float32 of ``sources`` in their given order, computed by Spark executors.

    ``output`` is where the Parquet goes (default: ``$RECS_SPARK_SCRATCH`` or a temporary folder,
    deleted afterwards when it is local). ``stats`` (a dict) receives what happened: partitions,
    executor processes used, encoder loads per process, seconds.
    """
    n = len(sources)
    if n == 0:
        raise ValueError("nothing to encode: the catalog is empty")
    started = time.perf_counter()
    is_bytes = isinstance(sources[0], (bytes, bytearray, memoryview))
    column = "data" if is_bytes else "path"
    values = [bytes(s) for s in sources] if is_bytes else [str(Path(s).resolve()) for s in sources]
    parallelism = spark.sparkContext.defaultParallelism
    partitions = partitions or max(parallelism, -(-n // ROWS_PER_PARTITION))
    threads = int(spark.conf.get("spark.task.cpus", "1"))
    frame = spark.createDataFrame(pd.DataFrame({"row": np.arange(n, dtype=np.int64), column: values}))
    job = functools.partial(encode_partition, spec=dict(spec), column=column, preprocess=preprocess,
                            batch_size=batch_size, threads=threads)
    scratch = output or SCRATCH
    temporary = scratch is None
    target = tempfile.mkdtemp(prefix="recs-spark-vectors-") if temporary else scratch.rstrip("/")
    parquet = f"{target}/vectors.parquet"
    try:
        frame.repartition(partitions, "row").mapInPandas(job, OUTPUT_SCHEMA).write.mode("overwrite").parquet(parquet)
        table = spark.read.parquet(parquet).toArrow()
    finally:
        if temporary:
            shutil.rmtree(target, ignore_errors=True)
    rows = table.column("row").to_numpy()
    if len(rows) != n or not np.array_equal(np.sort(rows), np.arange(n)):
        raise RuntimeError(f"Spark returned {len(rows)} vectors for {n} images (rows lost or duplicated)")
    flat = table.column("vector").combine_chunks()
    dim = len(flat[0])
    vectors = np.asarray(flat.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(n, dim)
    out = np.empty_like(vectors)
    out[rows] = vectors  # back into catalog order, whatever order the partitions finished in
    if stats is not None:
        pids = table.column("worker_pid").to_numpy()
        loads = table.column("encoder_loads").to_numpy()
        stats.update({
            "partitions": int(partitions),
            "executor_processes": int(len(np.unique(pids))),
            "max_encoder_loads_per_process": int(loads.max()),
            "seconds": round(time.perf_counter() - started, 2),
            "parquet": None if temporary else parquet,
        })
    log.info("Spark encoded %d images in %d partitions in %.1f s", n, partitions, time.perf_counter() - started)
    return out
