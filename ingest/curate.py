"""Curate one landing partition inside a Spark task, with Arrow's vectorised kernels.

Spark spreads a batch's landing partitions over a few tasks (``ingest.job.stage_batch``); a
task reads each partition's gzip files itself and does the per-line work in Arrow's C++
kernels, about five microseconds of CPU a line where Spark's JSON reader, row-by-row
expressions and Parquet writer cost about thirty (``docs/ingest.md``, "What changed").

A line goes one of two ways, and the contract decides every line that is not plainly valid:

* **Vectorised path.** The partition's lines are parsed at once by Arrow's JSON reader with
  the source's schema (unexpected keys are an error), then checked column by column: required
  keys present, strings non-empty, enumerations, ranges, finite floats, timestamps of the
  strict grammar ``YYYY-MM-DDTHH:MM:SS[.ffffff](Z|+HH:MM)`` and lateness. Arrow's reader is
  stricter than the contract (``1.0`` in an int column, a number in a string column, a
  repeated key are errors); where it fails on a partition, a strict anchored regular
  expression (:func:`ingest.classify.shape_pattern`, run by RE2) picks the lines whose
  shape has one reading, and only those are parsed by Arrow.
* **Contract path.** Every line the vectorised path does not accept (whatever its problem,
  or merely an unusual shape) goes through :func:`ingest.classify.classify_line`, the
  contract's own Python, so every quarantine reason is the contract's and every
  unusual-but-valid line is still curated.

The vectorised path never rejects: at worst it sends a valid line to the contract path.
Parity is tested line by line in ``tests/integration/test_ingest_classify_parity.py``.

Within the partition, a repeated ``event_id`` keeps the copy with the smallest raw line; ids
repeated across partitions are settled by the job afterwards. Curated rows are sorted by
``domain`` and ``event_id``, quarantined rows by reason and raw line, so a rerun writes
byte-identical files.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq

from muma.contract import SCHEMAS, Field, FieldType, Source, parse_timestamp

from .classify import (
    ALLOWED_SKEW,
    TIMESTAMP_PATTERN,
    classify_line,
    shape_pattern,
    to_column_value,
)
from .schemas import DETAIL, FIELD, RAW_LINE, REASON, has_domain

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NEWLINE, _BRACE = 10, ord("{")
PART_FILE = "part-00000.snappy.parquet"
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")
_READ_TYPES = {
    FieldType.STRING: pa.string(),
    FieldType.INT: pa.int64(),
    FieldType.FLOAT: pa.float64(),
    FieldType.TIMESTAMP: pa.string(),
}
_CURATED_TYPES = {**_READ_TYPES, FieldType.TIMESTAMP: TIMESTAMP_TYPE}
_TIMESTAMP_VALUE = "^" + TIMESTAMP_PATTERN[1:-1] + "$"
"""The strict timestamp grammar without the quotes, anchored (RE2)."""
QUARANTINE_ARROW_SCHEMA = pa.schema(
    [
        pa.field(RAW_LINE, pa.string(), nullable=False),
        pa.field(REASON, pa.string(), nullable=False),
        pa.field(FIELD, pa.string()),
        pa.field(DETAIL, pa.string()),
    ]
)


def curated_arrow_schema(source: Source) -> pa.Schema:
    """Arrow schema of ``source``'s curated files: contract order, timestamps UTC micros."""
    return pa.schema(
        [pa.field(f.name, _CURATED_TYPES[f.type], nullable=not f.required) for f in SCHEMAS[source]]
    )


def _read_schema(source: Source) -> pa.Schema:
    return pa.schema([pa.field(f.name, _READ_TYPES[f.type]) for f in SCHEMAS[source]])


