"""Publishing Spark output safely: stage, check, then swap directories in with renames."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def write_parquet(frame: DataFrame, directory: Path, partition_by: list[str]) -> None:
    """One file per output directory, rows sorted, deterministic file names, no side files."""
    writer = frame.write.mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.parquet(str(directory))
    directory.mkdir(parents=True, exist_ok=True)
    for path in list(directory.rglob("*")):
        if path.is_file() and (path.name.endswith(".crc") or path.name.startswith("_")):
            path.unlink()
    by_dir: dict[Path, list[Path]] = {}
    for path in directory.rglob("*.parquet"):
        by_dir.setdefault(path.parent, []).append(path)
    for parent, paths in by_dir.items():
        for n, path in enumerate(sorted(paths)):
            path.rename(parent / f".rename-{n:05d}")
        for n in range(len(paths)):
            (parent / f".rename-{n:05d}").rename(parent / f"part-{n:05d}.snappy.parquet")


def row_count(directory: Path) -> int:
    """Rows in the Parquet files under ``directory``, from their footers."""
    return sum(pq.ParquetFile(path).metadata.num_rows for path in directory.rglob("*.parquet"))


def swap(staged: Path, target: Path) -> None:
    """Replace ``target`` by ``staged`` with renames; the old output survives until the end.

    The previous output is first renamed to a hidden sibling (Spark ignores names starting
    with a dot), so a crash between the two renames loses nothing.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    retired = target.with_name(f".{target.name}.retired-{uuid.uuid4().hex}")
    if target.exists():
        os.rename(target, retired)
    os.rename(staged, target)
    if retired.exists():
        shutil.rmtree(retired)


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
