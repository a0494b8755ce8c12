"""Building the one SparkSession an ingest run uses."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from muma.settings import Settings

LOCAL_SHUFFLE_PARTITIONS = 4
"""An hour partition is a few hundred thousand rows at most: 200 shuffle tasks only add overhead."""


def get_spark(
    settings_or_master: Settings | str | None = None,
    app_name: str = "muma-ingest",
    driver_memory: str | None = None,
):
    """Get or create the SparkSession for ``Settings.spark_master`` (default ``local[*]``).

    Local masters run in-process with UTC session time, few shuffle partitions, no web UI and
    the driver's own Python for the workers (so they import ``muma`` from the same
    environment). ``sc://`` masters connect to a Spark Connect server instead.

    Args:
        settings_or_master: Settings object, a master URL, or ``None`` for ``local[*]``.
        app_name: Application name shown by the cluster manager.
        driver_memory: JVM heap of the driver, e.g. ``"3g"`` (local masters: the executors
            live in the driver); only takes effect when this call starts the JVM.
    """
    from pyspark.sql import SparkSession

    if settings_or_master is None:
        master = "local[*]"
    elif isinstance(settings_or_master, str):
        master = settings_or_master
    else:
        master = settings_or_master.spark_master
    if master.startswith("sc://"):
        return SparkSession.builder.remote(master).appName(app_name).getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        # Started by spark-submit (ingest/submit.py) or by the caller: its master stands.
        return active
    builder = configured(SparkSession.builder.master(master).appName(app_name))
    if driver_memory is not None:
        builder = builder.config("spark.driver.memory", driver_memory)
    if master.startswith("local"):
        # PySpark picks the workers' interpreter from the environment, not from the conf.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = builder.config(
            "spark.sql.shuffle.partitions", str(LOCAL_SHUFFLE_PARTITIONS)
        ).config("spark.default.parallelism", str(LOCAL_SHUFFLE_PARTITIONS))
    return builder.getOrCreate()


def configured(builder: SparkSession.Builder) -> SparkSession.Builder:
    """``builder`` with the settings every MUMA session has, whatever its master.

    UTC session time, microsecond Parquet timestamps, Arrow transfers, no ``_SUCCESS`` files,
    no web UI or console progress, and an uncompressed in-memory cache (compressing it costs
    about as much CPU as the work that fills it).
    """
    return (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.inMemoryColumnarStorage.compressed", "false")
    )
