"""Hourly ingest: curate the interval's landing partitions, validate them, publish the asset.

`ingest` runs the Spark ingest of every landing source of the data interval (quarantine
with reasons, dedup across runs, reconciliation, staged swaps) and rebuilds the interactions
of the hour before, whose late clicks have just landed. `validate` runs the Great
Expectations suites on the interval's curated partitions and fails on a critical
expectation; only then is the curated asset updated, with the interval in its extra, which
triggers `muma_features`.

Reruns and backfills rewrite the same partitions with the same bytes. Runs go one at a time
and in order (`max_active_runs=1`): an hour's dedup and attribution read the hours before.
A manual run at logical date `T` ingests the hour ending at `T`; a manual run with `start`
and `end` params ingests that range in one Spark job (a backfill in one run; the demo's day).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task

from muma.orchestration import CURATED_ASSET_URI, DAG_TAGS, DEFAULT_ARGS, START_DATE

CURATED = Asset(name="muma_curated", uri=CURATED_ASSET_URI)


@dag(
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=1),
    params={
        "start": Param(None, type=["null", "string"], description="Manual range: ISO start."),
        "end": Param(None, type=["null", "string"], description="Manual range: ISO end."),
    },
    tags=[*DAG_TAGS, "ingest", "spark", "validation"],
    doc_md=__doc__,
)
def muma_ingest():
    @task(execution_timeout=timedelta(minutes=40))
    def ingest(data_interval_start=None, data_interval_end=None, params=None) -> dict:
        """Spark ingest of the interval (and interactions of the hour before)."""
        from muma.orchestration import ingest_interval, run_interval, task_settings

        bounds = run_interval(params, data_interval_start, data_interval_end)
        return ingest_interval(task_settings(), *bounds)

    @task(outlets=[CURATED], execution_timeout=timedelta(minutes=40))
    def validate(
        ingested: dict,
        data_interval_start=None,
        data_interval_end=None,
        params=None,
        outlet_events=None,
    ) -> dict:
        """Great Expectations on the interval's curated partitions; fails on critical ones."""
        from muma.orchestration import run_interval, task_settings, validate_interval

        bounds = run_interval(params, data_interval_start, data_interval_end)
        result = validate_interval(task_settings(), *bounds)
        outlet_events[CURATED].extra = {"start": result["start"], "end": result["end"]}
        return result

    validate(ingest())


muma_ingest()
