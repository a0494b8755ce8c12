"""What the Airflow DAGs run: one function per task, each given its data interval explicitly.

Every function takes the interval bounds (aware datetimes, ``[start, end)``) and the
:class:`~muma.settings.Settings`, calls the pipeline's library code, and returns a small
JSON-ready dict (counts, paths, decisions) that Airflow keeps as the task's XCom. None of them
looks at the clock: a rerun of an interval rewrites the same partitions with the same bytes,
because every stage below publishes its outputs with staged swaps.

Relative paths in the settings (``data_root``, ``params_path``) and in params.yaml
(``validate.reports_dir``) are resolved against the project root, the folder holding
params.yaml, so a task writes to the same place whatever the worker's working directory.

The module imports nothing heavy at import time (no pyspark, pandas, feast, great
expectations, evidently or torch): DAG files import it while Airflow parses them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .params import load_params, load_section
from .settings import Settings, load_settings

CURATED_ASSET_URI = "muma://curated/interactions"
"""Asset updated by ``muma_ingest`` once an interval's curated partitions pass validation."""

ONLINE_FEATURES_ASSET_URI = "muma://features/online"
"""Asset updated by ``muma_features`` once an interval is in the online store."""

DAG_TAGS = ("muma",)
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "muma",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
}
"""``default_args`` of every DAG: at least two retries, growing delays."""

START_DATE = datetime(2026, 11, 1, tzinfo=UTC)
"""First data interval of the schedules (the simulated world's default start)."""

HOUR = timedelta(hours=1)
DVC_TARGETS = ("training_set", "train", "evaluate")
"""The DVC stages ``muma_train`` reproduces, in order."""


# --------------------------------------------------------------------------- settings
def project_root(settings: Settings) -> Path:
    """The folder holding params.yaml: DVC's repository root and the base of relative paths."""
    return Path(settings.params_path).resolve().parent


def resolve_settings(settings: Settings) -> Settings:
    """The settings with ``params_path`` and ``data_root`` made absolute.

    ``data_root`` is resolved against the project root, so ``MUMA_DATA_ROOT=data`` means the
    same folder for the CLI run from the repository and for an Airflow worker anywhere.
    """
    params_path = Path(settings.params_path).resolve()
    data_root = Path(settings.data_root)
    if not data_root.is_absolute():
        data_root = params_path.parent / data_root
    return settings.model_copy(update={"params_path": params_path, "data_root": data_root})


def task_settings() -> Settings:
    """Settings read from the environment at the start of a task, paths made absolute."""
    return resolve_settings(load_settings())


