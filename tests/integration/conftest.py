"""One local SparkSession for the whole test session, stopped at the end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator:
    from ingest.spark import get_spark

    session = get_spark("local[2]", "muma-tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
