"""Daily drift monitoring; retraining is triggered when the decision says so.

`monitor` compares the curated interactions of the data interval's day with the day before
(Evidently feature drift, interest drift, CTR drift, propensity health) and writes the HTML
report under `reports/monitoring/<date>/`. When the decision is to retrain, `retrain_needed`
lets `trigger_train` start a `muma_train` run (one per monitor run, however often it is
retried); otherwise the trigger is skipped. A manual run at logical date `T` monitors the
day ending at `T`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import CronDataIntervalTimetable, dag, task

from muma.orchestration import DAG_TAGS, DEFAULT_ARGS, START_DATE


@dag(
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=2),
    tags=[*DAG_TAGS, "monitoring", "evidently"],
    doc_md=__doc__,
)
def muma_monitor():
    @task(execution_timeout=timedelta(hours=1))
    def monitor(data_interval_start=None, data_interval_end=None) -> dict:
        """Drift report and retraining decision for the interval's day."""
        from muma.orchestration import monitor_interval, task_settings

        return monitor_interval(task_settings(), data_interval_start, data_interval_end)

    @task.short_circuit
    def retrain_needed(summary: dict) -> bool:
        """Continue to the trigger only when the decision is to retrain."""
        return bool(summary["retrain"])

    trigger_train = TriggerDagRunOperator(
        task_id="trigger_train",
        trigger_dag_id="muma_train",
        trigger_run_id="drift__{{ run_id }}",
        conf={"reason": "drift", "monitor_run_id": "{{ run_id }}"},
        skip_when_already_exists=True,
        wait_for_completion=False,
    )

    retrain_needed(monitor()) >> trigger_train


muma_monitor()
