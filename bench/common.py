"""Shared helpers for benchmarks: machine conditions, child processes, result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

RESULTS = Path(__file__).with_name("results.json")


def conditions() -> dict:
    """Where and when a figure was measured."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    }


def run_child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (its own peak memory) and parse its JSON result.

    The child prints one JSON object as its last line; peak RSS is the child's own
    ``ru_maxrss``, read in the child.
    """
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def med(values: list[float]) -> float:
    return float(median(values))


def save(name: str, result: dict) -> None:
    """Merge one benchmark's result into ``bench/results.json``."""
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    data[name] = result
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
