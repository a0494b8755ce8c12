"""A run removes leftovers of killed runs, and only those it can prove abandoned."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ingest.publish import STALE_STAGING_SECONDS, remove_abandoned, staging_dir, swap


def _dead_pid() -> int:
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(child.stdout)


def _tree(root: Path) -> None:
    (root / "x.parquet").parent.mkdir(parents=True, exist_ok=True)
    (root / "x.parquet").write_bytes(b"data")


def test_removes_provably_abandoned_leftovers_only(tmp_path: Path):
    curated = tmp_path / "curated"
    hour = curated / "clicks" / "date=2026-11-01" / "hour=16"
    _tree(hour)
    stale_retired = hour.with_name(f".{hour.name}.retired-{'a' * 32}")
    _tree(stale_retired)
    orphan_target = curated / "clicks" / "date=2026-11-01" / "hour=17"
    only_copy = orphan_target.with_name(f".{orphan_target.name}.retired-{'b' * 32}")
    _tree(only_copy)
    host = socket.gethostname()
    dead = curated / "_staging" / f"{host}-{_dead_pid()}-{'c' * 32}"
    alive = curated / "_staging" / f"{host}-{os.getpid()}-{'d' * 32}"
    other_host = curated / "_staging" / f"elsewhere-{_dead_pid()}-{'e' * 32}"
    legacy_old = curated / "_staging" / ("f" * 32)
    for directory in (dead, alive, other_host, legacy_old):
        _tree(directory / "curated")
    old = time.time() - STALE_STAGING_SECONDS - 60
    os.utime(legacy_old, (old, old))

    cleanup = remove_abandoned(curated)

    assert set(cleanup.retired_removed) == {stale_retired}
    assert set(cleanup.retired_kept) == {only_copy}
    assert set(cleanup.staging_removed) == {dead, legacy_old}
    assert not stale_retired.exists() and not dead.exists() and not legacy_old.exists()
    assert only_copy.exists() and alive.exists() and other_host.exists()
    assert (hour / "x.parquet").read_bytes() == b"data"


def test_staging_dirs_name_their_run(tmp_path: Path):
    staged = staging_dir(tmp_path)
    assert staged.parent == tmp_path / "_staging"
    assert f"-{os.getpid()}-" in staged.name
    _tree(staged)
    assert remove_abandoned(tmp_path).staging_removed == []


def test_swap_leaves_no_retired_copy(tmp_path: Path):
    target = tmp_path / "table" / "hour=01"
    _tree(target)
    staged = tmp_path / "staged"
    _tree(staged)
    (staged / "x.parquet").write_bytes(b"new")
    swap(staged, target)
    assert (target / "x.parquet").read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["hour=01"]
