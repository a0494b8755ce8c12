"""The ``muma`` command line: thin wrappers that read settings and params, call one library
function, and report what was written where."""

from __future__ import annotations

import errno
import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .params import ParamsError, load_params, load_section
from .settings import Settings, SettingsError, load_settings

_UNWRITABLE = {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}


class _Muma(typer.Typer):
    """The app; an output that cannot be written ends in one clear line, not a traceback."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except OSError as error:
            if error.errno not in _UNWRITABLE:
                raise
            where = f" {error.filename}" if error.filename else ""
            Console(stderr=True).print(
                f"[red]error:[/red] cannot write{where}: {error.strerror} (make the output "
                "location writable and run again)"
            )
            sys.exit(1)


app = _Muma(
    name="muma",
    help="MUMA: real-time media recommendation pipeline (news, video, ads).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
console = Console()


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None


def _seed(settings: Settings, explicit: int | None) -> int:
    """CLI flag, then MUMA_SEED, then ``base.seed`` of params.yaml."""
    if explicit is not None:
        return explicit
    if settings.seed is not None:
        return settings.seed
    return int(load_params(settings.params_path).get("base", {}).get("seed", 0))


def _parse_time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 time: {value!r}", param_hint=option) from None
    if parsed.tzinfo is None:
        raise typer.BadParameter("give a UTC offset, e.g. 2026-11-01T00:00:00Z", param_hint=option)
    return parsed


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@app.command()
def simulate(
    start: Annotated[
        str | None, typer.Option(help="First hour, ISO-8601 with offset (default: params.yaml).")
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(help="End, exclusive, ISO-8601 with offset (default: params.yaml)."),
    ] = None,
    users: Annotated[
        int | None, typer.Option(help="Number of users (default: params.yaml).", min=2)
    ] = None,
    items: Annotated[
        int | None, typer.Option(help="Number of items (default: params.yaml).", min=3)
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Random seed (default: MUMA_SEED, then params.yaml base.seed)."),
    ] = None,
    bad_share: Annotated[
        float | None,
        typer.Option(
            help="Share of injected bad records per partition, 0 to 0.5.", min=0.0, max=0.5
        ),
    ] = None,
    shock_at: Annotated[
        str | None, typer.Option(help="Inject an interest drift at this time (ISO-8601).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Landing root (default: <MUMA_DATA_ROOT>/landing).")
    ] = None,
) -> None:
    """Write simulated landing-zone logs for a time range, one hour partition at a time."""
    from simulator.config import InterestShock, SimulateParams
    from simulator.logs import simulate as run_simulation

    settings = _settings()
    try:
        params = load_section(settings.params_path, "simulate", SimulateParams)
    except ParamsError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    world = params.world
    updates: dict = {}
    if users is not None:
        updates["users"] = users
    if items is not None:
        updates["items"] = items
    if bad_share is not None:
        updates["bad_records"] = world.bad_records.model_copy(update={"share": bad_share})
    if shock_at is not None:
        updates["shock"] = InterestShock(at=_parse_time(shock_at, "--shock-at"))
    world = world.model_copy(update=updates)
    world = type(world).model_validate(world.model_dump())
    start_at = _parse_time(start, "--start") or params.start
    end_at = _parse_time(end, "--end") or params.end
    if end_at <= start_at:
        raise typer.BadParameter("--end must be after --start", param_hint="--end")
    landing = out or settings.landing_root
    run_seed = _seed(settings, seed)
    console.print(
        f"simulating {start_at:%Y-%m-%d %H:%M} to {end_at:%Y-%m-%d %H:%M} UTC: "
        f"{world.users} users, {world.items} items, seed {run_seed}"
    )
    summary = run_simulation(world, run_seed, start_at, end_at, landing)
    result = summary.as_dict() | {
        "landing_root": str(landing),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    table = Table("source", "events", title="landing zone written")
    for source, count in result["events_per_source"].items():
        table.add_row(source, f"{count:,}")
    console.print(table)
    console.print(
        f"{result['events']:,} events in {result['seconds']} s "
        f"({result['events_per_second']:,} events/s); landing zone: {landing}"
    )
    if result["bad_records_injected"]:
        console.print(f"bad records injected: {result['bad_records_injected']}")
    typer.echo(json.dumps(result))


OBD_SAMPLE = Path("../shared/data/open_bandit_dataset_sample")


DEMO_POLICY_DAYS = 4
"""Days of the demo's policy loop (the interest shock of params.yaml comes on day 3)."""


