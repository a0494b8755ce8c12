"""Small simulated landing zones, built once per test session and shared by the data tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pytest

from muma.contract import Source, check_line, parse_timestamp, partition_dir
from muma.landing import read_partition_lines
from simulator.config import BadRecords, SimulatorConfig
from simulator.logs import SimulationSummary, hours_between, simulate

SIM_START = datetime(2026, 11, 1, 16, tzinfo=UTC)
"""An evening hour: the diurnal peak gives a few thousand requests per hour from 2,000 users."""
SIM_HOURS = 4
SIM_SEED = 20261101
BAD_SHARE = 0.05


def small_config(**changes: Any) -> SimulatorConfig:
    """A world small enough to simulate a few hours in well under a second."""
    return SimulatorConfig(users=2_000, items=800, **changes)


@dataclass(frozen=True)
class SimulatedRun:
    """One simulated range on disk and how to read it back."""

    config: SimulatorConfig
    seed: int
    start: datetime
    end: datetime
    landing_root: Path
    sidecar_root: Path
    summary: SimulationSummary

    @property
    def hours(self) -> list[datetime]:
        return list(hours_between(self.start, self.end))

    def lines(self, source: Source, hour: datetime) -> list[bytes]:
        return read_partition_lines(self.landing_root, source, hour)

    def partitions(self, source: Source) -> Iterator[tuple[datetime, list[bytes]]]:
        for hour in self.hours:
            yield hour, self.lines(source, hour)

    def records(self, source: Source) -> pl.DataFrame:
        """Every contract-valid record of ``source``, plus its partition ``hour`` and parsed ``ts``.

        ``event_time`` is ``ts`` parsed by the contract into an aware UTC datetime.
        """
        rows = []
        for hour, lines in self.partitions(source):
            for line in lines:
                record, violation = check_line(source, line)
                if violation is None:
                    rows.append(
                        {**record, "hour": hour, "event_time": parse_timestamp(record["ts"])}
                    )
        return pl.DataFrame(rows, infer_schema_length=None)

    def manifest(self, source: Source, hour: datetime) -> list[dict]:
        path = partition_dir(self.sidecar_root / "injected", source, hour) / "bad.jsonl"
        if not path.exists():
            return []
        return [orjson.loads(line) for line in path.read_bytes().splitlines()]

    def truth(self) -> pl.DataFrame:
        return pl.concat(
            pl.read_parquet(
                partition_dir(self.sidecar_root / "truth", Source.IMPRESSIONS, hour)
                / "truth.parquet"
            )
            for hour in self.hours
        )


def run_simulation(
    root: Path, config: SimulatorConfig, seed: int = SIM_SEED, hours: int = SIM_HOURS
) -> SimulatedRun:
    """Simulate ``hours`` hours from :data:`SIM_START` into ``root/landing`` and ``root/sidecar``."""
    end = SIM_START + timedelta(hours=hours)
    landing_root, sidecar_root = root / "landing", root / "sidecar"
    summary = simulate(config, seed, SIM_START, end, landing_root, sidecar_root)
    return SimulatedRun(config, seed, SIM_START, end, landing_root, sidecar_root, summary)


@pytest.fixture(scope="session")
def simulate_into() -> Callable[..., SimulatedRun]:
    """:func:`run_simulation`, for tests that need a run of their own."""
    return run_simulation


@pytest.fixture(scope="session")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> SimulatedRun:
    """A few hours of logs without injected bad records."""
    return run_simulation(tmp_path_factory.mktemp("clean"), small_config())


@pytest.fixture(scope="session")
def dirty_run(tmp_path_factory: pytest.TempPathFactory) -> SimulatedRun:
    """The same world, seed and range as :func:`clean_run`, with 5% bad records injected."""
    config = small_config(bad_records=BadRecords(share=BAD_SHARE))
    return run_simulation(tmp_path_factory.mktemp("dirty"), config)


@pytest.fixture(scope="session")
def impressions(clean_run: SimulatedRun) -> pl.DataFrame:
    return clean_run.records(Source.IMPRESSIONS)


@pytest.fixture(scope="session")
def clicks(clean_run: SimulatedRun) -> pl.DataFrame:
    return clean_run.records(Source.CLICKS)
