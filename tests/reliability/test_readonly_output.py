"""Outputs on a disk that cannot be written: ``muma`` stops with one clear line naming the
path and the reason, exit code 1, and no traceback.

Tests run as root, and ``chmod`` does not stop root, so the output directory is a read-only
tmpfs mount (``mount -t tmpfs -o ro``). Where mounting is not permitted the output path lies
under a regular file instead (ENOTDIR), and the report says which one was used.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
OBD = ROOT.parent / "shared" / "data" / "open_bandit_dataset_sample"


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    mount_point = tmp_path / "readonly"
    mount_point.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount_point)],
            capture_output=True,
        ).returncode
        == 0
    )
    if mounted:
        try:
            yield mount_point, "read-only tmpfs mount"
        finally:
            subprocess.run(["umount", str(mount_point)], check=True)
    else:
        blocker = tmp_path / "a-file"
        blocker.write_text("not a directory")
        yield blocker / "data", "path under a regular file (ENOTDIR): mount not permitted"


def _muma(data_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUMA_")} | {
        "MUMA_DATA_ROOT": str(data_root),
        "MUMA_PARAMS_PATH": str(ROOT / "params.yaml"),
        "COLUMNS": "200",
    }
    muma = Path(sys.executable).with_name("muma")
    return subprocess.run(
        [str(muma), *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_unwritable_outputs_give_a_clear_error(unwritable: tuple[Path, str], reliability):
    data_root, how = unwritable
    window = ["--start", "2026-11-01T00:00:00Z", "--end", "2026-11-01T01:00:00Z"]
    commands = [["simulate", *window, "--users", "50", "--items", "50"]]
    if OBD.is_dir():
        metrics = str(data_root / "ope.json")
        commands.append(["policy", "evaluate", "--obd", str(OBD), "--metrics", metrics])
    for command in commands:
        done = _muma(data_root, *command)
        output = done.stdout + done.stderr
        assert done.returncode == 1, output
        assert "Traceback" not in output and "╭" not in output, output
        assert f"error: cannot write {data_root}" in output, output
        assert ("Read-only file system" in output) or ("Not a directory" in output), output
    reliability.record(
        "fault_readonly_output",
        {
            "how": how,
            "commands": [" ".join(c[:2]) for c in commands],
            "clear_errors": len(commands),
        },
    )
