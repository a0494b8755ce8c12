"""Sustained load: /recommend and /events at 32 concurrent clients on loopback against a real
``muma serve`` process: zero errors, the server alive, memory stable.

``MUMA_RELIABILITY_LOAD_SECONDS`` sets the length: 20 s by default (``make test``), 600 s in
``make reliability``. Latency is recorded beside the serving targets, not asserted: on this
2-core machine 24 closed-loop recommenders queue (docs/benchmarks.md).
"""

from __future__ import annotations

import os

import pytest

from bench.reliability_load import run_load

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

SECONDS = float(os.environ.get("MUMA_RELIABILITY_LOAD_SECONDS", "20"))
USERS = int(os.environ.get("MUMA_RELIABILITY_LOAD_USERS", "2000"))
ITEMS = int(os.environ.get("MUMA_RELIABILITY_LOAD_ITEMS", "1500"))
MEMORY_GROWTH_MB = 100.0
"""Allowed resident-memory growth from the first quarter of the run (clients ramped up) to
its end; a leak of a few kB per request would exceed it within a 10-minute run."""


def test_32_clients_on_recommend_and_events_without_errors(reliability):
    result = run_load(SECONDS, clients=32, users=USERS, items=ITEMS)
    reliability.record("load", {k: v for k, v in result.items() if k != "server_log_tail"})
    assert result["server_alive"], result["server_log_tail"]
    assert result["recommend"]["requests"] > 0 and result["events"]["requests"] > 0
    assert result["errors"] == 0, (result["recommend"], result["events"])
    growth = result["rss_mb_end"] - result["rss_mb_settled"]
    assert growth < MEMORY_GROWTH_MB, result["rss_mb_samples"]
