"""Weekly (or drift-triggered) retraining: DVC train and evaluate, then promotion.

`reproduce` runs `dvc repro --single-item training_set train evaluate` in the project root
(the folder of params.yaml): DVC reruns a stage only if its data, code or parameters
changed, and does not walk upstream into the stages whose data the other DAGs own
(simulate, ingest, features). dvc.yaml's paths are fixed (`data/...`), so the DAGs'
`MUMA_DATA_ROOT` must be `data` under the project root for training to see their data.
`promote` makes the challenger the champion only if the evaluate stage's decision says it
wins, by rewriting `<data_root>/models/champion.json`, which the serving API watches; when a
serving URL is configured it is also asked to reload at once (best effort).

`muma_monitor` triggers this DAG when drift calls for retraining.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, task

from muma.orchestration import DAG_TAGS, DEFAULT_ARGS, START_DATE


@dag(
    schedule=CronDataIntervalTimetable("@weekly", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=6),
    tags=[*DAG_TAGS, "training", "dvc"],
    doc_md=__doc__,
)
def muma_train():
    @task(execution_timeout=timedelta(hours=4))
    def reproduce() -> dict:
        """DVC's training stages in the project root."""
        from muma.orchestration import reproduce_training, task_settings

        return reproduce_training(task_settings())

    @task(execution_timeout=timedelta(minutes=10))
    def promote(reproduced: dict) -> dict:
        """Promote the challenger if it wins; signal serving."""
        from muma.orchestration import promote_champion, task_settings

        return promote_champion(task_settings())

    promote(reproduce())


muma_train()
