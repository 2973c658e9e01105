"""Apache Spark for the batch jobs two tabs share: one session maker (``session``) and catalog encoding
(``encode``, used by Fashion and Product search).

The session names are re-exported here, so ``from core.spark import spark_session, SparkUnavailable,
spark_job`` reads the same wherever it is used. ``encode`` is not imported here: it pulls in pandas and the
encoders, which a CLI that only needs ``SparkUnavailable`` for its error message should not pay for.
"""

from core.spark.session import (
    DEFAULT_MASTER,
    DRIVER_MEMORY,
    JAVA_PACKAGE,
    MIN_JAVA,
    SparkUnavailable,
    java_version,
    spark_job,
    spark_session,
    stop_session,
)

__all__ = ["DEFAULT_MASTER", "DRIVER_MEMORY", "JAVA_PACKAGE", "MIN_JAVA", "SparkUnavailable", "java_version",
           "spark_job", "spark_session", "stop_session"]
