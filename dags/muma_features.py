"""Features on fresh curated data: Spark build, Feast registry, incremental materialisation.

Scheduled on the curated asset of `muma_ingest`: a run covers the intervals of the asset
events it consumed (their extras carry `start` and `end`). `build` writes the offline
snapshots of that interval with Spark, `apply` keeps the Feast registry in step with
params.yaml, and `materialize` loads exactly the interval's snapshots into the online store
(Redis when `MUMA_REDIS_URL` is set, else Feast's SQLite store).

A manual run names its interval: `airflow dags test muma_features -c
'{"start": "2026-11-01T00:00:00+00:00", "end": "2026-11-01T03:00:00+00:00"}'`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import Asset, Param, dag, task

from muma.orchestration import (
    CURATED_ASSET_URI,
    DAG_TAGS,
    DEFAULT_ARGS,
    ONLINE_FEATURES_ASSET_URI,
    START_DATE,
)

CURATED = Asset(name="muma_curated", uri=CURATED_ASSET_URI)
ONLINE_FEATURES = Asset(name="muma_online_features", uri=ONLINE_FEATURES_ASSET_URI)


@dag(
    schedule=[CURATED],
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=2),
    params={
        "start": Param(None, type=["null", "string"], description="Manual run: ISO start."),
        "end": Param(None, type=["null", "string"], description="Manual run: ISO end."),
    },
    tags=[*DAG_TAGS, "features", "spark", "feast"],
    doc_md=__doc__,
)
def muma_features():
    @task
    def interval(triggering_asset_events=None, params=None) -> dict:
        """The interval to build: the consumed asset events', or the run's params."""
        from muma.orchestration import features_interval

        extras = [
            dict(event.extra or {})
            for events in (triggering_asset_events or {}).values()
            for event in events
        ]
        start, end = features_interval(extras, params.get("start"), params.get("end"))
        return {"start": start, "end": end}

    @task(execution_timeout=timedelta(hours=1))
    def build(window: dict) -> dict:
        """Offline feature snapshots of the interval (Spark)."""
        from datetime import datetime

        from muma.orchestration import build_features_interval, task_settings

        bounds = (datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"]))
        return build_features_interval(task_settings(), *bounds)

    @task(execution_timeout=timedelta(minutes=20))
    def apply() -> dict:
        """Feast registry and online tables (idempotent)."""
        from muma.orchestration import apply_feature_store, task_settings

        return apply_feature_store(task_settings())

    @task(outlets=[ONLINE_FEATURES], execution_timeout=timedelta(hours=1))
    def materialize(window: dict, outlet_events=None) -> dict:
        """Load the interval's snapshots into the online store."""
        from datetime import datetime

        from muma.orchestration import materialize_interval, task_settings

        bounds = (datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"]))
        result = materialize_interval(task_settings(), *bounds)
        outlet_events[ONLINE_FEATURES].extra = {"start": result["start"], "end": result["end"]}
        return result

    window = interval()
    built = build(window)
    registered = apply()
    loaded = materialize(window)
    [built, registered] >> loaded


muma_features()
