"""One hour's interactions, labelled in a Spark task with Arrow (:func:`label_hour`).

The task reads the curated Parquet files it is given, joins the hour's impressions to the
clicks and views of the hours its attribution window reaches, finds the hour's clicks that
match no impression, and writes both into the run's staging directory. The driver
(:func:`ingest.interactions.build_interactions_hours`) reconciles from the written files.

Semantics (those of the Spark SQL build this replaced, checked row for row in the tests):

- a click labels an impression with the same ``request_id`` and ``item_id`` when
  ``impression.ts <= click.ts <= impression.ts + window``; ``click_ts`` is the earliest one;
- a view labels an impression with the same ``user_id`` and ``item_id``, in the same window,
  when the view has no ``request_id`` or the impression's; ``dwell_ms`` and
  ``completion_ratio`` come from the earliest such view (ties: the smallest view
  ``event_id``);
- the impression's clicks and views are those of the landing hours H .. H + ceil(window),
  and a click of hour H is attributed when an impression of hours H - ceil(window) .. H
  matches it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from muma.contract import Reason, Source

from .curate import QUARANTINE_ARROW_SCHEMA, TIMESTAMP_TYPE, curated_arrow_schema, write_quarantine
from .schemas import DETAIL, FIELD, RAW_LINE, REASON

PART_FILE = "part-00000.snappy.parquet"
INTERACTIONS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("ts", TIMESTAMP_TYPE),
        pa.field("request_id", pa.string()),
        pa.field("user_id", pa.string()),
        pa.field("item_id", pa.string()),
        pa.field("position", pa.int64()),
        pa.field("propensity", pa.float64()),
        pa.field("policy", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("clicked", pa.bool_(), nullable=False),
        pa.field("click_ts", TIMESTAMP_TYPE),
        pa.field("dwell_ms", pa.int64()),
        pa.field("completion_ratio", pa.float64()),
    ]
)
"""Columns of an interactions file (``domain``, ``date`` and ``hour`` are directories)."""


@dataclass(frozen=True)
class HourFiles:
    """What one task reads and writes for impressions' landing hour H.

    Attributes:
        hour: H, ISO-8601 UTC.
        impressions: Curated impression files of H, each with its ``domain``.
        clicks: Click files of hours H .. H + span (they may label H's impressions).
        views: View files of hours H .. H + span.
        hour_clicks: Click files of H (each attributed or quarantined here).
        earlier_impressions: Impression files of hours H - span .. H.
        interactions_dir: Staging directory of H's interactions (``domain=`` below it).
        quarantine_dir: Staging directory of H's unattributed clicks.
        window_micros: The attribution window.
        window_minutes: The same as configured, for the quarantine detail.
    """

    hour: str
    impressions: tuple[tuple[str, str], ...]
    clicks: tuple[str, ...]
    views: tuple[str, ...]
    hour_clicks: tuple[str, ...]
    earlier_impressions: tuple[str, ...]
    interactions_dir: str
    quarantine_dir: str
    window_micros: int
    window_minutes: str

    @property
    def size(self) -> int:
        """Bytes of the hour's impressions (to balance tasks)."""
        return sum(Path(path).stat().st_size for path, _ in self.impressions)


@dataclass
class HourOutcome:
    """What a task wrote for its hour (the driver recounts from the files)."""

    hour: str
    interactions: int
    clicked: int
    clicks_attributed: int
    clicks_without_impression: int


def _read(paths: tuple[str, ...], source: Source, columns: list[str]) -> pa.Table:
    schema = curated_arrow_schema(source)
    fields = [schema.field(name) for name in columns]
    tables = [pq.read_table(path, columns=columns) for path in paths]
    if not tables:
        return pa.schema(fields).empty_table()
    return pa.concat_tables([t.cast(pa.schema(fields)) for t in tables])


def _micros(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False)


def _within(later: pa.Table, earlier_ts: str, later_ts: str, window_micros: int) -> pa.Table:
    """Rows of a join whose ``later_ts`` is within the window after ``earlier_ts``."""
    gap = _micros(later[later_ts]) - _micros(later[earlier_ts])
    return later.filter(pa.array((gap >= 0) & (gap <= window_micros)))


def _first_per(table: pa.Table, key: str, order: list[str]) -> pa.Table:
    """The first row of each ``key`` by ``order`` (ascending)."""
    if table.num_rows == 0:
        return table
    table = table.sort_by([(key, "ascending"), *[(name, "ascending") for name in order]])
    keys = table[key].combine_chunks()
    first = np.ones(len(keys), bool)
    first[1:] = pc.not_equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)
    return table.filter(pa.array(first))


def _click_json(row: dict, date: str, hour: int) -> str:
    """A curated click as JSON, in the form Spark's ``to_json`` gave it before: nulls left
    out, times in UTC with milliseconds (microseconds when they are not whole)."""
    out = {}
    for name, value in row.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.astimezone(UTC)
            stamp = value.strftime("%Y-%m-%dT%H:%M:%S")
            fraction = f"{value.microsecond:06d}"
            value = f"{stamp}.{fraction[:3] if fraction.endswith('000') else fraction}Z"
        out[name] = value
    out |= {"date": date, "hour": hour}
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def _impressions(task: HourFiles) -> pa.Table:
    tables = []
    for path, domain in task.impressions:
        table = pq.read_table(path)
        tables.append(
            table.append_column("domain", pa.array([domain] * table.num_rows, pa.string()))
        )
    if not tables:
        raise FileNotFoundError(f"no curated impressions for {task.hour}")
    return pa.concat_tables(tables)