@app.command()
def demo(
    reports: Annotated[Path, typer.Option(help="Where the demo summary is written.")] = Path(
        "reports/demo"
    ),
    via: Annotated[
        str,
        typer.Option(
            help="airflow: the DAGs run the loop with `dag.test()` in a SQLite AIRFLOW_HOME "
            "under the reports folder; direct: the same stages called in turn, no Airflow.",
            case_sensitive=False,
        ),
    ] = "airflow",
    policy_days: Annotated[
        int,
        typer.Option(help="Days of the closed-loop policy study (params.yaml: a week).", min=1),
    ] = DEMO_POLICY_DAYS,
) -> None:
    """Run the pipeline end to end on embedded defaults and say where the outputs are.

    A simulated day (params.yaml `simulate`) of news, video and ad traffic -> Spark ingest
    with quarantine and reconciliation -> Great Expectations -> Spark features -> Feast
    registry and online store -> training set, ranker training, evaluation, promotion (DVC's
    stages under Airflow) -> Evidently drift monitoring with the champion -> closed-loop policy
    study -> off-policy evaluation on the Open Bandit sample. By default the Airflow DAGs run
    it (`muma_simulate`, `muma_ingest`, `muma_features`, `muma_train`, `muma_monitor`,
    `muma_policy`); `--via direct` calls the same stages without Airflow.
    """
    if via.lower() not in ("airflow", "direct"):
        raise typer.BadParameter("airflow or direct", param_hint="--via")
    settings = _settings()
    reports.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    if via.lower() == "airflow":
        timings = _demo_via_airflow(settings, reports, policy_days)
    else:
        timings = _demo_direct(settings, policy_days)
    if OBD_SAMPLE.is_dir():
        console.rule("demo: off-policy evaluation on the Open Bandit sample")
        step = time.perf_counter()
        policy_evaluate(obd=OBD_SAMPLE)
        timings["ope (Open Bandit sample)"] = round(time.perf_counter() - step, 1)
    monitoring = _demo_monitoring(Path("reports/monitoring"))
    outputs = {
        "landing zone": f"{settings.landing_root}/v1/",
        "simulator ground truth": f"{settings.data_root}/simulator/",
        "curated tables, quarantine, reconciliations": f"{settings.data_root}/curated/",
        "validation reports and Data Docs": "reports/validation/ (data_docs/index.html)",
        "offline features": f"{settings.data_root}/features/",
        "Feast registry and online store": f"{settings.data_root}/feast/"
        + (" (online: Redis)" if settings.redis_url else " (online: SQLite)"),
        "training set (train/valid/test by time)": f"{settings.data_root}/training/",
        "ranker bundle, registry, champion": f"{settings.data_root}/models/",
        "training and evaluation metrics": "metrics/train.json, metrics/evaluate.json, plots/",
        "drift report (HTML) and decision": monitoring.get("html") or "reports/monitoring/",
        "policy study (online CTR per policy)": "metrics/policy.json, plots/policy/",
        "off-policy evaluation (Open Bandit)": "metrics/ope_obd.json",
    }
    if via.lower() == "airflow":
        outputs["Airflow metadata (SQLite) and run list"] = f"{reports / 'airflow'}/"
    summary = {
        "seed": _seed(settings, None),
        "via": via.lower(),
        "stage_seconds": timings,
        "wall_seconds": round(time.perf_counter() - began, 1),
        "outputs": outputs,
        "test_auc": _demo_auc(Path("metrics/evaluate.json")),
        "online_ctr": _demo_policies(Path("metrics/policy.json")),
        "drift": monitoring,
    }
    (reports / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _print_demo_summary(summary, reports)


def _demo_via_airflow(settings: Settings, reports: Path, policy_days: int) -> dict[str, float]:
    """The demo's day through the DAGs (``dag.test()``), in a fresh AIRFLOW_HOME."""
    import shutil

    from simulator.config import SimulateParams

    from .orchestration import demo_day_runs, project_root, resolve_settings, run_demo_via_airflow

    resolved = resolve_settings(settings)
    expected = project_root(resolved) / "data"
    if resolved.data_root != expected:
        console.print(
            f"[red]error:[/red] the training DAG runs DVC's stages, whose paths are under "
            f"{expected}, but MUMA_DATA_ROOT is {resolved.data_root}: unset it, or run "
            "`muma demo --via direct`"
        )
        raise typer.Exit(2)
    params = _load(settings, "simulate", SimulateParams)
    home = (reports / "airflow").resolve()
    shutil.rmtree(home, ignore_errors=True)
    plan = demo_day_runs(params.start, params.end, policy_days=policy_days)
    console.rule(
        f"demo through Airflow: {params.start:%Y-%m-%d %H:%M} .. {params.end:%Y-%m-%d %H:%M} UTC"
    )
    for dag_id, logical_date, conf in plan:
        console.print(
            f"  {dag_id} at {logical_date.isoformat()} {json.dumps(conf) if conf else ''}"
        )
    try:
        result = run_demo_via_airflow(resolved, params.start, params.end, home, plan=plan)
    except RuntimeError as error:
        console.print(f"[red]error:[/red] {error}; task logs above, metadata in {home}")
        raise typer.Exit(1) from None
    table = Table("DAG run", "logical date", "state", "seconds", title="Airflow runs")
    for run in result["runs"]:
        table.add_row(run["dag_id"], run["logical_date"], run["state"], f"{run['seconds']:.1f}")
    console.print(table)
    return {run["dag_id"]: run["seconds"] for run in result["runs"]}


def _demo_direct(settings: Settings, policy_days: int) -> dict[str, float]:
    """The demo's stages called in turn, without Airflow."""
    timings: dict[str, float] = {}

    def run(name: str, command, **arguments) -> None:
        console.rule(f"demo: {name}")
        began = time.perf_counter()
        command(**arguments)
        timings[name] = round(time.perf_counter() - began, 1)

    run("simulate", simulate)
    run("ingest", ingest)
    # One batch per table over the day, as the ingest DAG validates a range it ingested.
    run("validate", validate, one_batch=True)
    run("features", features_build)
    run("feast apply", features_apply)
    run("materialize", features_materialize)
    run("training set", training_set_command)
    run("train", train, progress=False)
    run("evaluate", evaluate_command)
    run("promote", promote)
    run("monitor", monitor)
    run("policy", policy_simulate, days=policy_days)
    return timings


def _demo_monitoring(root: Path) -> dict:
    """The latest drift decision under ``reports/monitoring/<date>/``, with its report paths."""
    runs = sorted(root.glob("*/summary.json")) if root.is_dir() else []
    if not runs:
        return {}
    summary = json.loads(runs[-1].read_text(encoding="utf-8"))
    return {
        "date": summary.get("date"),
        "retrain": summary.get("retrain"),
        "reasons": summary.get("reasons", []),
        "alerts": summary.get("alerts", []),
        "html": summary.get("paths", {}).get("html"),
        "summary": str(runs[-1]),
    }


def _demo_policies(path: Path) -> dict[str, dict]:
    """Online and expected CTR and share of the oracle per policy from the policy study."""
    if not path.is_file():
        return {}
    report = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: {
            "ctr": entry["ctr"],
            "expected_ctr": entry["expected_ctr"],
            "share_of_oracle": entry.get("share_of_oracle"),
        }
        for name, entry in report["policies"].items()
    }


def _print_demo_summary(summary: dict, reports: Path) -> None:
    console.rule(f"MUMA demo: done in {summary['wall_seconds']} s ({summary['via']})")
    view = Table("output", "where", title="outputs")
    for name, where in summary["outputs"].items():
        view.add_row(name, where)
    console.print(view)
    auc_view = Table("domain", "test AUC (challenger)")
    for domain, value in summary["test_auc"].items():
        auc_view.add_row(domain, _fmt_metric(value))
    console.print(auc_view)
    ctr_view = Table(
        "policy", "online CTR", "expected CTR", "share of oracle", title="closed-loop policy study"
    )
    for name, entry in summary["online_ctr"].items():
        ctr_view.add_row(
            name,
            f"{entry['ctr']:.4f}",
            f"{entry['expected_ctr']:.4f}",
            _fmt_metric(entry["share_of_oracle"]),
        )
    console.print(ctr_view)
    drift = summary["drift"]
    if drift:
        verdict = "retrain" if drift["retrain"] else "no retraining"
        console.print(f"drift decision for {drift['date']}: {verdict}")
        for reason in drift["reasons"]:
            console.print(f"  reason: {reason}")
        console.print(f"drift report: {drift['html']}")
    console.print(f"Summary: {reports / 'summary.json'}")


