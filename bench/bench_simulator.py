"""Simulator throughput (events/s) and peak memory for 1 day vs 7 days.

Target (issue 2): at least 200,000 events/s on this 2-core machine, with peak memory flat
as the time range grows. Each run is a fresh process writing to a temporary landing zone.
"""

from __future__ import annotations

import argparse
import json
import tempfile

from bench.common import conditions, med, run_child, save

CHILD = """
import json, resource, sys
from datetime import datetime, timedelta, UTC
from pathlib import Path
from simulator.config import SimulatorConfig
from simulator.logs import simulate
cfg = SimulatorConfig(users={users}, items={items})
start = datetime(2026, 11, 1, tzinfo=UTC)
summary = simulate(cfg, 42, start, start + timedelta(days={days}), Path({out!r}) / "landing")
result = summary.as_dict()
result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(result))
"""


def measure(users: int, items: int, days: int, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="muma-bench-sim-") as out:
            runs.append(run_child(CHILD.format(users=users, items=items, days=days, out=out)))
    return {
        "users": users,
        "items": items,
        "days": days,
        "repeats": repeats,
        "events": runs[0]["events"],
        "events_per_second_median": round(med([r["events_per_second"] for r in runs])),
        "events_per_second_runs": [round(r["events_per_second"]) for r in runs],
        "peak_rss_mb_median": round(med([r["peak_rss_mb"] for r in runs]), 1),
    }


def main(quick: bool = False) -> dict:
    users, items = (20_000, 10_000) if quick else (50_000, 20_000)
    one = measure(users, items, days=1, repeats=3)
    seven = measure(users, items, days=3 if quick else 7, repeats=1)
    result = {
        **conditions(),
        "one_day": one,
        "long_range": seven,
        "memory_growth_ratio": round(seven["peak_rss_mb_median"] / one["peak_rss_mb_median"], 3),
        "target_events_per_second": 200_000,
    }
    save("simulator", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller world, 3 days instead of 7")
    print(json.dumps(main(parser.parse_args().quick), indent=2))