@dataclass
class Lines:
    """The non-blank lines of a partition: one buffer, each line followed by ``\\n``.

    Attributes:
        buffer: The lines, ``\\n``-terminated, as Arrow's JSON reader takes them.
        offsets: ``len + 1`` start offsets into ``buffer`` (line ``i`` is
            ``buffer[offsets[i]:offsets[i + 1] - 1]``).
    """

    buffer: bytes
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def line(self, index: int) -> bytes:
        return self.buffer[self.offsets[index] : self.offsets[index + 1] - 1]

    def array(self) -> pa.LargeBinaryArray:
        """The lines (with their ``\\n``) as one Arrow array over the buffer, no copy."""
        return pa.LargeBinaryArray.from_buffers(
            pa.large_binary(),
            len(self),
            [None, pa.py_buffer(self.offsets.astype(np.int64)), pa.py_buffer(self.buffer)],
        )


def split_lines(data: bytes) -> Lines:
    """The non-blank lines of ``data``, as Spark's text reader with ``lineSep="\\n"`` sees them.

    A line ends at ``\\n`` only (a ``\\r`` stays in the line); a line is blank when it is
    empty or holds only spaces (Spark's ``trim``), and blank lines are not records.
    """
    if data and data[-1] != _NEWLINE:
        data += b"\n"
    raw = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(raw == _NEWLINE)
    starts = np.empty_like(ends)
    starts[:1] = 0
    starts[1:] = ends[:-1] + 1
    # Only a line not starting with "{" can be blank; look at those few in Python.
    unusual = np.flatnonzero(raw[np.minimum(starts, len(raw) - 1)] != _BRACE) if len(raw) else []
    blank = [i for i in unusual if not data[starts[i] : ends[i]].strip(b" ")]
    if blank:
        keep = np.ones(len(ends), bool)
        keep[blank] = False
        data = b"".join(data[s : e + 1] for s, e in zip(starts[keep], ends[keep], strict=True))
        return split_lines(data)
    offsets = np.empty(len(ends) + 1, np.int64)
    offsets[0] = 0
    offsets[1:] = ends + 1
    return Lines(data, offsets)


def read_partition(files: list[str]) -> Lines:
    """The non-blank lines of a landing partition's files in name order (``.gz``: gzip)."""
    chunks = []
    for path in sorted(files):
        data = Path(path).read_bytes()
        if path.endswith(".gz"):
            try:
                data = _gunzip(data)
            except (zlib.error, EOFError) as error:
                raise ValueError(f"{path} is not a readable gzip file: {error}") from error
        chunks.append(data if not data or data.endswith(b"\n") else data + b"\n")
    return split_lines(b"".join(chunks))


def _gunzip(data: bytes) -> bytes:
    """Every member of a gzip file, as ``gzip.decompress`` reads it, with zlib's own CRC."""
    parts = []
    while data:
        inflater = zlib.decompressobj(wbits=31)
        parts.append(inflater.decompress(data))
        if not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        data = inflater.unused_data.lstrip(b"\x00")
    return b"".join(parts)


