"""The dashboard's figures, each read from the output that produces it; never invented.

Every reader returns a plain dict with ``available: False`` and a ``reason`` when its output
does not exist yet, so the page shows an empty state instead of a number:

- CTR per domain per hour, and CTR per logging policy: curated ``interactions`` (every served
  or simulated impression, labelled with its click) of the last ``hours`` partition hours;
- the closed-loop policy study: ``metrics/policy.json`` of ``muma policy simulate``;
- drift: the newest ``reports/monitoring/<date>/summary.json`` of ``muma monitor`` and its
  Evidently ``report.html``;
- champion: ``<data_root>/models/champion.json`` and the last ``decision.json``;
- DAG runs: the ``dag_run`` table of Airflow's metadata DB (``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN``
  when set, else the SQLite ``airflow.db`` in ``MUMA_AIRFLOW_HOME``);
- freshness: newest partition of each offline feature table, and the serving process's own
  online-store and candidate-index ages.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from muma.landing import partition_hours

if TYPE_CHECKING:
    from muma.settings import Settings
    from serving.service import Service

_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def project_root(settings: Settings) -> Path:
    """The folder of params.yaml: base of ``reports/`` and ``metrics/`` (as the CLI writes)."""
    return Path(settings.params_path).resolve().parent


def curated_root(settings: Settings) -> Path:
    from ingest.config import IngestParams
    from muma.params import load_params, load_section

    path = Path(settings.params_path)
    params = IngestParams()
    if path.is_file() and "ingest" in load_params(path):
        params = load_section(path, "ingest", IngestParams)
    return Path(settings.data_root) / params.curated_dir


def _empty(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason}


def ctr(settings: Settings, hours: int = 48) -> dict[str, Any]:
    """CTR per domain per partition hour and per logging policy over the last ``hours``.

    Returns:
        ``{"available", "hours": [iso...], "domains": {domain: [{"hour", "ctr", "impressions",
        "clicks"}]}, "policies": [{"policy", "impressions", "clicks", "ctr"}]}``.
    """
    import polars as pl

    root = curated_root(settings)
    partitions = partition_hours(root, "interactions")[-hours:]
    if not partitions:
        return _empty(f"no curated interactions under {root} yet (run muma ingest)")
    frames = []
    for hour in partitions:
        base = root / "interactions" / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"
        for directory in sorted(base.glob("domain=*")):
            files = sorted(directory.glob("*.parquet"))
            if not files:
                continue
            frame = pl.concat(
                [pl.read_parquet(f, columns=["clicked", "policy"]) for f in files],
                how="diagonal_relaxed",
            )
            frames.append(
                frame.with_columns(
                    pl.lit(hour).alias("hour"),
                    pl.lit(directory.name.split("=", 1)[1]).alias("domain"),
                )
            )
    if not frames:
        return _empty(f"the curated interactions under {root} have no rows")
    rows = pl.concat(frames, how="diagonal_relaxed").with_columns(pl.col("clicked").cast(pl.Int64))
    per_hour = (
        rows.group_by("domain", "hour")
        .agg(pl.len().alias("impressions"), pl.col("clicked").sum().alias("clicks"))
        .sort("domain", "hour")
    )
    domains: dict[str, list[dict[str, Any]]] = {}
    for row in per_hour.iter_rows(named=True):
        domains.setdefault(row["domain"], []).append(
            {
                "hour": row["hour"].isoformat(),
                "impressions": row["impressions"],
                "clicks": row["clicks"],
                "ctr": row["clicks"] / row["impressions"] if row["impressions"] else 0.0,
            }
        )
    per_policy = (
        rows.group_by("policy")
        .agg(pl.len().alias("impressions"), pl.col("clicked").sum().alias("clicks"))
        .sort("policy")
    )
    policies = [
        {**row, "ctr": row["clicks"] / row["impressions"] if row["impressions"] else 0.0}
        for row in per_policy.iter_rows(named=True)
    ]
    return {
        "available": True,
        "hours": [h.isoformat() for h in partitions],
        "window": f"{partitions[0]:%Y-%m-%d %H:00} .. {partitions[-1]:%Y-%m-%d %H:00} UTC",
        "domains": domains,
        "policies": policies,
    }


def policy_study(settings: Settings) -> dict[str, Any]:
    """Per-policy CTR of the last closed-loop study (``muma policy simulate``, simulated users)."""
    path = project_root(settings) / "metrics" / "policy.json"
    if not path.is_file():
        return _empty(f"no closed-loop study at {path} yet (run muma policy simulate)")
    report = json.loads(path.read_text())
    rows = [
        {
            "policy": name,
            "impressions": entry.get("impressions"),
            "clicks": entry.get("clicks"),
            "ctr": float(entry.get("ctr") or 0.0),
            "expected_ctr": entry.get("expected_ctr"),
            "share_of_oracle": entry.get("share_of_oracle"),
        }
        for name, entry in sorted((report.get("policies") or {}).items())
    ]
    if not rows:
        return _empty(f"{path} lists no policies")
    return {"available": True, "policies": rows, "seconds": report.get("seconds")}


def monitoring_dir(settings: Settings) -> Path:
    return project_root(settings) / "reports" / "monitoring"


def drift(settings: Settings) -> dict[str, Any]:
    """The newest monitoring run's decision, reasons and alerts, and whether its report exists."""
    base = monitoring_dir(settings)
    runs = sorted(
        p.parent.name
        for p in base.glob("*/summary.json")
        if _DATE_DIR.match(p.parent.name) and p.is_file()
    )
    if not runs:
        return _empty(f"no monitoring run under {base} yet (run muma monitor)")
    date = runs[-1]
    try:
        summary = json.loads((base / date / "summary.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        return _empty(f"{base / date / 'summary.json'} cannot be read: {error}")
    return {
        "available": True,
        "date": date,
        "retrain": bool(summary.get("retrain")),
        "reasons": list(summary.get("reasons") or []),
        "alerts": list(summary.get("alerts") or []),
        "skipped": list(summary.get("skipped") or []),
        "rows": summary.get("rows"),
        "has_report": (base / date / "report.html").is_file(),
    }


def report_path(settings: Settings, date: str) -> Path | None:
    """``report.html`` of one monitoring run, or None (the date is checked, no path tricks)."""
    if not _DATE_DIR.match(date):
        return None
    path = monitoring_dir(settings) / date / "report.html"
    return path if path.is_file() else None


def champion(settings: Settings) -> dict[str, Any]:
    """The champion pointer, its test metrics from ``metrics/evaluate.json`` and the decision.

    The metrics are shown only when ``muma evaluate`` scored this very version (as challenger
    or champion); otherwise the page says so instead of showing another model's figures.
    """
    from training.registry import BundleError, decision_file, read_champion

    try:
        pointer = read_champion(settings)
    except BundleError as error:
        return _empty(str(error))
    if pointer is None:
        return _empty("no champion promoted yet (muma train, evaluate, promote)")
    version = pointer.get("version")
    decision = _json_or_none(decision_file(settings))
    evaluation = _json_or_none(project_root(settings) / "metrics" / "evaluate.json") or {}
    scored = next(
        (
            evaluation[role]
            for role in ("challenger", "champion")
            if isinstance(evaluation.get(role), dict) and evaluation[role].get("version") == version
        ),
        None,
    )
    overall, per_domain = {}, {}
    if scored is not None:
        overall = {
            k: v for k, v in (scored.get("overall") or {}).items() if isinstance(v, int | float)
        }
        per_domain = {
            domain: values.get("auc")
            for domain, values in (scored.get("per_domain") or {}).items()
            if isinstance(values, dict)
        }
    return {
        "available": True,
        "version": version,
        "name": pointer.get("name"),
        "promotion": {k: pointer.get(k) for k in ("metric", "value", "previous", "reason")},
        "metrics": overall,
        "per_domain_auc": per_domain,
        "decision": decision,
    }


def _json_or_none(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def airflow_db(settings: Settings) -> Path:
    home = Path(settings.airflow_home)
    if not home.is_absolute():
        home = project_root(settings) / home
    return home / "airflow.db"


_DAG_RUNS = (
    "SELECT dag_id, run_id, state, run_type, logical_date, start_date, end_date "
    "FROM dag_run ORDER BY COALESCE(start_date, logical_date) DESC LIMIT {limit}"
)
_DAG_RUN_COLUMNS = (
    "dag_id",
    "run_id",
    "state",
    "run_type",
    "logical_date",
    "start_date",
    "end_date",
)


def dag_runs(settings: Settings, connection: str | None = None, limit: int = 15) -> dict[str, Any]:
    """The last DAG runs (newest first) from Airflow's metadata DB.

    Args:
        settings: Runtime settings (``airflow_home`` locates the SQLite DB).
        connection: Airflow's ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` when set (PostgreSQL in
            production); without it, ``<airflow_home>/airflow.db``, opened read-only.
        limit: Runs shown.
    """
    query = _DAG_RUNS.format(limit=int(limit))
    if connection and not connection.startswith("sqlite"):
        import sqlalchemy

        where = connection.split("@")[-1]  # never show credentials
        engine = sqlalchemy.create_engine(connection, pool_pre_ping=True)
        try:
            with engine.connect() as db:
                rows = db.execute(sqlalchemy.text(query)).fetchall()
        except sqlalchemy.exc.SQLAlchemyError as error:
            reason = str(error).splitlines()[0]
            return _empty(f"Airflow metadata DB at {where} cannot be read: {reason}")
        finally:
            engine.dispose()
    else:
        path = airflow_db(settings)
        if connection and connection.startswith("sqlite:///"):
            path = Path(connection.removeprefix("sqlite:///"))
        if not path.is_file():
            return _empty(f"no Airflow runs recorded (no metadata DB at {path})")
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0)
            try:
                rows = db.execute(query).fetchall()
            finally:
                db.close()
        except sqlite3.Error as error:
            return _empty(f"Airflow metadata DB {path} cannot be read: {error}")
    if not rows:
        return _empty("no Airflow runs recorded")
    return {
        "available": True,
        "runs": [dict(zip(_DAG_RUN_COLUMNS, tuple(row), strict=True)) for row in rows],
    }


def freshness(settings: Settings, service: Service) -> dict[str, Any]:
    """Newest offline feature partition per table, and the online path's ages in this process."""
    from feature_repo.config import FeaturesParams

    features_root = Path(settings.data_root) / (
        service.features_params.features_dir or FeaturesParams().features_dir
    )
    now = datetime.now(UTC)
    tables = []
    if features_root.is_dir():
        for directory in sorted(p for p in features_root.iterdir() if p.is_dir()):
            hours = partition_hours(features_root, directory.name)
            if hours:
                tables.append(
                    {
                        "table": directory.name,
                        "newest": f"{hours[-1]:%Y-%m-%d %H:00}",
                        "age_hours": (now - hours[-1]).total_seconds() / 3600,
                    }
                )
    state = service.manager.state
    guard = service.guard
    online = {
        "kind": "redis" if settings.redis_url else "feast-sdk",
        "healthy": guard.healthy,
        "last_read_age_s": time.time() - guard.last_success if guard.last_success else None,
        "index_age_s": time.time() - state.index.built_at if state else None,
        "index_from_store": state.index.from_store if state else None,
    }
    return {"tables": tables, "features_root": str(features_root), "online": online}
