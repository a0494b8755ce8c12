"""`make bench`: run every benchmark and write bench/results.json and docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench import bench_simulator
from bench.common import RESULTS

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_doc(results: dict) -> None:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`) from `bench/results.json`. Medians of repeated",
        "runs; each row gives its conditions. Simulated data only where it says so.",
        "",
        "| benchmark | figure | conditions |",
        "|---|---|---|",
    ]
    sim = results.get("simulator")
    if sim:
        one, longer = sim["one_day"], sim["long_range"]
        cond = f"{sim['machine']}, {sim['date']}"
        lines += [
            f"| simulator, 1 day | {one['events_per_second_median']:,} events/s "
            f"(runs {one['events_per_second_runs']}), {one['events']:,} events, "
            f"peak RSS {one['peak_rss_mb_median']} MB | {one['users']:,} users, "
            f"{one['items']:,} items; {cond} |",
            f"| simulator, {longer['days']} days | "
            f"{longer['events_per_second_median']:,} events/s, "
            f"{longer['events']:,} events, peak RSS {longer['peak_rss_mb_median']} MB "
            f"(x{sim['memory_growth_ratio']} of 1 day) | same world; {cond} |",
        ]
    DOC.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, under 10 minutes")
    args = parser.parse_args()
    bench_simulator.main(quick=args.quick)
    results = json.loads(RESULTS.read_text())
    write_doc(results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
