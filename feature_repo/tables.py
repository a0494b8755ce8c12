"""The offline feature tables, declared once: names, keys, timestamps, columns and paths.

The Spark build (:mod:`feature_repo.pipelines`) writes exactly these columns and the Feast
objects read them (all but the few marked ``online=False``), so neither lists a column of its
own. Each table has one entity key,
``event_timestamp`` (UTC, the snapshot time ``T``: every value is computed only from events
with ``ts < T``, and decayed counters are decayed to ``T``) and ``created_timestamp`` (the
end of the build range that wrote the row).

Which rows exist (Feast takes the latest row at or before an entity timestamp, within a TTL):
a row at the first snapshot of every UTC date in the build range for every entity with any
history before it, plus a row at each later snapshot whose grain saw the entity's own
activity. So a TTL of one day always finds a row; between rows, decayed counters are moved
to request time with :func:`feature_repo.decay.decay_to`, from ``event_timestamp``.

Layout (one directory per snapshot hour, so rebuilding a range replaces exactly its hours)::

    <features_root>/<table>/date=YYYY-MM-DD/hour=HH/part-00000.snappy.parquet

``date``/``hour`` are those of ``event_timestamp``; the files do not hold them as columns.

Category vectors are ``array<float>`` over ``FeaturesParams.categories[domain]`` in that order
(default :data:`feature_repo.config.DEFAULT_CATEGORIES`); region vectors follow
:class:`muma.contract.ScreenRegion` order. Vectors of an entity without data are all zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from muma.contract import Domain, ScreenRegion

from .config import FeaturesParams

EVENT_TIMESTAMP = "event_timestamp"
CREATED_TIMESTAMP = "created_timestamp"
USER_ID = "user_id"
ITEM_ID = "item_id"
SEQUENCE_USER_ID = "seq_user_id"
"""Feast join key of the behaviour sequence: a user id, under a name of its own. Feast's Redis
store keys a hash by the join keys' names and values, so the sequence, whose arrays pass
Redis' 64-byte listpack value limit, is kept in a key apart from the user's batch features,
which then stay a compact listpack (see docs/features.md, "Redis memory per user")."""

USER_STATS = "user_hourly_stats"
ITEM_STATS = "item_hourly_stats"
USER_SOCIAL = "user_social_interest"
USER_GAZE = "user_gaze_attention"
USER_SEQUENCE = "user_click_sequence"

DOMAINS: tuple[Domain, ...] = tuple(Domain)
"""Domain order of the per-domain column groups."""

REGIONS: tuple[str, ...] = tuple(region.value for region in ScreenRegion)
"""Order of ``gaze_region_share``."""


class Dtype(StrEnum):
    """Column types, spelt as Spark DDL (Parquet: double, float, int64, string, lists)."""

    DOUBLE = "double"
    FLOAT = "float"
    BIGINT = "bigint"
    STRING = "string"
    FLOAT_ARRAY = "array<float>"
    STRING_ARRAY = "array<string>"
    BIGINT_ARRAY = "array<bigint>"


@dataclass(frozen=True, slots=True)
class FeatureColumn:
    """One feature column: name, type and a line of documentation.

    ``online=False`` keeps a column in the offline table only: it is not in the Feast view,
    so it is neither materialised nor joined into training sets.
    """

    name: str
    dtype: Dtype
    doc: str
    online: bool = True


@dataclass(frozen=True, slots=True)
class FeatureTable:
    """One offline feature table.

    Attributes:
        name: Table (and directory) name.
        entity_key: Entity key column of the files (and of the rows training sets join).
        features: Feature columns in file order (after key and timestamps).
        doc: What a row holds.
        timestamp_column: Event timestamp column (the snapshot time).
        created_column: Created timestamp column (tie-breaker for equal event timestamps).
        feast_key: The Feast view's join key when it is not ``entity_key``: the file source
            maps ``entity_key`` to it, and the view's online rows are keyed by it.
    """

    name: str
    entity_key: str
    features: tuple[FeatureColumn, ...]
    doc: str
    timestamp_column: str = EVENT_TIMESTAMP
    created_column: str = CREATED_TIMESTAMP
    feast_key: str | None = None

    @property
    def join_key(self) -> str:
        """The key Feast joins and stores the view on (``feast_key``, else ``entity_key``)."""
        return self.feast_key or self.entity_key

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature column of the files."""
        return tuple(column.name for column in self.features)

    @property
    def view_features(self) -> tuple[FeatureColumn, ...]:
        """The feature columns of the Feast view (online and in training sets)."""
        return tuple(column for column in self.features if column.online)

    @property
    def view_feature_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.view_features)

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column of the files, in order."""
        return (self.entity_key, self.timestamp_column, self.created_column, *self.feature_names)

    def column(self, name: str) -> FeatureColumn:
        for candidate in self.features:
            if candidate.name == name:
                return candidate
        raise KeyError(f"{self.name} has no feature {name!r}")


def _user_stats(params: FeaturesParams) -> FeatureTable:
    columns: list[FeatureColumn] = []
    for domain in DOMAINS:
        for h in params.half_lives_hours:
            columns += [
                FeatureColumn(
                    f"{domain}_impressions_{h}h",
                    Dtype.DOUBLE,
                    f"{domain} impressions shown to the user, decayed (half-life {h} h) to T",
                ),
                FeatureColumn(
                    f"{domain}_clicks_{h}h",
                    Dtype.DOUBLE,
                    f"{domain} clicks by the user (click time), decayed (half-life {h} h) to T",
                ),
                FeatureColumn(
                    f"{domain}_ctr_{h}h",
                    Dtype.DOUBLE,
                    f"user's {domain} CTR at half-life {h} h, smoothed toward the {domain} "
                    "mean: (clicks + m * domain_ctr) / (impressions + m)",
                ),
                FeatureColumn(
                    f"{domain}_views_{h}h",
                    Dtype.DOUBLE,
                    f"{domain} views (dwell events) by the user, decayed (half-life {h} h)",
                ),
                FeatureColumn(
                    f"{domain}_dwell_ms_{h}h",
                    Dtype.DOUBLE,
                    f"decay-weighted mean dwell in ms of the user's {domain} views "
                    f"(half-life {h} h); null without views",
                ),
                FeatureColumn(
                    f"{domain}_completion_{h}h",
                    Dtype.DOUBLE,
                    f"decay-weighted mean completion ratio of the user's {domain} views "
                    f"(half-life {h} h); null without views",
                ),
            ]
        columns += [
            FeatureColumn(
                f"{domain}_hours_since_click",
                Dtype.DOUBLE,
                f"hours from the user's last {domain} click before T to T; null if none",
            ),
            FeatureColumn(
                f"{domain}_category_interest",
                Dtype.FLOAT_ARRAY,
                f"user's {domain} clicks per category (vocabulary order), decayed with the "
                "interest half-life, normalised to sum 1 (zeros without clicks)",
            ),
        ]
    return FeatureTable(
        USER_STATS,
        USER_ID,
        tuple(columns),
        "per-domain decayed activity, smoothed CTR, dwell, recency and category interest",
    )


def _item_stats(params: FeaturesParams) -> FeatureTable:
    columns = [
        FeatureColumn("domain", Dtype.STRING, "item's content domain"),
        FeatureColumn("category", Dtype.STRING, "item's editorial category"),
        FeatureColumn("creator_id", Dtype.STRING, "item's author, channel or advertiser"),
        FeatureColumn("age_hours", Dtype.DOUBLE, "freshness: hours from publication to T"),
    ]
    for h in params.half_lives_hours:
        columns += [
            FeatureColumn(
                f"impressions_{h}h",
                Dtype.DOUBLE,
                f"popularity: impressions of the item, decayed (half-life {h} h) to T",
            ),
            FeatureColumn(
                f"clicks_{h}h",
                Dtype.DOUBLE,
                f"clicks on the item (click time), decayed (half-life {h} h) to T",
            ),
            FeatureColumn(
                f"ctr_{h}h",
                Dtype.DOUBLE,
                f"item CTR at half-life {h} h, smoothed toward its domain's CTR: "
                "(clicks + m * domain_ctr) / (impressions + m)",
            ),
            FeatureColumn(
                f"domain_ctr_{h}h",
                Dtype.DOUBLE,
                f"CTR of the item's whole domain at half-life {h} h (the smoothing prior)",
            ),
            FeatureColumn(
                f"creator_ctr_{h}h",
                Dtype.DOUBLE,
                f"CTR of all the creator's items at half-life {h} h, smoothed likewise",
            ),
        ]
    return FeatureTable(
        ITEM_STATS,
        ITEM_ID,
        tuple(columns),
        "item popularity, smoothed CTR, freshness and creator CTR",
    )


def _user_social(params: FeaturesParams) -> FeatureTable:
    columns = [
        FeatureColumn(
            "friend_count",
            Dtype.BIGINT,
            "users in the user's circle at T: friend and family edges either way, "
            "follow edges from the user; the latest added/removed action before T counts",
        )
    ]
    columns += [
        FeatureColumn(
            f"{domain}_friends_category_interest",
            Dtype.FLOAT_ARRAY,
            f"the circle's pooled {domain} clicks per category, decayed with the interest "
            "half-life, normalised to sum 1 (zeros without any)",
        )
        for domain in DOMAINS
    ]
    return FeatureTable(
        USER_SOCIAL, USER_ID, tuple(columns), "the user's circle and its category interests"
    )


def _user_gaze(params: FeaturesParams) -> FeatureTable:
    columns = [
        FeatureColumn(
            "gaze_fixation_ms",
            Dtype.DOUBLE,
            "eye-tracking fixation ms of the user, decayed with the interest half-life",
        ),
        FeatureColumn(
            "gaze_region_share",
            Dtype.FLOAT_ARRAY,
            "share of decayed fixation time per screen region (ScreenRegion order)",
        ),
    ]
    columns += [
        FeatureColumn(
            f"{domain}_gaze_category_share",
            Dtype.FLOAT_ARRAY,
            f"share of the user's decayed {domain} fixation time per category (vocabulary "
            "order; zeros without any)",
        )
        for domain in DOMAINS
    ]
    return FeatureTable(
        USER_GAZE,
        USER_ID,
        tuple(columns),
        "eye-tracking attention (gaze panel users only)",
    )


def _user_sequence(params: FeaturesParams) -> FeatureTable:
    """The behaviour sequence, served under :data:`SEQUENCE_USER_ID` (its own Redis key).

    The domains and categories stay offline: no model or server reads them (an item's
    domain and category come with its item row), and online they would double the
    sequence's bytes and go stale when serving puts a new click in front.
    """
    n = params.sequence_length
    columns = (
        FeatureColumn(
            "seq_item_ids", Dtype.STRING_ARRAY, f"last {n} clicked items before T, newest first"
        ),
        FeatureColumn("seq_ts", Dtype.BIGINT_ARRAY, "their click times, epoch seconds"),
        FeatureColumn("seq_domains", Dtype.STRING_ARRAY, "their domains", online=False),
        FeatureColumn("seq_categories", Dtype.STRING_ARRAY, "their categories", online=False),
        FeatureColumn("seq_length", Dtype.BIGINT, f"length of the arrays (at most {n})"),
    )
    return FeatureTable(
        USER_SEQUENCE,
        USER_ID,
        columns,
        "behaviour sequence for the sequence model",
        feast_key=SEQUENCE_USER_ID,
    )


def feature_tables(params: FeaturesParams | None = None) -> dict[str, FeatureTable]:
    """Every offline feature table by name, for ``params`` (default: the defaults).

    Half-lives and the sequence length come from ``params``, so a Feast repository must
    build its views from the same ``features`` section the Spark build used.
    """
    params = params or FeaturesParams()
    tables = (
        _user_stats(params),
        _item_stats(params),
        _user_social(params),
        _user_gaze(params),
        _user_sequence(params),
    )
    return {table.name: table for table in tables}


def table_dir(features_root: Path, table: str) -> Path:
    """``<features_root>/<table>``: the path a Feast file source reads."""
    return Path(features_root) / table


def partition_dir(features_root: Path, table: str, event_timestamp: datetime) -> Path:
    """``<features_root>/<table>/date=YYYY-MM-DD/hour=HH`` of a snapshot time (aware)."""
    if event_timestamp.tzinfo is None:
        raise ValueError("event_timestamp must be timezone-aware")
    ts = event_timestamp.astimezone(UTC)
    return table_dir(features_root, table) / f"date={ts:%Y-%m-%d}" / f"hour={ts:%H}"