def _demo_auc(path: Path) -> dict[str, float | None]:
    """Overall and per-domain test AUC of the challenger from ``muma evaluate``'s metrics."""
    if not path.is_file():
        return {}
    challenger = json.loads(path.read_text())["challenger"]
    aucs = {"overall": challenger["overall"]["auc"]}
    aucs.update({d: m["auc"] for d, m in challenger["per_domain"].items()})
    return aucs


_DATE_HELP = "Landing date YYYY-MM-DD (UTC); with --hour one hour, else the whole day."
_HOUR_HELP = "Hour 0-23 of --date."
_START_HELP = "Range start, ISO-8601 with offset (instead of --date)."
_END_HELP = "Range end, exclusive, ISO-8601 with offset."


def _hour_window(
    date: str | None,
    hour: int | None,
    start: str | None,
    end: str | None,
    found: list[datetime],
) -> tuple[datetime, datetime]:
    """``[start, end)`` from --date/--hour, --start/--end, or every partition ``found``."""
    if date is not None and (start is not None or end is not None):
        raise typer.BadParameter(
            "give --date/--hour or --start/--end, not both", param_hint="--date"
        )
    if hour is not None and date is None:
        raise typer.BadParameter("--hour needs --date", param_hint="--hour")
    if date is not None:
        try:
            day = datetime.fromisoformat(date).replace(tzinfo=UTC)
        except ValueError:
            raise typer.BadParameter(f"not a date: {date!r}", param_hint="--date") from None
        if hour is None:
            return day, day + timedelta(days=1)
        return day + timedelta(hours=hour), day + timedelta(hours=hour + 1)
    if (start is None) != (end is None):
        raise typer.BadParameter("give both --start and --end", param_hint="--start")
    if start is not None:
        window = _parse_time(start, "--start"), _parse_time(end, "--end")
        if window[1] <= window[0]:
            raise typer.BadParameter("--end must be after --start", param_hint="--end")
        return window
    if not found:
        console.print("[red]error:[/red] no partitions found; give --date or --start/--end")
        raise typer.Exit(1)
    return found[0], found[-1] + timedelta(hours=1)


def _load(settings: Settings, section: str, model):
    try:
        return load_section(settings.params_path, section, model)
    except ParamsError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None


