"""Weekly policy study: the closed loop of every policy against the simulator.

`study` runs `muma policy simulate` (DVC's `policy` stage) in the project root: random, popularity,
greedy, bandit (with logged propensities, importance-weighted retraining), its unweighted
twin and the oracle serve the simulated users for `policy.loop.days` days with daily
retraining and an interest shock, and the stage writes online CTR per policy, regret against
the oracle and the off-policy estimate of the greedy policy from the bandit's logs to
`metrics/policy.json` (plots under `plots/policy/`). A manual run may shorten the loop with
the `days` param (the demo runs four days: the shock comes on day 3). Its result is what the
exploration settings of serving are chosen by.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronDataIntervalTimetable, Param, dag, task

from muma.orchestration import DAG_TAGS, DEFAULT_ARGS, START_DATE


@dag(
    schedule=CronDataIntervalTimetable("@weekly", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    dagrun_timeout=timedelta(hours=4),
    params={
        "days": Param(None, type=["null", "integer"], minimum=1, description="Loop days."),
    },
    tags=[*DAG_TAGS, "policy", "dvc"],
    doc_md=__doc__,
)
def muma_policy():
    @task(execution_timeout=timedelta(hours=3))
    def study(params=None) -> dict:
        """The policy study in the project root; online CTR per policy."""
        from muma.orchestration import policy_study, task_settings

        return policy_study(task_settings(), days=(params or {}).get("days"))

    study()


muma_policy()
