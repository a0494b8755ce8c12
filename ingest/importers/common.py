"""What every real-data importer shares: contract-checked landing writes and the summary.

An importer turns one public dataset into landing-zone records. Two rules hold for all of
them:

* Nothing is dropped silently. Every input unit (a file row, or one impressed article of a
  MIND row) is either converted or counted as skipped under a reason, so
  ``read == converted + skipped`` per input; :meth:`ImportSummary.reconciles` checks it.
* Nothing that breaks the contract is written. :func:`land` renders a frame with
  :mod:`muma.landing`, checks every line with :func:`muma.contract.check_line`, writes the
  valid lines into their hour partitions and reports the rest by reason code
  (``contract:<reason>:<field>``).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from muma.contract import Source, check_line
from muma.landing import frame_to_jsonl, write_partition_bytes

HOUR_MS = 3_600_000
CLICK_DELAY_MS = 1_000
"""None of the datasets logs a click time: a click is written one second after its impression."""


@dataclass
class InputCount:
    """Accounting of one kind of input unit: how many were read, converted and skipped why."""

    read: int = 0
    converted: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] += int(count)

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def reconciles(self) -> bool:
        return self.read == self.converted + self.skipped_total

    def as_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "converted": self.converted,
            "skipped": dict(sorted(self.skipped.items())),
        }


@dataclass
class ImportSummary:
    """What one import read, wrote and skipped.

    Attributes:
        dataset: Short dataset name (``mind``, ``ciao``, ``obd``).
        landing_root: Landing root written under (``v1/<source>/date=/hour=``).
        part: File name stem of the partition files written (re-running replaces them).
        inputs: Per input unit (e.g. ``"news.tsv rows"``), read/converted/skipped counts.
        records_written: Lines written per landing source.
        partitions_written: Hour partitions written per landing source.
        side_outputs: Tables written next to the landing zone (not part of the contract).
        notes: Counted facts about the data worth reporting (anomalies, placeholders used).
        seconds: Wall time of the import.
    """

    dataset: str
    landing_root: Path
    part: str
    inputs: dict[str, InputCount] = field(default_factory=dict)
    records_written: Counter[str] = field(default_factory=Counter)
    partitions_written: Counter[str] = field(default_factory=Counter)
    side_outputs: dict[str, Path] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def input(self, name: str) -> InputCount:
        """The counter of input unit ``name``, created on first use."""
        return self.inputs.setdefault(name, InputCount())

    def reconciles(self) -> bool:
        """Whether every input unit was either converted or skipped with a reason."""
        return all(count.reconciles() for count in self.inputs.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "landing_root": str(self.landing_root),
            "part": self.part,
            "inputs": {name: count.as_dict() for name, count in self.inputs.items()},
            "records_written": dict(self.records_written),
            "partitions_written": dict(self.partitions_written),
            "side_outputs": {name: str(path) for name, path in self.side_outputs.items()},
            "notes": self.notes,
            "reconciles": self.reconciles(),
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class Landed:
    """Result of :func:`land`: which rows were valid and what was written."""

    valid: np.ndarray
    skipped: Counter[str]
    records: int
    partitions: int


def land(
    landing_root: Path,
    source: Source,
    frame: pl.DataFrame,
    part: str,
    summary: ImportSummary | None = None,
) -> Landed:
    """Check every row of ``frame`` against the contract and write the valid ones by hour.

    Args:
        landing_root: Landing root.
        source: Landing source of the rows.
        frame: One row per record, columns named as the contract's keys; ``ts`` (and
            ``publish_ts`` for items) as int64 epoch milliseconds, UTC.
        part: File name stem inside each hour partition; distinct per importer run so that
            imports of different datasets into the same hour do not replace each other.
        summary: When given, records and partitions written are added to it.

    Returns:
        The boolean mask of rows written (in ``frame`` order) and the skipped rows by reason.
    """
    valid = np.zeros(frame.height, dtype=bool)
    skipped: Counter[str] = Counter()
    if frame.height == 0:
        return Landed(valid, skipped, 0, 0)
    lines = frame_to_jsonl(source, frame).splitlines()
    if len(lines) != frame.height:
        raise RuntimeError(f"{source}: rendered {len(lines)} lines for {frame.height} rows")
    for index, line in enumerate(lines):
        _, violation = check_line(source, line)
        if violation is None:
            valid[index] = True
        else:
            skipped[f"contract:{violation.reason}:{violation.field}"] += 1
    kept = np.flatnonzero(valid)
    hours = frame["ts"].to_numpy()[kept].astype(np.int64) // HOUR_MS
    order = np.argsort(hours, kind="stable")
    kept, hours = kept[order], hours[order]
    partitions = 0
    if kept.size:
        starts = np.r_[0, np.flatnonzero(np.diff(hours)) + 1]
        for rows, hour in zip(np.split(kept, starts[1:]), hours[starts], strict=True):
            hour_start = datetime.fromtimestamp(int(hour) * HOUR_MS // 1000, tz=UTC)
            payload = b"\n".join(lines[row] for row in rows) + b"\n"
            write_partition_bytes(landing_root, source, hour_start, payload, part=part)
            partitions += 1
    if summary is not None:
        summary.records_written[str(source)] += int(kept.size)
        summary.partitions_written[str(source)] += partitions
    return Landed(valid, skipped, int(kept.size), partitions)


def account(count: InputCount, landed: Landed, considered: int | None = None) -> None:
    """Add a :func:`land` result to an input counter (converted rows and contract skips)."""
    count.converted += landed.records
    for reason, number in landed.skipped.items():
        count.skip(reason, number)
    if considered is not None and considered != landed.records + sum(landed.skipped.values()):
        raise RuntimeError("landed rows do not add up to the rows considered")


def timer() -> float:
    return time.perf_counter()


def epoch_ms_from_seconds(seconds: np.ndarray) -> np.ndarray:
    """Unix seconds (any int dtype) as int64 epoch milliseconds."""
    return np.asarray(seconds, dtype=np.int64) * 1000
