"""Spark ingest throughput (events/s), the 10x time ratio and peak memory, with baselines.

Target (issue 3): at least 250,000 events/s at 10M simulated events on ``local[2]``, 10x the
events costing at most 12x the time, peak memory (driver, Spark JVM and Python workers
together) at or under 6 GB at 10M. Baselines measured in the same run: a straightforward
Spark ingest (``spark.read.json`` with a schema, ``dropDuplicates``, partitioned write) and a
straightforward pandas ingest (``check_line`` per line, ``drop_duplicates``, partitioned
Parquet) of the 1M landing zone.

Landing zones are simulated once into ``bench/out/ingest/`` and reused. Every timed run is a
fresh process; its peak memory is the largest sampled RSS sum of its process tree, and its CPU
seconds (user + system of that tree) are reported too: on a shared machine events per CPU
second is the figure that does not depend on the other tenants' load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import conditions, med, run_child, save

OUT = Path(__file__).resolve().parent / "out" / "ingest"
START = datetime(2026, 11, 1, tzinfo=UTC)
USERS, ITEMS = 31_000, 15_000
SIZES = {"1M": 24, "10M": 240}
"""Simulated hours giving about 1M and 10M events with 31,000 users (one day, ten days)."""
DRIVER_MEMORY = "3g"

CHILD = """
from bench.bench_ingest import child
child({kind!r}, {landing!r}, {hours})
"""


def _jvm_spawn_before_exec(process) -> bool:
    """Whether ``process`` is a JVM's child that has not exec'd its command yet.

    The JVM starts commands (Hadoop's local file system runs ``chmod`` for every file and
    directory it creates) with ``posix_spawn``, whose child shares the JVM's address space
    until it execs: for that moment it shows the JVM's command line and the JVM's whole RSS.
    Adding it would count the JVM twice (seen as 7 GB peaks of a 3.5 GB JVM at 10M events).
    """
    parent = process.parent()
    return parent is not None and parent.name() == "java" and process.cmdline() == parent.cmdline()


class PeakRss:
    """Sample the RSS of this process and all its descendants (JVM, Python workers).

    A JVM's child caught between ``posix_spawn`` and ``exec`` is skipped: it shares the
    JVM's memory (:func:`_jvm_spawn_before_exec`).
    """

    def __init__(self, interval: float = 0.2):
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list:
        return [self._process, *self._process.children(recursive=True)]

    def _sample(self) -> int:
        import psutil

        total = 0
        for process in self._tree():
            try:
                if _jvm_spawn_before_exec(process):
                    continue
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the live process tree (a lower bound under load)."""
        import psutil

        total = 0.0
        for process in self._tree():
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._sample())


def landing_zone(label: str) -> tuple[Path, int, int]:
    """Simulate (once) and return the landing root of ``label``, its hours and events."""
    from simulator.config import SimulatorConfig
    from simulator.logs import simulate

    root = OUT / label
    marker = root / "summary.json"
    hours = SIZES[label]
    if not marker.exists():
        shutil.rmtree(root, ignore_errors=True)
        config = SimulatorConfig(users=USERS, items=ITEMS)
        summary = simulate(
            config, 42, START, START + timedelta(hours=hours), root / "landing", root / "sidecar"
        )
        marker.write_text(json.dumps(summary.as_dict()))
    return root / "landing", hours, json.loads(marker.read_text())["events"]


def _spark():
    from ingest.spark import get_spark

    spark = get_spark("local[2]", "muma-bench-ingest", driver_memory=DRIVER_MEMORY)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _muma_ingest(landing: Path, curated: Path, hours: int, interactions: bool = False) -> dict:
    from ingest.config import IngestParams
    from ingest.run import ingest_range

    spark = _spark()
    end = START + timedelta(hours=hours)
    began = time.perf_counter()
    result = ingest_range(
        spark, landing, curated, START, end, IngestParams(), interactions=interactions
    )
    seconds = time.perf_counter() - began
    figures = {"records": result.records_read, "seconds": seconds, "curated": result.curated}
    if interactions:
        figures |= {
            "interactions": sum(r.interactions for r in result.interactions),
            "interactions_hours": len(result.interactions),
            "interactions_seconds": result.interactions_seconds,
            "ingest_seconds": result.ingest_seconds,
        }
    return figures


