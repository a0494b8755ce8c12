"""The partition hour of any file under a ``date=/hour=`` partition."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from muma.landing import partition_hour


def test_partition_hour_of_files_and_directories() -> None:
    expected = datetime(2026, 11, 1, 7, tzinfo=UTC)
    assert (
        partition_hour(Path("root/items/date=2026-11-01/hour=07/domain=news/part.parquet"))
        == expected
    )
    assert partition_hour(Path("/x/date=2026-11-01/hour=07")) == expected


def test_a_path_outside_a_partition_is_an_error() -> None:
    with pytest.raises(ValueError, match="no date=/hour= partition"):
        partition_hour(Path("root/items/part.parquet"))
    with pytest.raises(ValueError):
        partition_hour(Path("root/xdate=2026-11-01/hour=07/part.parquet"))