def _write_metrics(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    path.write_text(text + "\n", encoding="utf-8")


@app.command()
def ingest(
    date: Annotated[str | None, typer.Option(help=_DATE_HELP)] = None,
    hour: Annotated[int | None, typer.Option(help=_HOUR_HELP, min=0, max=23)] = None,
    start: Annotated[str | None, typer.Option(help=_START_HELP)] = None,
    end: Annotated[str | None, typer.Option(help=_END_HELP)] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(help="Only this landing source (repeatable); default: every source."),
    ] = None,
    landing: Annotated[
        Path | None, typer.Option(help="Landing root (default: <MUMA_DATA_ROOT>/landing).")
    ] = None,
    metrics: Annotated[
        Path, typer.Option(help="Where the run's counts are written as JSON.")
    ] = Path("metrics/ingest.json"),
) -> None:
    """Curate landing partitions with Spark: quarantine, dedup, reconcile, build interactions.

    Without --date or --start/--end, every partition found in the landing zone is ingested.
    Runs on MUMA_SPARK_MASTER (default local[*]); under spark-submit (ingest/submit.py), on
    spark-submit's master.
    """
    from ingest.config import IngestParams
    from ingest.job import ReconciliationError
    from ingest.run import ingest_range
    from ingest.spark import get_spark
    from muma.contract import CONTRACT_VERSION, Source

    from .landing import partition_hours

    settings = _settings()
    params = _load(settings, "ingest", IngestParams)
    landing_root = landing or settings.landing_root
    try:
        sources = [Source(name) for name in source] if source else None
    except ValueError:
        raise typer.BadParameter(
            f"sources are {', '.join(s.value for s in Source)}", param_hint="--source"
        ) from None
    version_root = landing_root / f"v{CONTRACT_VERSION}"
    found = sorted({h for s in sources or Source for h in partition_hours(version_root, s)})
    window = _hour_window(date, hour, start, end, found)
    curated_root = settings.data_root / params.curated_dir
    spark = get_spark(settings)
    master = spark.conf.get("spark.master", settings.spark_master)
    console.print(
        f"ingesting {window[0]:%Y-%m-%d %H:%M} to {window[1]:%Y-%m-%d %H:%M} UTC from "
        f"{landing_root} on {master}"
    )
    try:
        result = ingest_range(spark, landing_root, curated_root, *window, params, sources=sources)
    except (ReconciliationError, FileNotFoundError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    by_source: dict[str, dict[str, int]] = {}
    for partition in result.partitions:
        counts = by_source.setdefault(
            partition.source,
            {"partitions": 0, "records_read": 0, "curated": 0, "quarantined": 0, "duplicates": 0},
        )
        counts["partitions"] += 1
        counts["records_read"] += partition.records_read
        counts["curated"] += partition.curated
        counts["quarantined"] += partition.quarantined
        counts["duplicates"] += partition.duplicates_dropped
    summary = result.totals() | {
        "start": window[0].isoformat(),
        "end": window[1].isoformat(),
        "by_source": by_source,
        "interactions": sum(r.interactions for r in result.interactions),
        "clicks_without_impression": sum(r.clicks_without_impression for r in result.interactions),
        "curated_root": str(curated_root),
    }
    _write_metrics(metrics, summary)
    table = Table(
        "source", "partitions", "read", "curated", "quarantined", "duplicates", title="ingest"
    )
    for name, counts in by_source.items():
        table.add_row(name, *(f"{value:,}" for value in counts.values()))
    console.print(table)
    if summary["quarantined_by_reason"]:
        reasons = ", ".join(f"{r}: {n:,}" for r, n in summary["quarantined_by_reason"].items())
        console.print(f"quarantined by reason: {reasons}")
    console.print(
        f"{summary['records_read']:,} records in {result.seconds:.1f} s "
        f"({summary['events_per_second']:,.0f} events/s); {summary['interactions']:,} "
        f"interactions; every partition reconciled (read = curated + quarantined + duplicates)"
    )
    console.print(
        f"curated tables: {curated_root}/; quarantine: {curated_root}/quarantine/; "
        f"reconciliations: {curated_root}/_reconciliation/; counts: {metrics}"
    )


@app.command()
def validate(
    date: Annotated[str | None, typer.Option(help=_DATE_HELP)] = None,
    hour: Annotated[int | None, typer.Option(help=_HOUR_HELP, min=0, max=23)] = None,
    start: Annotated[str | None, typer.Option(help=_START_HELP)] = None,
    end: Annotated[str | None, typer.Option(help=_END_HELP)] = None,
    table: Annotated[
        list[str] | None,
        typer.Option(help="Only this curated table (repeatable); default: every table."),
    ] = None,
    metrics: Annotated[
        Path, typer.Option(help="Where the summary of all results is written as JSON.")
    ] = Path("metrics/validation.json"),
    one_batch: Annotated[
        bool,
        typer.Option(
            "--one-batch/--per-hour",
            help="Validate each run of consecutive hours of a table as one batch (one GX "
            "checkpoint per table) instead of hour by hour.",
        ),
    ] = False,
) -> None:
    """Run the Great Expectations suites on curated partitions; fail on critical expectations.

    Without --date or --start/--end, every curated partition is validated. Results are saved
    as JSON and Data Docs HTML under the reports directory of params.yaml's validate section.
    """
    from ingest.config import IngestParams
    from ingest.spark import get_spark
    from validation.config import TABLES, ValidationParams
    from validation.run import ValidationFailed, validate_hours

    from .landing import partition_hours

    settings = _settings()
    ingest_params = _load(settings, "ingest", IngestParams)
    params = _load(settings, "validate", ValidationParams)
    tables = table or list(TABLES)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise typer.BadParameter(
            f"unknown {', '.join(unknown)}; tables are {', '.join(TABLES)}", param_hint="--table"
        )
    curated_root = settings.data_root / ingest_params.curated_dir
    found = sorted({h for name in tables for h in partition_hours(curated_root, name)})
    window = _hour_window(date, hour, start, end, found)
    hours = [h for h in found if window[0] <= h < window[1]]
    if not hours:
        console.print(f"[red]error:[/red] no curated partitions in {window[0]} .. {window[1]}")
        raise typer.Exit(1)
    spark = get_spark(settings, "muma-validate")
    results = validate_hours(spark, curated_root, tables, hours, params, one_batch=one_batch)
    summary = {
        "partitions": len(results),
        "success": all(r.success for r in results),
        "critical_failures": sum(len(r.critical_failures) for r in results),
        "warnings": sum(len(r.warnings) for r in results),
        "results": [r.summary() for r in results],
    }
    _write_metrics(metrics, summary)
    view = Table("table", "hour", "rows", "critical", "warnings", title="validation")
    for r in results:
        view.add_row(
            r.table,
            r.label,
            f"{r.row_count:,}",
            "\n".join(f.name for f in r.critical_failures) or "-",
            "\n".join(f.name for f in r.warnings) or "-",
        )
    console.print(view)
    console.print(f"results: {params.reports_dir}/; Data Docs: {params.reports_dir}/data_docs/")
    failed = [r for r in results if not r.success]
    for r in failed:
        try:
            r.raise_for_critical()
        except ValidationFailed as error:
            console.print(f"[red]critical:[/red] {error}")
    if failed:
        raise typer.Exit(1)


@app.command("settings")
def show_settings() -> None:
    """Print the effective settings (secrets masked)."""
    settings = _settings()
    for name, value in settings.model_dump().items():
        shown = "***" if name == "api_token" and value is not None else value
        typer.echo(f"{name} = {shown}")


import_app = typer.Typer(
    help="Convert real public logs (MIND, Ciao, Open Bandit) into the landing contract.",
    no_args_is_help=True,
)
app.add_typer(import_app, name="import")

_IMPORT_OUT_HELP = "Landing root (default: <MUMA_DATA_ROOT>/landing)."
_IMPORT_LIMIT_HELP = "Read only the first N input rows (for trials and tests)."


def _report_import(summary) -> None:
    """Print an importer's counts, where it wrote, and the summary as one JSON line."""
    inputs = Table("input", "read", "converted", "skipped", "skip reasons", title="read")
    for name, count in summary.inputs.items():
        reasons = ", ".join(f"{reason}: {n:,}" for reason, n in sorted(count.skipped.items()))
        inputs.add_row(
            name, f"{count.read:,}", f"{count.converted:,}", f"{count.skipped_total:,}", reasons
        )
    console.print(inputs)
    written = Table("source", "records", "hour partitions", title="landing zone written")
    for source, count in summary.records_written.items():
        written.add_row(source, f"{count:,}", f"{summary.partitions_written[source]:,}")
    console.print(written)
    console.print(f"landing zone: {summary.landing_root}/v1/ (files {summary.part}*.jsonl.gz)")
    for name, path in summary.side_outputs.items():
        console.print(f"side table {name}: {path}")
    typer.echo(json.dumps(summary.as_dict()))
    if not summary.reconciles():
        console.print("[red]error:[/red] input counts do not reconcile")
        raise typer.Exit(1)


@import_app.command("mind")
def import_mind_command(
    path: Annotated[
        Path, typer.Argument(help="MIND folder holding behaviors.tsv and news.tsv.", exists=True)
    ],
    out: Annotated[Path | None, typer.Option(help=_IMPORT_OUT_HELP)] = None,
    limit: Annotated[int | None, typer.Option(help=_IMPORT_LIMIT_HELP, min=1)] = None,
    known_items_only: Annotated[
        bool,
        typer.Option(help="Skip impressions of articles news.tsv does not describe."),
    ] = False,
) -> None:
    """Import MIND news, impressions and clicks; click histories go to a side table."""
    from ingest.importers import import_mind

    landing = out or _settings().landing_root
    _report_import(import_mind(path, landing, limit=limit, known_items_only=known_items_only))


@import_app.command("ciao")
def import_ciao_command(
    path: Annotated[
        Path,
        typer.Argument(
            help="Ciao folder: rating_with_timestamp.mat, trust.mat, catalog.", exists=True
        ),
    ],
    out: Annotated[Path | None, typer.Option(help=_IMPORT_OUT_HELP)] = None,
    limit: Annotated[int | None, typer.Option(help=_IMPORT_LIMIT_HELP, min=1)] = None,
) -> None:
    """Import Ciao ratings (impressions, clicks for 4-5 stars), products and trust edges."""
    from ingest.importers import import_ciao

    landing = out or _settings().landing_root
    _report_import(import_ciao(path, landing, limit=limit))


@import_app.command("obd")
def import_obd_command(
    path: Annotated[
        Path, typer.Argument(help="Open Bandit Dataset root holding random/ and bts/.", exists=True)
    ],
    policy: Annotated[
        str, typer.Option(help="Logging policy: random (uniform) or bts (Thompson sampling).")
    ] = "random",
    campaign: Annotated[str, typer.Option(help="Campaign: all, men or women.")] = "all",
    out: Annotated[Path | None, typer.Option(help=_IMPORT_OUT_HELP)] = None,
    limit: Annotated[int | None, typer.Option(help=_IMPORT_LIMIT_HELP, min=1)] = None,
) -> None:
    """Import one Open Bandit log with its logged propensities, and its item context."""
    from ingest.importers import import_obd
    from ingest.importers.obd import CAMPAIGNS, POLICIES

    if policy not in POLICIES:
        raise typer.BadParameter(f"one of {', '.join(POLICIES)}", param_hint="--policy")
    if campaign not in CAMPAIGNS:
        raise typer.BadParameter(f"one of {', '.join(CAMPAIGNS)}", param_hint="--campaign")
    landing = out or _settings().landing_root
    _report_import(import_obd(path, landing, policy=policy, campaign=campaign, limit=limit))


def _window_option(value: str, option: str) -> tuple[datetime, datetime]:
    """``YYYY-MM-DD`` (that UTC day) or ``START/END`` (ISO-8601 with offsets)."""
    if "/" in value:
        first, _, second = value.partition("/")
        window = _parse_time(first, option), _parse_time(second, option)
    else:
        try:
            day = datetime.fromisoformat(value).replace(tzinfo=UTC)
        except ValueError:
            raise typer.BadParameter(
                f"not a date or START/END window: {value!r}", param_hint=option
            ) from None
        window = day, day + timedelta(days=1)
    if window[1] <= window[0]:
        raise typer.BadParameter("the window ends before it starts", param_hint=option)
    return window


@app.command()
def monitor(
    reference: Annotated[
        str | None,
        typer.Option(
            help="Reference window: YYYY-MM-DD or START/END (default: the day before --current)."
        ),
    ] = None,
    current: Annotated[
        str | None,
        typer.Option(
            help="Current window: YYYY-MM-DD or START/END (default: the last curated day)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Reports root; the run goes to <out>/<date>/.")] = Path(
        "reports/monitoring"
    ),
    workspace: Annotated[
        Path, typer.Option(help="Evidently workspace the run is added to (browse: evidently ui).")
    ] = Path("reports/evidently-workspace"),
    metrics: Annotated[Path, typer.Option(help="Where the summary is written as JSON.")] = Path(
        "metrics/monitor.json"
    ),
    champion: Annotated[
        bool,
        typer.Option(
            help="Score both windows with the champion ranker (prediction and representation "
            "drift) when one is promoted and the windows' features are built."
        ),
    ] = True,
) -> None:
    """Drift of a current window against a reference window, and the retraining decision.

    Reads curated interactions and the item catalog; measures feature, interest, CTR and
    propensity drift; writes an Evidently report, adds it to the workspace, and decides.
    """
    from ingest.config import IngestParams
    from monitoring.config import MonitorParams
    from monitoring.inputs import read_interactions, read_items
    from monitoring.report import monitor as run_monitor

    from .landing import partition_hours

    settings = _settings()
    params = _load(settings, "monitor", MonitorParams)
    curated_root = settings.data_root / _load(settings, "ingest", IngestParams).curated_dir
    given_current = _window_option(current, "--current") if current is not None else None
    given_reference = _window_option(reference, "--reference") if reference is not None else None
    hours = partition_hours(curated_root, "interactions")
    if (current is None or reference is None) and not hours:
        console.print(f"[red]error:[/red] no curated interactions under {curated_root}")
        raise typer.Exit(1)
    if given_current is not None:
        current_window = given_current
    elif hours[-1] - hours[0] >= timedelta(days=2) - timedelta(hours=1):
        last_day = hours[-1].replace(hour=0)
        current_window = last_day, last_day + timedelta(days=1)
    else:
        # Less than two days curated: compare the second half of the hours with the first.
        middle = hours[len(hours) // 2]
        current_window = middle, hours[-1] + timedelta(hours=1)
    if given_reference is not None:
        reference_window = given_reference
    else:
        length = current_window[1] - current_window[0]
        reference_window = current_window[0] - length, current_window[0]
    try:
        reference_rows = read_interactions(curated_root, *reference_window)
        current_rows = read_interactions(curated_root, *current_window)
        items = read_items(curated_root, current_window[1])
    except FileNotFoundError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    embeddings = {}
    scored_by = None
    if champion:
        from monitoring.champion import score_windows

        scored = score_windows(settings, reference_rows, current_rows)
        console.print(("[yellow]warning:[/yellow] " if scored.warning else "") + scored.note)
        reference_rows, current_rows = scored.reference, scored.current
        embeddings, scored_by = scored.embeddings, scored.version
    result = run_monitor(
        reference_rows,
        current_rows,
        params,
        out,
        run_date=current_window[0].date(),
        workspace=workspace,
        items=items,
        **embeddings,
    )
    summary = result.summary | {
        "reference_window": [t.isoformat() for t in reference_window],
        "current_window": [t.isoformat() for t in current_window],
        "paths": result.paths,
        "champion_version": scored_by,
    }
    _write_metrics(metrics, summary)
    console.print(
        f"reference {reference_window[0]:%Y-%m-%d %H:%M} .. {reference_window[1]:%Y-%m-%d %H:%M}"
        f" ({len(reference_rows):,} rows); current {current_window[0]:%Y-%m-%d %H:%M} .. "
        f"{current_window[1]:%Y-%m-%d %H:%M} ({len(current_rows):,} rows)"
    )
    decision = result.decision
    verdict = "[yellow]retrain[/yellow]" if decision.retrain else "[green]no retraining[/green]"
    console.print(f"decision: {verdict}")
    for reason in decision.reasons:
        console.print(f"  reason: {reason}")
    for alert in decision.alerts:
        console.print(f"  alert: {alert}")
    for name, path in result.paths.items():
        console.print(f"{name}: {path}")
    console.print(f"summary: {metrics}; browse runs: evidently ui --workspace {workspace}")


features_app = typer.Typer(
    help="Offline features with Spark, the Feast registry, and the online store.",
    no_args_is_help=True,
)
app.add_typer(features_app, name="features")


def _feature_window(
    settings: Settings,
    curated_root: Path,
    date: str | None,
    start: str | None,
    end: str | None,
) -> tuple[datetime, datetime]:
    from .landing import partition_hours

    found = partition_hours(curated_root, "interactions")
    return _hour_window(date, None, start, end, found)


@features_app.command("build")
def features_build(
    date: Annotated[str | None, typer.Option(help="Build the snapshots of this UTC day.")] = None,
    start: Annotated[str | None, typer.Option(help=_START_HELP)] = None,
    end: Annotated[str | None, typer.Option(help=_END_HELP)] = None,
    metrics: Annotated[Path, typer.Option(help="Where the build summary is written.")] = Path(
        "metrics/features.json"
    ),
) -> None:
    """Build the offline feature tables with Spark from the curated tables (point in time).

    Without --date or --start/--end, the range of the curated interactions is built.
    """
    from dataclasses import asdict

    from feature_repo.config import FeaturesParams
    from feature_repo.pipelines import build_features
    from ingest.config import IngestParams
    from ingest.spark import get_spark

    settings = _settings()
    params = _load(settings, "features", FeaturesParams)
    curated_root = settings.data_root / _load(settings, "ingest", IngestParams).curated_dir
    features_root = settings.data_root / params.features_dir
    window = _feature_window(settings, curated_root, date, start, end)
    console.print(
        f"building features for {window[0]:%Y-%m-%d %H:%M} .. {window[1]:%Y-%m-%d %H:%M} UTC "
        f"on {settings.spark_master}"
    )
    spark = get_spark(settings, "muma-features")
    try:
        result = build_features(spark, curated_root, features_root, *window, params)
    except (FileNotFoundError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    summary = asdict(result) | {"features_root": str(features_root)}
    _write_metrics(metrics, summary)
    view = Table("table", "rows", "entities", "snapshots", "bytes/row (mean, max)")
    for name, built in result.tables.items():
        view.add_row(
            name,
            f"{built.rows:,}",
            f"{built.entities:,}",
            f"{built.snapshot_dirs:,}",
            f"{built.mean_row_bytes:,.0f}, {built.max_row_bytes:,}",
        )
    console.print(view)
    console.print(
        f"{result.snapshots} snapshots in {result.seconds:.1f} s; offline store: "
        f"{features_root}/; summary: {metrics}"
    )


@features_app.command("apply")
def features_apply() -> None:
    """Register entities, sources, views and services in the Feast registry (feast apply)."""
    from feature_repo.config import FeaturesParams
    from feature_repo.store import FeastParams, apply

    settings = _settings()
    features = _load(settings, "features", FeaturesParams)
    feast = _load(settings, "feast", FeastParams)
    store = apply(settings, features, feast)
    online = "Redis" if settings.redis_url else "SQLite (embedded)"
    views = sorted(view.name for view in store.list_feature_views())
    services = sorted(service.name for service in store.list_feature_services())
    console.print(f"registered views: {', '.join(views)}")
    console.print(f"feature services: {', '.join(services)}; online store: {online}")


@features_app.command("materialize")
def features_materialize(
    date: Annotated[str | None, typer.Option(help="Materialise this UTC day.")] = None,
    start: Annotated[str | None, typer.Option(help=_START_HELP)] = None,
    end: Annotated[str | None, typer.Option(help=_END_HELP)] = None,
) -> None:
    """Load the offline rows of an interval into the online store (SQLite, or Redis)."""
    from feature_repo.config import FeaturesParams
    from feature_repo.store import FeastParams, materialize
    from ingest.config import IngestParams

    settings = _settings()
    features = _load(settings, "features", FeaturesParams)
    feast = _load(settings, "feast", FeastParams)
    curated_root = settings.data_root / _load(settings, "ingest", IngestParams).curated_dir
    window = _feature_window(settings, curated_root, date, start, end)
    # Snapshots are stamped at the end of each grain; the interval's end is inclusive.
    result = materialize(settings, window[0], window[1], features, feast)
    console.print(
        f"materialised {result.rows:,} rows of {len(result.views)} views in "
        f"{result.seconds:.1f} s into the {'Redis' if settings.redis_url else 'SQLite'} store"
    )


policy_app = typer.Typer(
    help="Exploration policies and their off-policy evaluation.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")


@policy_app.command("simulate")
def policy_simulate(
    days: Annotated[int | None, typer.Option(help="Override policy.loop.days.", min=1)] = None,
    metrics: Annotated[Path, typer.Option(help="Report (JSON).")] = Path("metrics/policy.json"),
    plots: Annotated[Path, typer.Option(help="Directory of the CTR-over-time plot data.")] = Path(
        "plots/policy"
    ),
    seed: Annotated[
        int | None, typer.Option(help="Seed (default MUMA_SEED, then base.seed).")
    ] = None,
) -> None:
    """Run the policies against the simulator for a week with drift and daily retraining.

    Reports online CTR per policy and domain, share of the oracle's CTR, the bandit's gain over
    the greedy ranker, debiased vs unweighted retraining, and OPE estimates from the loop's logs
    beside the simulated truth.
    """
    from pydantic import BaseModel, ConfigDict

    from policy.loop import LoopParams, run_loop

    class _PolicySection(BaseModel):
        model_config = ConfigDict(extra="allow")
        loop: LoopParams = LoopParams()

    settings = _settings()
    params = _load(settings, "policy", _PolicySection).loop
    if days is not None:
        params = params.model_copy(update={"days": days})
    report = run_loop(params, _seed(settings, seed), progress=True)
    _write_metrics(metrics, report)
    plots.mkdir(parents=True, exist_ok=True)
    curve = [
        {"day": entry["day"], "policy": name, "expected_ctr": round(entry["expected_ctr"], 5)}
        for name, result in report["policies"].items()
        for entry in result["daily"]
    ]
    _write_metrics(plots / "ctr_over_time.json", {"ctr_over_time": curve})
    table = Table("policy", "online CTR", "expected CTR", "share of oracle", "news", "video", "ad")
    for name, result in report["policies"].items():
        domains = result["per_domain"]
        table.add_row(
            name,
            f"{result['ctr']:.4f}",
            f"{result['expected_ctr']:.4f}",
            _fmt_metric(result.get("share_of_oracle")),
            *(
                f"{domains[d]['expected_ctr']:.4f}" if d in domains else "-"
                for d in ("news", "video", "ad")
            ),
        )
    console.print(table)
    if "ope" in report:
        ope = report["ope"]
        console.print(
            f"OPE of the {ope['target']} from the {ope['logging']}: truth {ope['truth']:.4f}; "
            + ", ".join(
                f"{name} {e['value']:.4f} (error {e['relative_error']:.1%})"
                for name, e in ope["estimates"].items()
            )
        )
    console.print(f"report: {metrics} ({report['seconds']:.0f} s)")


@policy_app.command("evaluate")
def policy_evaluate(
    obd: Annotated[
        Path,
        typer.Option(
            help="Open Bandit Dataset root (random/ and bts/): estimate each policy's CTR from "
            "the other's log and compare with its own.",
            exists=True,
            file_okay=False,
        ),
    ],
    campaign: Annotated[str, typer.Option(help="OBD campaign: all, men or women.")] = "all",
    max_weight: Annotated[
        float | None, typer.Option(help="Clip importance weights at this value.", min=1.0)
    ] = None,
    bootstrap: Annotated[
        int, typer.Option(help="Bootstrap resamples for the confidence intervals.", min=0)
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap and cross-fitting seed.")] = 0,
    metrics: Annotated[Path, typer.Option(help="Where the report is written as JSON.")] = Path(
        "metrics/ope_obd.json"
    ),
) -> None:
    """Off-policy evaluation (IPS, SNIPS, DM, DR) checked against the Open Bandit Dataset."""
    from ingest.importers.obd import CAMPAIGNS
    from policy.obd import cross_policy_check

    if campaign not in CAMPAIGNS:
        raise typer.BadParameter(f"one of {', '.join(CAMPAIGNS)}", param_hint="--campaign")
    report = cross_policy_check(obd, campaign, max_weight, bootstrap, seed)
    _write_metrics(metrics, report)
    for result in report.values():
        table = Table(
            "estimator",
            "estimate",
            "CI",
            "relative error",
            "ESS",
            title=f"{result['target_policy']} from the {result['logging_policy']} log "
            f"({result['rounds']:,} rounds; true CTR {result['truth']:.4%})",
        )
        for name, estimate in result["estimates"].items():
            table.add_row(
                name,
                f"{estimate['value']:.4%}",
                f"{estimate['ci_low']:.4%} .. {estimate['ci_high']:.4%}",
                f"{estimate['relative_error']:.1%}",
                f"{estimate['effective_sample_size']:,.0f}",
            )
        console.print(table)
    console.print(f"report: {metrics}")


# ----------------------------------------------------------------------------- training
def _training_context(settings: Settings):
    from feature_repo.config import FeaturesParams
    from ingest.config import IngestParams
    from training.config import EvaluateParams, TrainParams

    params = _load(settings, "train", TrainParams)
    features = _load(settings, "features", FeaturesParams)
    evaluate_params = _load(settings, "evaluate", EvaluateParams)
    curated_root = settings.data_root / _load(settings, "ingest", IngestParams).curated_dir
    return params, features, evaluate_params, curated_root


def _training_dir(settings: Settings) -> Path:
    return settings.data_root / "training"


@app.command("training-set")
def training_set_command(
    out: Annotated[
        Path | None, typer.Option(help="Directory of the windows (default <data_root>/training).")
    ] = None,
) -> None:
    """Split curated impressions by time and write each window with point-in-time features.

    Writes train/valid/test.parquet and split.json; test rows of simulated data carry the
    simulator's true click probability.
    """
    from feature_repo.store import FeastParams
    from training.data import TrainingDataError
    from training.pipeline import build_training_set

    settings = _settings()
    params, features, _, curated_root = _training_context(settings)
    feast = _load(settings, "feast", FeastParams)
    out = out or _training_dir(settings)
    truth = settings.data_root / "simulator" / "truth"
    try:
        summary = build_training_set(
            settings,
            params,
            curated_root,
            out,
            features,
            feast,
            truth if truth.is_dir() else None,
        )
    except (TrainingDataError, ValueError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    table = Table("window", "from", "to", "impressions", "clicks")
    for name in ("train", "valid", "test"):
        window = getattr(summary.split, name)
        table.add_row(
            name,
            f"{window.start:%Y-%m-%d %H:%M}",
            f"{window.end:%Y-%m-%d %H:%M}",
            f"{summary.rows[name]:,}",
            f"{summary.clicks[name]:,}",
        )
    console.print(table)
    console.print(f"training set in {summary.seconds:.1f} s: {out}/")


@app.command()
def train(
    model: Annotated[
        str | None, typer.Option(help="Override train.model (muma, fm, deepfm, din, gru4rec, bst).")
    ] = None,
    ablation: Annotated[
        str | None,
        typer.Option(
            help="Override train.ablation (no_time_decay, no_lstm, no_transformer, no_graph)."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Bundle directory (default <data_root>/models/challenger).")
    ] = None,
    metrics: Annotated[Path, typer.Option(help="Training summary (JSON).")] = Path(
        "metrics/train.json"
    ),
    plots: Annotated[Path, typer.Option(help="Directory of the learning-curve plot data.")] = Path(
        "plots/train"
    ),
    seed: Annotated[
        int | None, typer.Option(help="Seed (default MUMA_SEED, then base.seed).")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train the ranker of params.yaml `train` on the written training set; save the challenger."""
    from training.data import TrainingDataError
    from training.featurize import FeatureError
    from training.pipeline import train_model
    from training.registry import challenger_dir
    from training.train import TrainingError

    settings = _settings()
    params, features, evaluate_params, curated_root = _training_context(settings)
    overrides = {k: v for k, v in {"model": model, "ablation": ablation}.items() if v is not None}
    if overrides:
        from pydantic import ValidationError

        try:
            params = params.model_validate({**params.model_dump(), **overrides})
        except ValidationError as error:
            console.print(f"[red]error:[/red] {error.errors()[0]['msg']}")
            raise typer.Exit(2) from None
    seed_value = _seed(settings, seed)
    console.print(f"training {params.name} (seed {seed_value}, {params.threads} threads)")
    try:
        trained = train_model(
            params,
            features,
            evaluate_params,
            _training_dir(settings),
            curated_root,
            seed_value,
            progress=progress,
            on_epoch=None
            if progress
            else lambda e: console.print(
                f"epoch {e.epoch}: loss {e.train_loss:.4f}, valid AUC {e.valid_auc}, "
                f"{e.samples_per_second:,.0f} samples/s"
            ),
        )
    except (TrainingDataError, FeatureError, TrainingError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    bundle_dir = trained.bundle.save(out or challenger_dir(settings))
    overall = trained.test.overall
    summary = {
        "model": params.name,
        "version": trained.bundle.version,
        "bundle": str(bundle_dir),
        "rows": trained.rows,
        "fit": trained.fit.as_dict(),
        "test": trained.test.as_dict(),
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }
    _write_metrics(metrics, summary)
    plots.mkdir(parents=True, exist_ok=True)
    curve = [
        {"epoch": e.epoch, "train_loss": round(e.train_loss, 5), "valid_auc": e.valid_auc}
        for e in trained.fit.history
    ]
    _write_metrics(plots / "learning_curve.json", {"learning_curve": curve})
    console.print(
        f"{params.name} {trained.bundle.version}: test AUC {overall.auc}, GAUC {overall.gauc}, "
        f"ECE {overall.ece:.4f}; {trained.fit.samples_per_second:,.0f} samples/s; "
        f"best epoch {trained.fit.best_epoch}"
    )
    console.print(f"bundle: {bundle_dir}/; summary: {metrics}")


@app.command("evaluate")
def evaluate_command(
    metrics: Annotated[Path, typer.Option(help="Evaluation and decision (JSON).")] = Path(
        "metrics/evaluate.json"
    ),
    plots: Annotated[Path, typer.Option(help="Directory of the evaluation plot data.")] = Path(
        "plots/evaluate"
    ),
) -> None:
    """Score the challenger and the champion on the same test window; decide promotion."""
    from training.bundle import BundleError, ModelBundle
    from training.data import TrainingDataError
    from training.pipeline import calibration_curve, evaluate_bundle, read_window
    from training.registry import (
        challenger_dir,
        decide,
        decision_file,
        load_champion,
        write_json_atomic,
    )

    settings = _settings()
    _, _, evaluate_params, _ = _training_context(settings)
    try:
        test = read_window(_training_dir(settings), "test")
        challenger = ModelBundle.load(challenger_dir(settings))
        champion = load_champion(settings)
    except (TrainingDataError, BundleError) as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    challenger_eval = evaluate_bundle(challenger, test, evaluate_params)
    champion_eval = None if champion is None else evaluate_bundle(champion, test, evaluate_params)
    decision = decide(challenger, challenger_eval, champion, champion_eval, evaluate_params)
    write_json_atomic(decision_file(settings), decision.as_dict())
    payload = {
        "challenger": {"name": challenger.name, "version": challenger.version}
        | challenger_eval.as_dict(),
        "champion": None
        if champion is None
        else {"name": champion.name, "version": champion.version} | champion_eval.as_dict(),
        "decision": decision.as_dict(),
    }
    _write_metrics(metrics, payload)
    plots.mkdir(parents=True, exist_ok=True)
    _write_metrics(
        plots / "calibration.json",
        {"calibration": calibration_curve(challenger, test, evaluate_params.calibration_bins)},
    )
    _write_metrics(
        plots / "per_domain_auc.json",
        {
            "per_domain_auc": [
                {"domain": domain, "auc": values.auc, "model": "challenger"}
                for domain, values in challenger_eval.per_domain.items()
            ]
            + (
                []
                if champion_eval is None
                else [
                    {"domain": domain, "auc": values.auc, "model": "champion"}
                    for domain, values in champion_eval.per_domain.items()
                ]
            )
        },
    )
    table = Table("model", "version", "AUC", "GAUC", "log loss", "ECE", "NDCG@k")
    for label, bundle, result in (
        ("challenger", challenger, challenger_eval),
        ("champion", champion, champion_eval),
    ):
        if bundle is None or result is None:
            continue
        o = result.overall
        table.add_row(
            label,
            bundle.version,
            _fmt_metric(o.auc),
            _fmt_metric(o.gauc),
            f"{o.log_loss:.4f}",
            f"{o.ece:.4f}",
            _fmt_metric(o.ndcg_at_k),
        )
    console.print(table)
    verdict = "[green]promote[/green]" if decision.promote else "[yellow]keep champion[/yellow]"
    console.print(f"decision: {verdict}: {decision.reason}; written to {decision_file(settings)}")


def _fmt_metric(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


@app.command()
def promote() -> None:
    """Promote the challenger to champion if the last `muma evaluate` decided so."""
    from training.bundle import BundleError
    from training.registry import champion_file
    from training.registry import promote as promote_challenger

    settings = _settings()
    try:
        result = promote_challenger(settings)
    except BundleError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(1) from None
    if result["promoted"]:
        console.print(
            f"promoted {result['version']}: {result['reason']}; {champion_file(settings)}"
        )
    else:
        console.print(f"not promoted: {result['reason']}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    bundle: Annotated[
        Path | None,
        typer.Option(
            help="Serve this model bundle instead of the registry's champion (no hot reload).",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the recommendation API (FastAPI on uvicorn, one process); see docs/serving.md."""
    import uvicorn

    from serving.app import create_app
    from serving.config import load_serve_params

    settings = _settings()
    try:
        params = load_serve_params(settings.params_path)
    except ParamsError as error:
        console.print(f"[red]error:[/red] {error}")
        raise typer.Exit(2) from None
    api = create_app(settings, params, bundle_dir=bundle)
    uvicorn.run(api, host=host, port=port, log_level=log_level)


def _console_commands() -> None:
    from serving.console.cli import operators_app

    app.add_typer(operators_app, name="console")


_console_commands()


if __name__ == "__main__":
    app()