def _muma_with_interactions(landing: Path, curated: Path, hours: int) -> dict:
    """``muma ingest`` as run: every source, then the interactions table of every hour."""
    return _muma_ingest(landing, curated, hours, interactions=True)


def _spark_reference(landing: Path, curated: Path, hours: int) -> dict:
    """The straightforward Spark ingest: typed JSON read, dropDuplicates, partitioned write."""
    from ingest.schemas import curated_schema, has_domain
    from muma.contract import CONTRACT_VERSION, Source

    spark = _spark()
    began = time.perf_counter()
    records = 0
    for source in Source:
        frame = spark.read.schema(curated_schema(source)).json(
            str(landing / f"v{CONTRACT_VERSION}" / str(source))
        )
        partition_by = ["date", "hour", *(["domain"] if has_domain(source) else [])]
        frame.dropDuplicates(["event_id"]).write.mode("overwrite").partitionBy(
            *partition_by
        ).parquet(str(curated / str(source)))
        records += spark.read.text(str(landing / f"v{CONTRACT_VERSION}" / str(source))).count()
    seconds = time.perf_counter() - began
    return {"records": records, "seconds": seconds}


def _pandas_ingest(landing: Path, curated: Path, hours: int) -> dict:
    """The straightforward pandas ingest: check_line per line, drop_duplicates, to_parquet."""
    import gzip

    import pandas as pd

    from muma.contract import CONTRACT_VERSION, Source, check_line

    began = time.perf_counter()
    records = 0
    for source in Source:
        rows = []
        for path in sorted((landing / f"v{CONTRACT_VERSION}" / str(source)).rglob("*.jsonl.gz")):
            date, hour = path.parent.parent.name[5:], path.parent.name[5:]
            with gzip.open(path, "rb") as handle:
                for line in handle:
                    if not line.strip():
                        continue
                    records += 1
                    record, violation = check_line(source, line)
                    if violation is None:
                        rows.append({**record, "date": date, "hour": hour})
        if not rows:
            continue
        frame = pd.DataFrame(rows).drop_duplicates("event_id")
        for column in ("ts", "publish_ts"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        frame.to_parquet(curated / str(source), partition_cols=["date", "hour"], index=False)
    seconds = time.perf_counter() - began
    return {"records": records, "seconds": seconds}


KINDS = {
    "muma": _muma_ingest,
    "muma_interactions": _muma_with_interactions,
    "spark_reference": _spark_reference,
    "pandas": _pandas_ingest,
}


def child(kind: str, landing: str, hours: int) -> None:
    """Run one timed ingest in this fresh process; print its figures as JSON."""
    curated = OUT / f"curated-{uuid.uuid4().hex}"
    try:
        with PeakRss() as peak:
            cpu_before = peak.cpu_seconds()
            figures = KINDS[kind](Path(landing), curated, hours)
            figures["cpu_seconds"] = peak.cpu_seconds() - cpu_before
        figures["peak_rss_mb"] = round(peak.peak_bytes / 2**20, 1)
        figures["events_per_cpu_second"] = figures["records"] / figures["cpu_seconds"]
        figures["events_per_second"] = figures["records"] / figures["seconds"]
        figures["load_average_1m"] = os.getloadavg()[0]
        print(json.dumps(figures))
    finally:
        shutil.rmtree(curated, ignore_errors=True)


def measure(kind: str, label: str, repeats: int) -> dict:
    landing, hours, events = landing_zone(label)
    runs = [
        run_child(CHILD.format(kind=kind, landing=str(landing), hours=hours))
        for _ in range(repeats)
    ]
    extra = {}
    if "interactions_seconds" in runs[0]:
        extra = {
            "interactions": runs[0]["interactions"],
            "interactions_hours": runs[0]["interactions_hours"],
            "interactions_seconds_median": round(med([r["interactions_seconds"] for r in runs]), 2),
            "ingest_seconds_median": round(med([r["ingest_seconds"] for r in runs]), 2),
        }
    return extra | {
        "size": label,
        "hours": hours,
        "events_simulated": events,
        "records": runs[0]["records"],
        "repeats": repeats,
        "seconds_median": round(med([r["seconds"] for r in runs]), 2),
        "events_per_second_median": round(med([r["events_per_second"] for r in runs])),
        "events_per_second_runs": [round(r["events_per_second"]) for r in runs],
        "peak_rss_mb_max": max(r["peak_rss_mb"] for r in runs),
        "cpu_seconds_median": round(med([r["cpu_seconds"] for r in runs]), 1),
        "events_per_cpu_second_median": round(med([r["events_per_cpu_second"] for r in runs])),
        "load_average_1m_runs": [round(r["load_average_1m"], 1) for r in runs],
    }


def main(quick: bool = False) -> dict:
    big = None if quick else measure("muma", "10M", repeats=2)
    small = measure("muma", "1M", repeats=1 if quick else 3)
    with_interactions = {
        label: measure("muma_interactions", label, repeats=1)
        for label in (["1M"] if quick else ["1M", "10M"])
    }
    reference = measure("spark_reference", "1M", repeats=1)
    pandas = measure("pandas", "1M", repeats=1)
    result = {
        **conditions(),
        "quick": quick,
        "users": USERS,
        "items": ITEMS,
        "driver_memory": DRIVER_MEMORY,
        "muma_1M": small,
        "spark_reference_1M": reference,
        "pandas_1M": pandas,
        **{f"muma_interactions_{label}": row for label, row in with_interactions.items()},
        "target_events_per_second": 250_000,
        "target_time_ratio_10x": 12,
        "target_peak_rss_mb": 6 * 1024,
    }
    if big is not None:
        result["muma_10M"] = big
        result["time_ratio_10x"] = round(big["seconds_median"] / small["seconds_median"], 2)
        result["spark_reference_10M"] = measure("spark_reference", "10M", repeats=1)
    save("ingest", result)
    print_table(result)
    return result


def table_rows(result: dict) -> list[tuple[str, dict]]:
    names = [
        ("muma_1M", "muma ingest_range, 1M"),
        ("muma_10M", "muma ingest_range, 10M"),
        ("spark_reference_1M", "straightforward Spark, 1M"),
        ("spark_reference_10M", "straightforward Spark, 10M"),
        ("pandas_1M", "straightforward pandas, 1M"),
    ]
    return [(title, result[key]) for key, title in names if key in result]


def print_table(result: dict) -> None:
    print(
        f"{'ingest':32} {'records':>10} {'seconds':>9} {'events/s':>10} {'CPU s':>8} "
        f"{'events/CPU s':>12} {'peak MB':>9}"
    )
    for title, row in table_rows(result):
        print(
            f"{title:32} {row['records']:>10,} {row['seconds_median']:>9.1f} "
            f"{row['events_per_second_median']:>10,} {row['cpu_seconds_median']:>8.1f} "
            f"{row['events_per_cpu_second_median']:>12,} {row['peak_rss_mb_max']:>9,.0f}"
        )
    for label in ("1M", "10M"):
        row = result.get(f"muma_interactions_{label}")
        if row is not None:
            print(
                f"muma ingest with interactions, {label}: {row['seconds_median']:.1f} s "
                f"({row['ingest_seconds_median']:.1f} s ingest + "
                f"{row['interactions_seconds_median']:.1f} s interactions of "
                f"{row['interactions_hours']} hours, {row['interactions']:,} rows)"
            )
    if "time_ratio_10x" in result:
        print(f"10x events cost {result['time_ratio_10x']}x the time (target <= 12)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1M only, one run each")
    print(json.dumps(main(parser.parse_args().quick), indent=2))