def _utc(moment: datetime) -> datetime:
    """An aware datetime in UTC (Airflow hands pendulum datetimes; they compare equal)."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone")
    return datetime.fromtimestamp(moment.timestamp(), tz=UTC)


def _interval(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = _utc(start), _utc(end)
    if end <= start:
        raise ValueError(f"empty interval: {start.isoformat()} .. {end.isoformat()}")
    return start, end


def run_interval(
    params: Mapping[str, Any] | None, data_interval_start: datetime, data_interval_end: datetime
) -> tuple[datetime, datetime]:
    """The interval a run of an hourly DAG works on: its params' range, else its data interval.

    A manual run may name ``start`` and ``end`` (ISO-8601 with a UTC offset) to process a
    longer range in one run, e.g. a simulated day for the demo or a backfill in one Spark
    job; scheduled runs carry no params and work on their data interval.

    Raises:
        ValueError: Only one of ``start`` and ``end`` given, or a range that is empty or not
            on whole hours.
    """
    start = (params or {}).get("start")
    end = (params or {}).get("end")
    if start is None and end is None:
        return _interval(data_interval_start, data_interval_end)
    if start is None or end is None:
        raise ValueError("give both 'start' and 'end' in the run's params, or neither")
    first, last = _interval(datetime.fromisoformat(start), datetime.fromisoformat(end))
    if first.minute or first.second or first.microsecond or (last - first) % HOUR:
        raise ValueError(f"the run's range must be whole hours: {first} .. {last}")
    return first, last


def _hours(start: datetime, end: datetime) -> list[datetime]:
    count = (end - start) // HOUR
    return [start + n * HOUR for n in range(count)]


def _seed(settings: Settings) -> int:
    """MUMA_SEED, then ``base.seed`` of params.yaml (the CLI's rule without its flag)."""
    if settings.seed is not None:
        return settings.seed
    return int(load_params(settings.params_path).get("base", {}).get("seed", 0))


def _curated_root(settings: Settings) -> Path:
    from ingest.config import IngestParams

    params = load_section(settings.params_path, "ingest", IngestParams)
    return Path(settings.data_root) / params.curated_dir


# --------------------------------------------------------------------------- simulate
def simulate_interval(settings: Settings, start: datetime, end: datetime) -> dict:
    """Write the simulated landing-zone logs of ``[start, end)`` (``muma_simulate``).

    Uses the ``simulate.world`` section of params.yaml and the run's seed. The simulator
    starts its world at ``start``: each interval is a self-contained world (its first hour
    carries the item backlog and the social graph), so hourly runs are reproducible one by
    one but interests do not drift from one run to the next, except for an injected shock,
    which applies to every hour after ``shock.at``. Traffic goes straight to the landing
    zone: sending it through the serving API waits for that API (issue 7).
    """
    from simulator.config import SimulateParams
    from simulator.logs import simulate

    start, end = _interval(start, end)
    params = load_section(settings.params_path, "simulate", SimulateParams)
    summary = simulate(params.world, _seed(settings), start, end, settings.landing_root)
    return summary.as_dict() | {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "landing_root": str(settings.landing_root),
    }


# --------------------------------------------------------------------------- ingest
def ingest_interval(settings: Settings, start: datetime, end: datetime) -> dict:
    """Curate every landing partition of ``[start, end)`` with Spark (``muma_ingest``).

    Calls :func:`ingest.run.ingest_range` on the interval, then rebuilds the interactions of
    the hours just before it whose attribution window reaches into it: their late clicks and
    views have only now been curated. Hour-by-hour runs therefore end with the same curated
    tables as one run over the whole range.

    Raises:
        ingest.job.ReconciliationError: A partition did not reconcile; nothing of it is
            published.
    """
    import math

    from ingest.config import IngestParams
    from ingest.interactions import build_interactions_hours
    from ingest.job import curated_partition_dir
    from ingest.run import ingest_range
    from ingest.spark import get_spark
    from muma.contract import Source

    start, end = _interval(start, end)
    params = load_section(settings.params_path, "ingest", IngestParams)
    curated_root = Path(settings.data_root) / params.curated_dir
    spark = get_spark(settings, "muma-ingest")
    result = ingest_range(spark, settings.landing_root, curated_root, start, end, params)
    span = math.ceil(params.attribution_window / HOUR)
    earlier = [start - n * HOUR for n in range(span, 0, -1)]
    rebuilt = build_interactions_hours(
        spark,
        curated_root,
        [h for h in earlier if curated_partition_dir(curated_root, Source.IMPRESSIONS, h).is_dir()],
        params,
    )
    return result.totals() | {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "interactions": sum(r.interactions for r in result.interactions),
        "interactions_rebuilt": [r.hour_start for r in rebuilt],
        "reconciled": all(p.holds for p in result.partitions)
        and all(r.holds for r in (*result.interactions, *rebuilt)),
        "curated_root": str(curated_root),
    }


def validate_interval(settings: Settings, start: datetime, end: datetime) -> dict:
    """Great Expectations on every curated partition of ``[start, end)`` (``muma_ingest``).

    Results and Data Docs go under ``validate.reports_dir`` (relative to the project root).

    Raises:
        validation.run.ValidationFailed: A critical expectation failed; the message names it.
            The summary of every partition is written first.
        FileNotFoundError: The interval has no curated partition at all.
    """
    from ingest.spark import get_spark
    from muma.landing import partition_hours
    from validation.config import TABLES, ValidationParams
    from validation.run import validate_hours

    start, end = _interval(start, end)
    params = load_section(settings.params_path, "validate", ValidationParams)
    if not params.reports_dir.is_absolute():
        params = params.model_copy(
            update={"reports_dir": project_root(settings) / params.reports_dir}
        )
    curated_root = _curated_root(settings)
    present = {
        table: [h for h in partition_hours(curated_root, table) if start <= h < end]
        for table in TABLES
    }
    if not any(present.values()):
        raise FileNotFoundError(f"no curated partitions in {start} .. {end} under {curated_root}")
    spark = get_spark(settings, "muma-validate")
    # One GX batch per table and run of consecutive hours: an hourly run validates its hour,
    # a run over a range (a backfill, the demo's day) one batch per table.
    results = [
        result
        for table, hours in present.items()
        if hours
        for result in validate_hours(spark, curated_root, [table], hours, params, one_batch=True)
    ]
    for result in results:
        if not result.success:
            result.raise_for_critical()
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "partitions": len(results),
        "success": True,
        "warnings": sum(len(r.warnings) for r in results),
        "reports_dir": str(params.reports_dir),
    }


