"""The ``muma`` command line: thin wrappers that read settings and params, call one library
function, and report what was written where."""

from __future__ import annotations

import json
import resource
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .params import ParamsError, load_params, load_section
from .settings import Settings, SettingsError, load_settings

app = typer.Typer(
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


@app.command()
def demo(
    reports: Annotated[Path, typer.Option(help="Where the demo summary is written.")] = Path(
        "reports/demo"
    ),
) -> None:
    """Run the main job end to end on embedded defaults and say where the outputs are.

    Until the later stages land, the main job is the simulator: a simulated day of
    news, video and ad traffic with exact logged propensities.
    """
    from simulator.config import SimulateParams
    from simulator.logs import simulate as run_simulation

    settings = _settings()
    params = load_section(settings.params_path, "simulate", SimulateParams)
    seed = _seed(settings, None)
    began = time.perf_counter()
    summary = run_simulation(params.world, seed, params.start, params.end, settings.landing_root)
    reports.mkdir(parents=True, exist_ok=True)
    result = summary.as_dict() | {
        "landing_root": str(settings.landing_root),
        "ground_truth_root": str(settings.landing_root.parent / "simulator"),
        "seed": seed,
        "wall_seconds": round(time.perf_counter() - began, 2),
        "stages_run": ["simulate"],
        "stages_pending": [
            "ingest",
            "validate",
            "features",
            "train",
            "evaluate",
            "policy",
            "monitor",
            "serve",
        ],
    }
    (reports / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    console.rule("MUMA demo")
    console.print(
        "Ran: simulate (the later stages - ingest, validation, features, training, policy, "
        "monitoring, serving - have not landed yet; see the issues)."
    )
    console.print(
        f"Simulated {result['events']:,} events over {result['hours']} hours "
        f"({result['events_per_second']:,} events/s)."
    )
    console.print(f"Landing zone (gzip JSON Lines, contract v1): {settings.landing_root}/v1/")
    console.print(f"Ground truth and bad-record manifests: {result['ground_truth_root']}/")
    console.print(f"Summary: {reports / 'summary.json'}")


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


if __name__ == "__main__":
    app()
