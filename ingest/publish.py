"""Publishing Spark output safely: stage, check, then swap directories in with renames."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


def write_parquet(
    frame: DataFrame,
    directory: Path,
    partition_by: list[str],
    unique_columns: Sequence[str] = (),
) -> None:
    """Write ``frame`` as Parquet under ``directory``: deterministic file names, no side files.

    Each Spark partition writes one file per output directory it holds rows of; callers
    sort rows within partitions so reruns write byte-identical files.

    Args:
        frame: Rows to write.
        directory: Output directory (replaced).
        partition_by: Columns that become ``name=value`` subdirectories.
        unique_columns: Columns whose values are all distinct (``event_id``): written
            without dictionary encoding, which Parquet would build per row group only to
            abandon it.
    """
    writer = frame.write.mode("overwrite")
    for column in unique_columns:
        writer = writer.option(f"parquet.enable.dictionary#{column}", "false")
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


STAGING_DIR = "_staging"
_RETIRED = re.compile(r"^\.(?P<target>.+)\.retired-[0-9a-f]{32}$")
_RUN_ID = re.compile(r"^(?P<host>.+)-(?P<pid>[0-9]+)-[0-9a-f]{32}$")
STALE_STAGING_SECONDS = 24 * 3600
"""A staging directory untouched this long is abandoned even if its owner is unknown."""


def staging_dir(curated_root: Path) -> Path:
    """A fresh ``_staging/<host>-<pid>-<uuid>`` directory path for one run (not created).

    The host and process id in the name let :func:`remove_abandoned` prove a run is dead.
    """
    name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}"
    return Path(curated_root) / STAGING_DIR / name


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Cleanup:
    """What :func:`remove_abandoned` removed and what it left for a person to look at.

    Attributes:
        retired_removed: Hidden ``.<name>.retired-*`` directories whose target exists.
        staging_removed: ``_staging/<run id>`` directories of dead runs.
        retired_kept: Retired directories whose target is missing (a swap was interrupted
            between its two renames: this is the only copy of that output).
    """

    retired_removed: list[Path] = field(default_factory=list)
    staging_removed: list[Path] = field(default_factory=list)
    retired_kept: list[Path] = field(default_factory=list)


def remove_abandoned(curated_root: Path, now: float | None = None) -> Cleanup:
    """Remove leftovers of killed runs that are provably abandoned.

    * ``.<name>.retired-<uuid>`` next to an existing ``<name>``: the swap finished its second
      rename, so the retired copy is stale. Without ``<name>`` it is kept (and listed).
    * ``_staging/<host>-<pid>-<uuid>`` of this host whose process is gone, and any staging
      directory not modified for :data:`STALE_STAGING_SECONDS`.

    Args:
        curated_root: Root of the curated tables.
        now: Current epoch seconds (tests pass it; default ``time.time()``).
    """
    curated_root = Path(curated_root)
    now = time.time() if now is None else now
    cleanup = Cleanup()
    if not curated_root.is_dir():
        return cleanup
    host = socket.gethostname()
    staging_root = curated_root / STAGING_DIR
    if staging_root.is_dir():
        for run_dir in sorted(staging_root.iterdir()):
            match = _RUN_ID.match(run_dir.name)
            dead = (
                match is not None
                and match["host"] == host
                and not _process_alive(int(match["pid"]))
            )
            stale = now - run_dir.stat().st_mtime > STALE_STAGING_SECONDS
            if dead or stale:
                shutil.rmtree(run_dir, ignore_errors=True)
                cleanup.staging_removed.append(run_dir)
    for directory, subdirs, _ in os.walk(curated_root):
        if Path(directory) == staging_root:
            subdirs.clear()
            continue
        for name in list(subdirs):
            match = _RETIRED.match(name)
            if match is None:
                continue
            subdirs.remove(name)
            retired = Path(directory) / name
            if (Path(directory) / match["target"]).exists():
                shutil.rmtree(retired)
                cleanup.retired_removed.append(retired)
            else:
                cleanup.retired_kept.append(retired)
    return cleanup
