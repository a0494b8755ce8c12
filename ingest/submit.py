"""``spark-submit`` entry point of the ingest: the master and resources come from spark-submit.

::

    spark-submit --master spark://host:7077 ingest/submit.py --start 2026-11-01T00:00:00Z \\
        --end 2026-11-02T00:00:00Z

Takes the arguments of ``muma ingest`` and the same settings (``MUMA_DATA_ROOT``,
``MUMA_PARAMS_PATH``, ...) from the environment; only the session differs: it is built from
spark-submit's configuration (``--master``, ``--conf``), plus the settings every MUMA session
has (:func:`ingest.spark.configured`). The executors run :mod:`ingest.curate`, so they need
this package (installed, or shipped with ``--py-files``) and must see the landing and curated
roots at the same paths (a shared file system), as the staged swaps do.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    from pyspark.sql import SparkSession

    from ingest.spark import configured
    from muma.cli import app

    configured(SparkSession.builder.appName("muma-ingest")).getOrCreate()
    app(["ingest", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