def _parse(buffer: bytes, source: Source, expected_rows: int) -> pa.Table | None:
    """Arrow's reading of ``buffer`` (one object a line), or ``None`` if it does not map 1:1."""
    options = pj.ParseOptions(
        explicit_schema=_read_schema(source),
        unexpected_field_behavior="error",
        newlines_in_values=False,
    )
    block = min(max(len(buffer) + 1, 1 << 20), (1 << 31) - 1)
    try:
        table = pj.read_json(
            pa.BufferReader(buffer),
            parse_options=options,
            read_options=pj.ReadOptions(use_threads=False, block_size=block),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
        return None
    # Every non-blank line gives at least one row; equality means exactly one each (two
    # objects on one line, or a bare \r splitting one, would add rows).
    return table if table.num_rows == expected_rows else None


def _timestamp_micros(column: pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """``(epoch micros, ok)`` of a string column; ok only for the strict grammar.

    Arrow's ISO-8601 cast reads the grammar as ``fromisoformat`` does. One impossible date
    makes the cast fail as a whole: then the matching values are read by the contract's
    :func:`muma.contract.parse_timestamp`, one by one.
    """
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    ok = pc.fill_null(pc.match_substring_regex(column, _TIMESTAMP_VALUE), False)
    candidates = pc.if_else(ok, column, pa.scalar(None, pa.string()))
    try:
        micros = pc.cast(pc.cast(candidates, TIMESTAMP_TYPE), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        values = []
        for text in candidates.to_pylist():
            moment = parse_timestamp(text) if text is not None else None
            values.append(None if moment is None else (moment - _EPOCH) // _MICROSECOND)
        micros = pa.array(values, pa.int64())
        ok = pc.and_(ok, pc.is_valid(micros))
    return micros, ok


def _value_ok(spec: Field, column: pa.Array) -> pa.Array:
    """Where the contract's type, range and enumeration rules hold (nulls give null)."""
    if spec.type is FieldType.STRING:
        ok = pc.greater(pc.binary_length(column), 0)
    elif spec.type is FieldType.FLOAT:
        ok = pc.is_finite(column)
    else:
        ok = pc.is_valid(column)
    if spec.allowed is not None:
        ok = pc.and_(ok, pc.is_in(column, value_set=pa.array(spec.allowed)))
    if spec.minimum is not None:
        compare = pc.greater if spec.exclusive_minimum else pc.greater_equal
        ok = pc.and_(ok, compare(column, spec.minimum))
    if spec.maximum is not None:
        ok = pc.and_(ok, pc.less_equal(column, spec.maximum))
    return ok


def _accepted(
    table: pa.Table, source: Source, start_micros: int, lateness_micros: int
) -> tuple[dict[str, pa.Array], np.ndarray]:
    """Typed columns of ``table`` (timestamps as epoch micros) and where rows are accepted.

    A row is accepted when every rule of :func:`muma.contract.check_record` holds on the
    values Arrow read and its ``ts`` is on time for the partition.
    """
    columns: dict[str, pa.Array] = {}
    accepted = pa.array(np.ones(table.num_rows, bool))
    for spec in SCHEMAS[source]:
        raw = table.column(spec.name).combine_chunks()
        if spec.type is FieldType.TIMESTAMP:
            column, ok = _timestamp_micros(raw)
        else:
            column, ok = raw, _value_ok(spec, raw)
        present = pc.is_valid(raw)
        rule = pc.and_kleene(present, ok) if spec.required else pc.or_kleene(pc.invert(present), ok)
        accepted = pc.and_(accepted, pc.fill_null(rule, False))
        columns[spec.name] = column
    ts = columns["ts"]
    horizon = start_micros + (timedelta(hours=1) + ALLOWED_SKEW) // _MICROSECOND
    on_time = pc.and_(pc.greater_equal(ts, start_micros - lateness_micros), pc.less(ts, horizon))
    accepted = pc.and_(accepted, pc.fill_null(on_time, False))
    return columns, accepted.to_numpy(zero_copy_only=False)


def _vectorised(
    lines: Lines, source: Source, start_micros: int, lateness_micros: int
) -> tuple[np.ndarray, dict[str, pa.Array]]:
    """Indices of the lines the vectorised path accepts and their typed columns."""
    table = _parse(lines.buffer, source, len(lines))
    if table is not None:
        indices = np.arange(len(lines))
    else:
        array = lines.array()
        shaped = pc.match_substring_regex(array, shape_pattern(source).replace(r"\z", r"\n\z"))
        indices = np.flatnonzero(shaped.to_numpy(zero_copy_only=False))
        if not len(indices):
            return indices, {}
        view = memoryview(lines.buffer)
        buffer = b"".join(view[lines.offsets[i] : lines.offsets[i + 1]] for i in indices)
        table = _parse(buffer, source, len(indices))
        if table is None:
            return np.arange(0), {}
    columns, accepted = _accepted(table, source, start_micros, lateness_micros)
    if accepted.all():
        return indices, columns
    keep = pa.array(np.flatnonzero(accepted))
    return indices[accepted], {name: column.take(keep) for name, column in columns.items()}


@dataclass
class Classified:
    """A partition's lines sorted into curated candidates and quarantined rows.

    Attributes:
        curated: Curated candidates (timestamps as epoch micros), before deduplication:
            the vectorised path's rows, then the contract path's.
        lines: The partition's lines.
        fast: Indices of the lines the vectorised path accepted.
        rescued_raw: Lines the contract path curated.
        quarantine: Quarantined rows (:data:`QUARANTINE_ARROW_SCHEMA`).
    """

    curated: pa.Table
    lines: Lines
    fast: np.ndarray
    rescued_raw: list[bytes]
    quarantine: pa.Table

    @property
    def records_read(self) -> int:
        """Non-blank lines."""
        return len(self.lines)

    @property
    def vectorised(self) -> int:
        """Lines the vectorised path accepted."""
        return len(self.fast)

    def raw_lines(self) -> pa.Array:
        """The raw line of each curated candidate, without its newline (in row order)."""
        taken = self.lines.array().take(pa.array(self.fast, pa.int64()))
        fast = pc.binary_slice(taken, 0, -1) if len(taken) else taken
        return pa.concat_arrays([fast, pa.array(self.rescued_raw, pa.large_binary())])


def classify_partition(
    lines: Lines, source: Source, start_micros: int, lateness: timedelta
) -> Classified:
    """Classify a partition's lines: the vectorised path, then the contract for the rest."""
    lateness_micros = lateness // _MICROSECOND
    fast, columns = _vectorised(lines, source, start_micros, lateness_micros)
    rest = np.ones(len(lines), bool)
    rest[fast] = False
    partition_start = _EPOCH + start_micros * _MICROSECOND
    specs = SCHEMAS[source]
    rescued: dict[str, list[Any]] = {spec.name: [] for spec in specs}
    rescued_raw: list[bytes] = []
    quarantine: dict[str, list[Any]] = {name: [] for name in QUARANTINE_ARROW_SCHEMA.names}
    for index in np.flatnonzero(rest):
        line = lines.line(index)
        record, problem = classify_line(source, line, partition_start, lateness)
        if problem is None:
            for spec in specs:
                rescued[spec.name].append(to_column_value(spec.type, record.get(spec.name)))
            rescued_raw.append(line)
        else:
            quarantine[RAW_LINE].append(line.decode("utf-8", "replace"))
            quarantine[REASON].append(problem[0])
            quarantine[FIELD].append(problem[1])
            quarantine[DETAIL].append(problem[2])
    typed = {
        spec.name: pa.concat_arrays(
            [
                columns[spec.name].cast(_micros_type(spec))
                if spec.name in columns
                else pa.array([], _micros_type(spec)),
                pa.array(rescued[spec.name], _micros_type(spec)),
            ]
        )
        for spec in specs
    }
    return Classified(
        curated=pa.table(typed),
        lines=lines,
        fast=fast,
        rescued_raw=rescued_raw,
        quarantine=pa.table(quarantine, schema=QUARANTINE_ARROW_SCHEMA),
    )


def _micros_type(spec: Field) -> pa.DataType:
    return pa.int64() if spec.type is FieldType.TIMESTAMP else _READ_TYPES[spec.type]


def first_copies(classified: Classified) -> tuple[pa.Table, int, np.ndarray]:
    """Curated candidates with one row per ``event_id`` (the smallest raw line).

    Returns:
        The kept rows, how many were dropped, and the sorted :func:`id_hashes` of the kept
        ids (distinct hashes prove distinct ids; only equal hashes are compared exactly).
    """
    curated = classified.curated
    hashes = np.sort(id_hashes(curated.column("event_id")))
    if not (hashes[1:] == hashes[:-1]).any():
        return curated, 0, hashes
    keys = pa.table({"event_id": curated.column("event_id"), "raw": classified.raw_lines()})
    order = pc.sort_indices(keys, sort_keys=[("event_id", "ascending"), ("raw", "ascending")])
    ids = keys.column("event_id").take(order).to_numpy(zero_copy_only=False)
    first = np.ones(len(ids), bool)
    first[1:] = ids[1:] != ids[:-1]
    kept = curated.take(pa.array(np.sort(order.to_numpy()[first])))
    return kept, curated.num_rows - kept.num_rows, np.sort(id_hashes(kept.column("event_id")))


def curated_table(curated: pa.Table, source: Source) -> pa.Table:
    """Rows in the curated schema (timestamps UTC), sorted by domain and ``event_id``."""
    schema = curated_arrow_schema(source)
    columns = [curated.column(f.name).cast(f.type) for f in schema]
    table = pa.Table.from_arrays(columns, schema=schema)
    keys = [("domain", "ascending")] if has_domain(source) else []
    return table.sort_by([*keys, ("event_id", "ascending")])


def write_curated_file(table: pa.Table, path: Path) -> None:
    """One curated Parquet file; ``event_id`` (all values distinct) without a dictionary."""
    dictionary = [name for name in table.column_names if name != "event_id"]
    pq.write_table(table, path, compression="snappy", use_dictionary=dictionary)


def write_curated(table: pa.Table, directory: Path, source: Source) -> None:
    """One file per output directory (``domain=`` subdirectories where there is a domain)."""
    directory.mkdir(parents=True, exist_ok=True)
    if not has_domain(source):
        if table.num_rows:
            write_curated_file(table, directory / PART_FILE)
        return
    domains = table.column("domain")
    for domain in pc.unique(domains).to_pylist():
        target = directory / f"domain={domain}"
        target.mkdir()
        write_curated_file(
            table.filter(pc.equal(domains, domain)).drop_columns(["domain"]), target / PART_FILE
        )


def write_quarantine(table: pa.Table, directory: Path) -> None:
    """The partition's quarantined rows, sorted by reason and raw line (maybe none)."""
    directory.mkdir(parents=True, exist_ok=True)
    table = table.sort_by([(REASON, "ascending"), (RAW_LINE, "ascending")])
    pq.write_table(table, directory / PART_FILE, compression="snappy")


_MIX = np.uint64(0x9E3779B97F4A7C15)


def _words(ids: pa.LargeBinaryArray, lengths: np.ndarray) -> np.ndarray:
    """``ids`` as rows of little-endian 64-bit words, zero-padded (``count x words``)."""
    count = len(ids)
    width = max(8, -(-int(lengths.max()) // 8) * 8)
    offsets = np.frombuffer(ids.buffers()[1], np.int64, count + 1, ids.offset * 8)
    data = ids.buffers()[2]
    raw = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    if (lengths == width).all():
        matrix = raw[offsets[0] : offsets[-1]].reshape(count, width)
    else:
        # Scatter each string's bytes into its zero-padded row.
        matrix = np.zeros((count, width), np.uint8)
        rows = np.repeat(np.arange(count), lengths)
        cols = np.arange(offsets[-1] - offsets[0]) - np.repeat(offsets[:-1] - offsets[0], lengths)
        matrix[rows, cols] = raw[offsets[0] : offsets[-1]]
    return np.ascontiguousarray(matrix).view("<u8")


def id_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each string of ``ids`` (``uint64``), the same in every process.

    Computed over the bytes with NumPy (eight bytes at a time, multiply and xor-shift), for
    telling a batch's ids apart without moving the strings: equal hashes are candidates
    that the job then compares exactly. A string's hash depends on its bytes only.
    """
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    if len(ids) == 0:
        return np.empty(0, np.uint64)
    lengths = pc.binary_length(ids).to_numpy(zero_copy_only=False).astype(np.int64)
    width = max(8, -(-int(lengths.max()) // 8) * 8)
    if pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type):
        # Right-padded with NULs to one width, the bytes reshape without a scatter (when
        # every id is ASCII, as ids are; otherwise the padding is by characters).
        ids = pc.utf8_rpad(ids, width=width, padding="\x00")
    ids = ids.cast(pa.large_binary())
    words = _words(ids, pc.binary_length(ids).to_numpy(zero_copy_only=False).astype(np.int64))
    hashes = lengths.astype(np.uint64) * _MIX
    with np.errstate(over="ignore"):
        for column in range(width // 8):
            mixed = (hashes ^ words[:, column]) * _MIX
            mixed ^= mixed >> np.uint64(29)
            # Only a string's own words count: the hash must not depend on other strings.
            hashes = np.where(lengths > 8 * column, mixed, hashes)
    return hashes


@dataclass
class PartitionOutcome:
    """What a task did with one landing partition (before cross-partition duplicates).

    Attributes:
        start_micros: Start of the partition's hour, epoch microseconds.
        records_read: Non-blank lines.
        curated: Rows written to the staged curated files.
        duplicates_dropped: Copies of an id repeated within the partition.
        quarantined_by_reason: Quarantined rows per reason code.
        vectorised: Lines the vectorised path accepted (the rest went through the contract).
        id_hashes: :func:`id_hashes` of the curated ids, sorted (not serialised to JSON).
    """

    start_micros: int
    records_read: int
    curated: int
    duplicates_dropped: int
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    vectorised: int = 0
    id_hashes: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64), repr=False)

    def to_json(self) -> str:
        figures = {k: v for k, v in self.__dict__.items() if k != "id_hashes"}
        return json.dumps(figures)


def curate_partition(
    source: Source,
    start_micros: int,
    files: list[str],
    curated_dir: Path,
    quarantine_dir: Path,
    lateness: timedelta,
) -> PartitionOutcome:
    """Read, classify, deduplicate within, and write one landing partition (one Spark task).

    Args:
        source: Landing source.
        start_micros: Start of the partition's hour, epoch microseconds.
        files: The partition's gzip files.
        curated_dir: Staged curated directory of the partition (created).
        quarantine_dir: Staged quarantine directory of the partition (created).
        lateness: Allowed lateness.
    """
    lines = read_partition(files)
    classified = classify_partition(lines, source, start_micros, lateness)
    kept, repeated, hashes = first_copies(classified)
    table = curated_table(kept, source)
    write_curated(table, curated_dir, source)
    write_quarantine(classified.quarantine, quarantine_dir)
    reasons = Counter(classified.quarantine.column(REASON).to_pylist())
    return PartitionOutcome(
        start_micros=start_micros,
        records_read=classified.records_read,
        curated=kept.num_rows,
        duplicates_dropped=repeated,
        quarantined_by_reason=dict(sorted(reasons.items())),
        vectorised=classified.vectorised,
        id_hashes=hashes,
    )


@dataclass(frozen=True)
class PartitionTask:
    """One landing partition for a task: where to read it and where to stage its outputs."""

    source: Source
    start_micros: int
    files: tuple[str, ...]
    curated_dir: str
    quarantine_dir: str

    @property
    def size(self) -> int:
        return sum(Path(path).stat().st_size for path in self.files)


class Weighed(Protocol):
    """A task with a size in bytes (what :func:`balanced_slots` balances)."""

    @property
    def size(self) -> int: ...


def balanced_slots(tasks: Sequence[Weighed], slots: int) -> list[list[int]]:
    """Indices of ``tasks`` per slot, largest first to the least loaded slot (LPT).

    Spark pays tens of milliseconds per task and Python worker round trip, more than a small
    partition costs: a few balanced tasks carrying many partitions each cost less.
    """
    sizes = [task.size for task in tasks]
    loads = [0] * max(1, min(slots, len(tasks)))
    assigned: list[list[int]] = [[] for _ in loads]
    for index in sorted(range(len(tasks)), key=lambda i: (-sizes[i], i)):
        slot = loads.index(min(loads))
        assigned[slot].append(index)
        loads[slot] += sizes[index] + 1
    return assigned


OUTCOME_SCHEMA = pa.schema(
    [("task", pa.int32()), ("outcome", pa.string()), ("id_hashes", pa.binary())]
)
"""The rows of :func:`run_slot`."""


def run_slot(
    tasks: list[PartitionTask], indices: list[int], lateness: timedelta
) -> list[tuple[int, str, bytes]]:
    """Run :func:`curate_partition` for ``tasks[i]`` of each index, in order.

    Returns:
        Per task: its index, its :class:`PartitionOutcome` as JSON, its sorted id hashes as
        bytes.
    """
    reports = []
    for index in indices:
        task = tasks[index]
        outcome = curate_partition(
            task.source,
            task.start_micros,
            list(task.files),
            Path(task.curated_dir),
            Path(task.quarantine_dir),
            lateness,
        )
        reports.append((index, outcome.to_json(), outcome.id_hashes.tobytes()))
    return reports