# --------------------------------------------------------------------------- features
def features_interval(
    events: Iterable[Mapping[str, Any]], start: str | None = None, end: str | None = None
) -> tuple[str, str]:
    """The interval a ``muma_features`` run builds, as ISO-8601 strings.

    An asset-triggered run has no data interval of its own: it covers the intervals of the
    curated-asset events it consumed (from the earliest start to the latest end, each event
    carrying ``start``/``end`` in its extra). A manual run names its interval instead.

    Args:
        events: The extras of the triggering asset events.
        start: Manual start (the run's ``start`` param), used when no event carries one.
        end: Manual end.

    Raises:
        ValueError: Neither events nor a manual interval.
    """
    bounds = [(e["start"], e["end"]) for e in events if e.get("start") and e.get("end")]
    if bounds:
        first = min(_utc(datetime.fromisoformat(s)) for s, _ in bounds)
        last = max(_utc(datetime.fromisoformat(e)) for _, e in bounds)
    elif start and end:
        first, last = _interval(datetime.fromisoformat(start), datetime.fromisoformat(end))
    else:
        raise ValueError(
            "no interval: trigger muma_features through the curated asset or give start and "
            "end, e.g. airflow dags test muma_features -c "
            '\'{"start": "2026-11-01T00:00:00+00:00", "end": "2026-11-01T01:00:00+00:00"}\''
        )
    return first.isoformat(), last.isoformat()


def build_features_interval(settings: Settings, start: datetime, end: datetime) -> dict:
    """Offline feature snapshots ``start + grain .. end`` with Spark (``muma_features``)."""
    from feature_repo.config import FeaturesParams
    from feature_repo.pipelines import build_features
    from ingest.spark import get_spark

    start, end = _interval(start, end)
    params = load_section(settings.params_path, "features", FeaturesParams)
    features_root = Path(settings.data_root) / params.features_dir
    spark = get_spark(settings, "muma-features")
    result = build_features(spark, _curated_root(settings), features_root, start, end, params)
    return {
        "start": result.start,
        "end": result.end,
        "snapshots": result.snapshots,
        "rows": {name: table.rows for name, table in result.tables.items()},
        "seconds": result.seconds,
        "features_root": str(features_root),
    }


def apply_feature_store(settings: Settings) -> dict:
    """``feast apply``: the registry and online tables match params.yaml (idempotent)."""
    from feature_repo.config import FeaturesParams
    from feature_repo.store import FeastParams, apply

    features = load_section(settings.params_path, "features", FeaturesParams)
    feast = load_section(settings.params_path, "feast", FeastParams)
    store = apply(settings, features, feast)
    return {
        "views": sorted(view.name for view in store.list_feature_views()),
        "online_store": "redis" if settings.redis_url else "sqlite",
    }


def materialize_interval(settings: Settings, start: datetime, end: datetime) -> dict:
    """Load the snapshots stamped in ``[start, end]`` into the online store (``muma_features``).

    Snapshots are stamped at the end of each grain, so the interval's end is included.
    """
    from feature_repo.config import FeaturesParams
    from feature_repo.store import FeastParams, materialize

    start, end = _interval(start, end)
    features = load_section(settings.params_path, "features", FeaturesParams)
    feast = load_section(settings.params_path, "feast", FeastParams)
    result = materialize(settings, start, end, features, feast)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "views": list(result.views),
        "rows": result.rows,
        "seconds": round(result.seconds, 3),
        "online_store": "redis" if settings.redis_url else "sqlite",
    }