def label_hour(task: HourFiles) -> HourOutcome:
    """Label hour H's impressions and quarantine its unattributed clicks (see the module)."""
    window = task.window_micros
    impressions = _impressions(task)
    keys = impressions.select(["event_id", "ts", "request_id", "user_id", "item_id"])

    clicks = _read(task.clicks, Source.CLICKS, ["ts", "request_id", "item_id"])
    clicked = _within(
        keys.select(["event_id", "ts", "request_id", "item_id"]).join(
            clicks.rename_columns(["click_ts", "request_id", "item_id"]),
            ["request_id", "item_id"],
            join_type="inner",
        ),
        "ts",
        "click_ts",
        window,
    )
    earliest = clicked.group_by("event_id").aggregate([("click_ts", "min")])
    first_click = pa.table({"event_id": earliest["event_id"], "click_ts": earliest["click_ts_min"]})

    views = _read(
        task.views,
        Source.VIEWS,
        ["event_id", "ts", "request_id", "user_id", "item_id", "dwell_ms", "completion_ratio"],
    ).rename_columns(
        ["view_id", "view_ts", "view_request", "user_id", "item_id", "dwell_ms", "completion_ratio"]
    )
    viewed = _within(
        keys.join(views, ["user_id", "item_id"], join_type="inner"), "ts", "view_ts", window
    )
    same_request = pc.or_kleene(
        pc.is_null(viewed["view_request"]),
        pc.equal(viewed["view_request"], viewed["request_id"]),
    )
    viewed = viewed.filter(pc.fill_null(same_request, False))
    first_view = _first_per(viewed, "event_id", ["view_ts", "view_id"]).select(
        ["event_id", "dwell_ms", "completion_ratio"]
    )

    labelled = impressions.join(first_click, "event_id", join_type="left outer").join(
        first_view, "event_id", join_type="left outer"
    )
    labelled = labelled.append_column("clicked", pc.is_valid(labelled["click_ts"]))
    labelled = labelled.sort_by([("domain", "ascending"), ("event_id", "ascending")])
    table = pa.Table.from_arrays(
        [labelled[f.name].cast(f.type) for f in INTERACTIONS_SCHEMA], schema=INTERACTIONS_SCHEMA
    )
    out = Path(task.interactions_dir)
    domains = labelled["domain"]
    for domain in sorted(pc.unique(domains).to_pylist()):
        target = out / f"domain={domain}"
        target.mkdir(parents=True)
        pq.write_table(
            table.filter(pc.equal(domains, domain)),
            target / PART_FILE,
            compression="snappy",
            use_dictionary=[name for name in INTERACTIONS_SCHEMA.names if name != "event_id"],
        )
    out.mkdir(parents=True, exist_ok=True)

    hour_clicks = _read(task.hour_clicks, Source.CLICKS, curated_arrow_schema(Source.CLICKS).names)
    earlier = _read(
        task.earlier_impressions, Source.IMPRESSIONS, ["ts", "request_id", "item_id"]
    ).rename_columns(["impression_ts", "request_id", "item_id"])
    matched = _within(
        hour_clicks.select(["event_id", "ts", "request_id", "item_id"]).join(
            earlier, ["request_id", "item_id"], join_type="inner"
        ),
        "impression_ts",
        "ts",
        window,
    )
    found = pc.is_in(hour_clicks["event_id"], value_set=pc.unique(matched["event_id"]))
    unattributed = hour_clicks.filter(pc.invert(found))
    hour = datetime.fromisoformat(task.hour)
    detail = (
        "no impression with this request_id and item_id within "
        f"{task.window_minutes} minutes before the click (raw_line is the curated click as JSON)"
    )
    rows = unattributed.to_pylist()
    quarantine = pa.table(
        {
            RAW_LINE: [_click_json(row, f"{hour:%Y-%m-%d}", hour.hour) for row in rows],
            REASON: [Reason.CLICK_WITHOUT_IMPRESSION.value] * len(rows),
            FIELD: ["request_id"] * len(rows),
            DETAIL: [detail] * len(rows),
        },
        schema=QUARANTINE_ARROW_SCHEMA,
    )
    write_quarantine(quarantine, Path(task.quarantine_dir))
    return HourOutcome(
        hour=task.hour,
        interactions=table.num_rows,
        clicked=int(pc.sum(table["clicked"]).as_py() or 0),
        clicks_attributed=hour_clicks.num_rows - unattributed.num_rows,
        clicks_without_impression=unattributed.num_rows,
    )


def run_hours(tasks: list[HourFiles], indices: list[int]) -> list[tuple[int, str]]:
    """:func:`label_hour` for ``tasks[i]`` of each index: (index, outcome as JSON)."""
    return [(index, json.dumps(asdict(label_hour(tasks[index])))) for index in indices]


OUTCOME_SCHEMA = pa.schema([("task", pa.int32()), ("outcome", pa.string())])
"""The rows of :func:`run_hours`."""
