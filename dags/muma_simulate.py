"""Simulated traffic for the demo: one hour of news, video and ad logs per run.

`muma_simulate` writes the landing-zone partitions of its data interval with the simulated
media world of params.yaml (`simulate.world`, seed from `MUMA_SEED` or `base.seed`), so the
hourly `muma_ingest` has data to curate. The same interval always gives the same bytes.

Traffic goes straight to the landing zone, not through the serving API. A manual run at
logical date `T` simulates the hour ending at `T`; a manual run with `start` and `end` params
simulates that whole range as one world (the demo's day: `muma demo`).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from muma.orchestration import DAG_TAGS, DEFAULT_ARGS, START_DATE


@dag(
    schedule=CronDataIntervalTimetable("@hourly", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(minutes=30),
    params={
        "start": Param(None, type=["null", "string"], description="Manual range: ISO start."),
        "end": Param(None, type=["null", "string"], description="Manual range: ISO end."),
    },
    tags=[*DAG_TAGS, "simulator", "demo"],
    doc_md=__doc__,
)
def muma_simulate():
    @task(execution_timeout=timedelta(minutes=20))
    def simulate(data_interval_start=None, data_interval_end=None, params=None) -> dict:
        """Write the interval's (or the params' range's) simulated landing partitions."""
        from muma.orchestration import run_interval, simulate_interval, task_settings

        bounds = run_interval(params, data_interval_start, data_interval_end)
        return simulate_interval(task_settings(), *bounds)

    simulate()


muma_simulate()