# --------------------------------------------------------------------------- monitor
def monitor_interval(settings: Settings, start: datetime, end: datetime) -> dict:
    """Drift of ``[start, end)`` against the window just before it, and the decision.

    The reference is the previous window of the same length (the previous day for the daily
    DAG). When it has no curated interactions (the first day), the curated hours of the
    interval are split in two and the second half is compared with the first, as
    ``muma monitor`` does with less than two days of data. Reports go to
    ``reports/monitoring/<date>/`` under the project root and into the Evidently workspace.

    Returns:
        The decision (``retrain``, ``reasons``, ``alerts``, ``skipped``), both windows, their
        row counts and the report paths.

    Raises:
        FileNotFoundError: The interval has no curated interactions.
    """
    from monitoring.champion import score_windows
    from monitoring.config import MonitorParams
    from monitoring.inputs import read_interactions, read_items
    from monitoring.report import monitor
    from muma.landing import partition_hours

    start, end = _interval(start, end)
    params = load_section(settings.params_path, "monitor", MonitorParams)
    curated_root = _curated_root(settings)
    hours = [h for h in partition_hours(curated_root, "interactions") if start <= h < end]
    if not hours:
        raise FileNotFoundError(f"no curated interactions in {start} .. {end}")
    reference_window = (start - (end - start), start)
    current_window = (start, end)
    rule = "previous window"
    try:
        reference = read_interactions(curated_root, *reference_window)
    except FileNotFoundError:
        if len(hours) < 2:
            raise FileNotFoundError(
                f"no reference before {start} and one curated hour only: nothing to compare"
            ) from None
        middle = hours[len(hours) // 2]
        reference_window, current_window = (hours[0], middle), (middle, hours[-1] + HOUR)
        reference = read_interactions(curated_root, *reference_window)
        rule = "halves of the interval"
    current = read_interactions(curated_root, *current_window)
    scored = score_windows(settings, reference, current)
    reference, current = scored.reference, scored.current
    root = project_root(settings)
    result = monitor(
        reference,
        current,
        params,
        root / "reports" / "monitoring",
        run_date=start.date(),
        workspace=root / "reports" / "evidently-workspace",
        items=read_items(curated_root, current_window[1]),
        **scored.embeddings,
    )
    decision = result.decision
    return {
        "champion": scored.version or scored.note,
        "retrain": decision.retrain,
        "reasons": list(decision.reasons),
        "alerts": list(decision.alerts),
        "skipped": list(decision.skipped),
        "reference_rule": rule,
        "reference_window": [t.isoformat() for t in reference_window],
        "current_window": [t.isoformat() for t in current_window],
        "reference_rows": len(reference),
        "current_rows": len(current),
        "paths": dict(result.paths),
    }


# --------------------------------------------------------------------------- train
def reproduce_training(
    settings: Settings, targets: tuple[str, ...] = DVC_TARGETS, single_item: bool = True
) -> dict:
    """``dvc repro`` of the training stages in the project root (``muma_train``).

    By default only ``training_set``, ``train`` and ``evaluate`` are reproduced
    (``--single-item``): under Airflow the DAGs own the landing zone, the curated tables and
    the features, and letting DVC walk upstream would rerun its ``simulate`` stage over them
    (its ``data/landing`` output is not persisted). DVC still skips a stage whose
    dependencies and parameters did not change. ``single_item=False`` with
    ``targets=("evaluate",)`` is the plain ``dvc repro evaluate`` of a DVC-only run.

    Raises:
        subprocess.CalledProcessError: DVC failed; its output is in the task log.
    """
    root = project_root(settings)
    command = [sys.executable, "-m", "dvc", "repro", *(["--single-item"] if single_item else [])]
    began = time.perf_counter()
    # The stages call `muma`: the interpreter's own bin folder first, as `make repro` does.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    completed = subprocess.run(
        [*command, *targets],
        cwd=root,
        env=os.environ | {"PATH": path},
        check=False,
        capture_output=True,
        text=True,
    )
    sys.stdout.write(completed.stdout)
    sys.stderr.write(completed.stderr)
    completed.check_returncode()
    return {
        "targets": list(targets),
        "single_item": single_item,
        "cwd": str(root),
        "seconds": round(time.perf_counter() - began, 1),
    }


def promote_champion(settings: Settings) -> dict:
    """Promote the evaluated challenger if its evaluation says so, then tell serving.

    :func:`training.registry.promote` rewrites ``<data_root>/models/champion.json`` only
    when the evaluate stage's decision says the challenger wins; serving reloads when that
    file changes. When ``settings.serving_url`` (``MUMA_SERVING_URL``) is set,
    ``POST /admin/reload`` (with the API token) asks it to reload at once; that call is best
    effort and its outcome is reported.
    """
    from training.registry import promote

    outcome = dict(promote(settings))
    outcome["reload"] = (
        notify_serving(settings) if outcome.get("promoted") else "not needed: no promotion"
    )
    return outcome


