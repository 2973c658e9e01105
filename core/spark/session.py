"""One place that starts Apache Spark for the batch jobs (catalog encoding, ALS), after checking Java.

Why here: the tabs' ``--engine spark`` commands and the tests all need the same session settings
(Arrow on for ``mapInPandas``, the web UI off where nobody looks at it, a driver heap that fits
next to the app on a 24 GB / 2-core machine), and the one failure users actually hit — no Java, or
an old one — must read as one sentence naming the Debian package, not as a Py4J stack trace.

    from core.spark import spark_session, stop_session
    spark = spark_session()                      # local[*]
    spark = spark_session("spark://host:7077")   # a standalone cluster (or "yarn", "k8s://...")
    ...
    stop_session(spark)
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

if TYPE_CHECKING:  # pyspark is imported only when a session is really wanted (it costs ~1 s)
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Spark 4 runs on Java 17 or 21; Debian 12 ships 17 as this package.
JAVA_PACKAGE = "openjdk-17-jre-headless"
MIN_JAVA = 17
DEFAULT_MASTER = "local[*]"
#: The driver only collects vectors/factors and holds no cached data: 2 GB leaves room for a 70k × 1280
#: float32 catalog (360 MB) read back through Arrow, beside the app, on a 24 GB machine.
DRIVER_MEMORY = os.environ.get("RECS_SPARK_DRIVER_MEMORY", "2g")


class SparkUnavailable(RuntimeError):
    """Spark cannot start here (no usable Java, or pyspark missing); the message says what to install."""


def _java_binary() -> Optional[str]:
    """The ``java`` Spark's launcher will run: ``$JAVA_HOME/bin/java`` when JAVA_HOME is set, else PATH's."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None
    return shutil.which("java")


def java_version() -> int:
    """Major version of the Java Spark would use; raises ``SparkUnavailable`` with one clear message otherwise."""
    fix = f"Install it with `sudo apt-get install {JAVA_PACKAGE}` (Spark needs Java {MIN_JAVA} or newer)"
    java = _java_binary()
    if java is None:
        where = f"JAVA_HOME={os.environ['JAVA_HOME']} has no bin/java" if os.environ.get("JAVA_HOME") else "no `java` on PATH"
        raise SparkUnavailable(f"Java was not found ({where}). {fix}, or point JAVA_HOME at a Java {MIN_JAVA}+.")
    try:
        result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SparkUnavailable(f"{java} does not run ({exc}). {fix}.") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if result.returncode != 0 or match is None:
        raise SparkUnavailable(f"{java} -version failed. {fix}.")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" is Java 8
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise SparkUnavailable(f"{java} is Java {major}, too old for Spark 4. {fix}, or point JAVA_HOME at it.")
    return major


def spark_session(
    master: Optional[str] = None,
    *,
    app_name: str = "recs-studio",
    ui: Optional[bool] = None,
    shuffle_partitions: Optional[int] = None,
    extra_conf: Optional[dict[str, str]] = None,
) -> "SparkSession":
    """A SparkSession on ``master`` (default ``local[*]``, or ``$RECS_SPARK_MASTER``), Java checked first.

    ``ui`` defaults to off under pytest and for local masters (a web server nobody opens costs memory
    and a port); clusters keep it. In local mode shuffles use as many partitions as cores instead of
    Spark's 200, which on small data is pure scheduling overhead.
    """
    java_version()
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is in requirements.txt
        raise SparkUnavailable("pyspark is not installed (`pip install -r requirements.txt`).") from exc
    # pyspark 4.3 warns on every Arrow conversion that pandas 3 is "not yet fully supported"; the paths used
    # here (flat numeric/binary/list columns) are covered by this module's tests, so the warning is noise.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    master = master or os.environ.get("RECS_SPARK_MASTER") or DEFAULT_MASTER
    local = master.startswith("local")
    if ui is None:
        ui = not local and "PYTEST_CURRENT_TEST" not in os.environ
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", str(bool(ui)).lower())
        .config("spark.driver.memory", DRIVER_MEMORY)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.pythonUDF.arrow.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")  # stage bars would garble the CLIs' stderr
        .config("spark.python.worker.reuse", "true")  # keeps each worker's loaded encoder between tasks
    )
    if local:
        # executors' Python workers must run this interpreter (the venv with numpy, onnxruntime, the project)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        cores = os.cpu_count() or 2
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions or cores))
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
    elif shuffle_partitions:
        builder = builder.config("spark.sql.shuffle.partitions", str(shuffle_partitions))
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - Py4J/launcher errors become one readable line
        raise SparkUnavailable(f"Spark did not start on {master}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    spark.sparkContext.setLogLevel("ERROR")
    log.info("Spark %s session on %s", spark.version, master)
    return spark


def stop_session(spark: Optional["SparkSession"]) -> None:
    """Stop a session (and its JVM's SparkContext); harmless on None or an already stopped session."""
    if spark is None:
        return
    try:
        spark.stop()
    except Exception as exc:  # noqa: BLE001 - stopping is best effort at shutdown
        log.warning("stopping Spark: %s", exc)


@contextlib.contextmanager
def spark_job(master: Optional[str] = None, **kwargs: Any) -> Iterator["SparkSession"]:
    """A session for one batch job: the already active one if there is one (left running, e.g. a test
    module's), else a new one on ``master`` that is stopped when the job ends (a CLI run frees its JVM)."""
    from pyspark.sql import SparkSession  # pyspark loads in about a second: only when a Spark job really runs

    java_version()
    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    spark = spark_session(master, **kwargs)
    try:
        yield spark
    finally:
        stop_session(spark)