def notify_serving(settings: Settings, timeout_seconds: float = 5.0) -> str:
    """Best-effort ``POST <serving_url>/admin/reload``; says what happened, never raises."""
    url = settings.serving_url
    if not url:
        return "skipped: no serving URL (serving reloads when champion.json changes)"
    request = urllib.request.Request(f"{str(url).rstrip('/')}/admin/reload", method="POST")
    if settings.api_token is not None:
        request.add_header("Authorization", f"Bearer {settings.api_token.get_secret_value()}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_seconds) as response:
            return f"reloaded: HTTP {response.status}"
    except OSError as error:  # URLError and HTTPError are OSErrors
        return f"failed (serving reloads on its own when champion.json changes): {error}"


def policy_study(settings: Settings, days: int | None = None) -> dict:
    """The closed-loop policy study, ``muma policy simulate`` (``muma_policy``).

    Runs every policy of ``policy.loop`` against the simulator with daily retraining and
    writes ``metrics/policy.json`` and ``plots/policy/`` in the project root, the outputs of
    DVC's ``policy`` stage. ``days`` overrides ``policy.loop.days`` (the demo's shorter loop).

    Returns:
        Each policy's online and expected CTR and share of the oracle's clicks, the
        off-policy estimate from the loop's logs, and the seconds taken.

    Raises:
        subprocess.CalledProcessError: The study failed; its output is in the task log.
    """
    root = project_root(settings)
    muma = Path(sys.executable).with_name("muma")
    metrics = root / "metrics" / "policy.json"
    command = [str(muma), "policy", "simulate", "--metrics", str(metrics)]
    command += ["--plots", str(root / "plots" / "policy")]
    if days is not None:
        command += ["--days", str(days)]
    # Captured output has no terminal: give rich a width so its tables stay readable in the log.
    env = os.environ | {"COLUMNS": os.environ.get("COLUMNS", "120")}
    completed = subprocess.run(
        command, cwd=root, env=env, check=False, capture_output=True, text=True
    )
    sys.stdout.write(completed.stdout)
    sys.stderr.write(completed.stderr)
    completed.check_returncode()
    report = json.loads(metrics.read_text(encoding="utf-8"))
    return {
        "days": report["params"]["days"],
        "seconds": report["seconds"],
        "policies": {
            name: {
                "ctr": round(entry["ctr"], 4),
                "expected_ctr": round(entry["expected_ctr"], 4),
                "share_of_oracle": entry.get("share_of_oracle"),
            }
            for name, entry in report["policies"].items()
        },
        "ope": report.get("ope"),
        "metrics": str(metrics),
    }


# --------------------------------------------------------------------------- demo
def dags_folder() -> Path:
    """The repository's ``dags/`` folder (next to this package)."""
    return Path(__file__).resolve().parent.parent / "dags"


def airflow_env(settings: Settings, airflow_home: Path) -> dict[str, str]:
    """Environment for an ``airflow`` command on MUMA's DAGs with SQLite in ``airflow_home``.

    The ``MUMA_*`` variables come from ``settings`` alone (absolute paths, so tasks find
    the data whatever their working directory); none is inherited from this process, so an
    unset Redis URL really means Feast's SQLite store.
    """
    settings = resolve_settings(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "MUMA_"))}
    env |= {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder()),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "MUMA_DATA_ROOT": str(settings.data_root),
        "MUMA_PARAMS_PATH": str(settings.params_path),
        "MUMA_SPARK_MASTER": settings.spark_master,
    }
    if settings.redis_url:
        env["MUMA_REDIS_URL"] = settings.redis_url
    if settings.seed is not None:
        env["MUMA_SEED"] = str(settings.seed)
    if settings.api_token is not None:
        env["MUMA_API_TOKEN"] = settings.api_token.get_secret_value()
    return env


def run_demo_via_airflow(
    settings: Settings,
    start: datetime,
    end: datetime,
    airflow_home: Path | None = None,
    plan: list[tuple[str, datetime, dict]] | None = None,
) -> dict:
    """Run DAGs through Airflow with ``dag.test()``, in order, in a fresh AIRFLOW_HOME.

    In ``airflow_home`` (SQLite; a temporary folder unless given): ``airflow db migrate``,
    then one Python process that runs each ``(dag_id, logical date, params)`` of ``plan``
    with ``dag.test()``, so one Spark session serves every run. The default plan is
    :func:`demo_runs`: ``muma_simulate`` and ``muma_ingest`` hour by hour, ``muma_features``
    over the range and ``muma_monitor`` for each day; ``muma demo`` passes
    :func:`demo_day_runs` instead.

    Returns:
        Per-DAG run states and seconds, and the total wall time.

    Raises:
        RuntimeError: A DAG run did not succeed (the runner's output says which).
    """
    start, end = _interval(start, end)
    plan = demo_runs(start, end) if plan is None else plan
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="muma-airflow-") as scratch:
        home = Path(airflow_home) if airflow_home is not None else Path(scratch)
        home.mkdir(parents=True, exist_ok=True)
        env = airflow_env(settings, home)
        airflow = Path(sys.executable).with_name("airflow")
        subprocess.run([str(airflow), "db", "migrate"], env=env, check=True, capture_output=True)
        plan_path, report = home / "demo-plan.json", home / "demo-runs.json"
        plan_path.write_text(
            json.dumps([[dag_id, when.isoformat(), conf] for dag_id, when, conf in plan]),
            encoding="utf-8",
        )
        report.unlink(missing_ok=True)
        runner = subprocess.run(
            [sys.executable, "-m", "muma.orchestration", str(plan_path), str(report)],
            env=env,
            cwd=project_root(settings),
            check=False,
        )
        runs = json.loads(report.read_text()) if report.exists() else []
    if runner.returncode != 0:
        raise RuntimeError(f"an Airflow DAG run failed: {runs}")
    return {"runs": runs, "wall_seconds": round(time.perf_counter() - began, 1)}


def demo_day_runs(
    start: datetime, end: datetime, policy_days: int | None = None
) -> list[tuple[str, datetime, dict]]:
    """The runs of ``muma demo``: the whole loop over ``[start, end)``, one run per DAG.

    ``muma_simulate`` and ``muma_ingest`` take the range as params (one simulated world, one
    Spark ingest and validation of every hour), then ``muma_features`` over the range,
    ``muma_train`` (DVC's training stages and promotion), ``muma_monitor`` of each day the
    range covers (drift against the day before, or the range's halves; with the new champion
    for prediction drift) and ``muma_policy`` (the closed-loop policy study, ``policy_days``
    long when given, else ``policy.loop.days``).
    """
    start, end = _interval(start, end)
    conf = {"start": start.isoformat(), "end": end.isoformat()}
    runs: list[tuple[str, datetime, dict]] = [
        ("muma_simulate", end, conf),
        ("muma_ingest", end, conf),
        ("muma_features", end, conf),
        ("muma_train", end, {}),
    ]
    first_day = start.replace(hour=0)
    days = [first_day + timedelta(days=n) for n in range((end - first_day).days + 1)]
    runs += [("muma_monitor", day + timedelta(days=1), {}) for day in days if day < end]
    runs.append(("muma_policy", end, {} if policy_days is None else {"days": policy_days}))
    return runs


def demo_runs(start: datetime, end: datetime) -> list[tuple[str, datetime, dict]]:
    """``(dag_id, logical date, conf)`` of every run :func:`run_demo_via_airflow` makes.

    Hourly and daily DAGs have data-interval timetables: a manual run at logical date ``T``
    covers the period that ends at ``T``.
    """
    hours = _hours(start, end)
    runs: list[tuple[str, datetime, dict]] = []
    runs += [("muma_simulate", hour + HOUR, {}) for hour in hours]
    runs += [("muma_ingest", hour + HOUR, {}) for hour in hours]
    conf = {"start": start.isoformat(), "end": end.isoformat()}
    runs.append(("muma_features", end, conf))
    first_day = start.replace(hour=0)
    days = sorted({first_day + timedelta(days=n) for n in range((end - first_day).days + 1)})
    runs += [("muma_monitor", day + timedelta(days=1), {}) for day in days if day < end]
    return runs


def _run_in_process(plan_path: Path, report: Path) -> int:
    """Run a plan of ``(dag_id, logical date, params)`` with ``dag.test()`` in this process."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_folder()))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    done: list[dict] = []
    status = 0
    for dag_id, logical_date, conf in plan:
        began = time.perf_counter()
        when = datetime.fromisoformat(logical_date)
        run = bag.get_dag(dag_id).test(logical_date=when, run_conf=conf or None)
        state = str(getattr(run, "state", "unknown"))
        done.append(
            {
                "dag_id": dag_id,
                "logical_date": logical_date,
                "state": state,
                "seconds": round(time.perf_counter() - began, 1),
            }
        )
        report.write_text(json.dumps(done, indent=2), encoding="utf-8")
        if state != "success":
            status = 1
            break
    return status


if __name__ == "__main__":
    # The subprocess of run_demo_via_airflow: PLAN_PATH REPORT_PATH.
    sys.exit(_run_in_process(Path(sys.argv[1]), Path(sys.argv[2])))
