"""Spark feature build: values recomputed by hand, point-in-time correctness, sequences, reruns."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_repo.config import FeaturesParams
from feature_repo.decay import decay_weight, spark_decay_weight
from feature_repo.pipelines import FeatureBuildResult, build_features
from feature_repo.pipelines.common import chunks
from feature_repo.pipelines.events import CatalogError
from feature_repo.tables import (
    ITEM_STATS,
    REGIONS,
    USER_GAZE,
    USER_SEQUENCE,
    USER_SOCIAL,
    USER_STATS,
    feature_tables,
    partition_dir,
    table_dir,
)
from ingest.config import IngestParams
from ingest.interactions import build_interactions
from ingest.job import ingest_partition
from muma.contract import Domain, Source
from simulator.config import SimulatorConfig
from simulator.logs import hours_between, simulate

FIRST_HOUR = datetime(2026, 11, 1, 16, tzinfo=UTC)
HOURS = list(hours_between(FIRST_HOUR, FIRST_HOUR + timedelta(hours=3)))
START, END = HOURS[1], HOURS[-1] + timedelta(hours=1)
SNAPSHOTS = [START + timedelta(hours=1), END]
PARAMS = FeaturesParams(sequence_length=3, ctr_prior_strength=10.0)
INGEST = IngestParams()


@dataclass
class Built:
    curated_root: Path
    features_root: Path
    result: FeatureBuildResult


def _ts(series: pd.Series) -> np.ndarray:
    """Epoch seconds of a timestamp column."""
    return series.astype("datetime64[us, UTC]").astype("int64").to_numpy() / 1e6


def read_table(root: Path, table: str) -> pd.DataFrame:
    frame = pq.read_table(table_dir(root, table)).to_pandas()
    return frame.drop(columns=["date", "hour"]).sort_values(
        [frame.columns[0], "event_timestamp"], ignore_index=True
    )


def curated(root: Path, source: str) -> pd.DataFrame:
    frame = pq.read_table(root / source).to_pandas()
    for column in ("domain", "date", "hour"):
        if column in frame and isinstance(frame[column].dtype, pd.CategoricalDtype):
            frame[column] = frame[column].astype(str)
    return frame


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("features")
    config = SimulatorConfig(users=300, items=300, gaze_panel_share=0.2)
    simulate(config, 11, HOURS[0], HOURS[-1] + timedelta(hours=1), root / "landing")
    curated_root = root / "curated"
    for hour in HOURS:
        for source in Source:
            ingest_partition(spark, root / "landing", curated_root, source, hour, INGEST)
    for hour in HOURS:
        build_interactions(spark, curated_root, hour, INGEST)
    result = build_features(spark, curated_root, root / "features", START, END, PARAMS)
    return Built(curated_root, root / "features", result)


@pytest.fixture(scope="module")
def history(built: Built) -> dict[str, pd.DataFrame]:
    """Curated events as pandas, with catalog attributes and epoch-second times."""
    items = curated(built.curated_root, Source.ITEMS)
    catalog = items.sort_values(["ts", "event_id"]).groupby("item_id").tail(1)
    catalog = catalog[["item_id", "domain", "category", "creator_id", "publish_ts"]]
    interactions = curated(built.curated_root, "interactions").merge(
        catalog[["item_id", "category", "creator_id"]], on="item_id", how="left"
    )
    interactions["ts_s"] = _ts(interactions["ts"])
    clicks = interactions[interactions["clicked"]].copy()
    clicks["ts_s"] = _ts(clicks["click_ts"])
    views = curated(built.curated_root, Source.VIEWS).merge(
        catalog[["item_id", "domain", "category"]], on="item_id"
    )
    views["ts_s"] = _ts(views["ts"])
    gaze = curated(built.curated_root, Source.GAZE).merge(
        catalog[["item_id", "domain", "category"]], on="item_id"
    )
    gaze["ts_s"] = _ts(gaze["ts"])
    edges = curated(built.curated_root, Source.SOCIAL_EDGES)
    edges["ts_s"] = _ts(edges["ts"])
    catalog = catalog.assign(publish_s=_ts(catalog["publish_ts"]))
    return {
        "impressions": interactions,
        "clicks": clicks,
        "views": views,
        "gaze": gaze,
        "edges": edges,
        "catalog": catalog,
    }


def decayed(events: pd.DataFrame, snapshot: float, half_life: float, value=None) -> float:
    before = events[events["ts_s"] < snapshot]
    weights = decay_weight(snapshot - before["ts_s"].to_numpy(), half_life)
    values = 1.0 if value is None else before[value].to_numpy(dtype=float)
    return float(np.sum(weights * values))


def shares(events: pd.DataFrame, snapshot: float, column: str, names, value=None) -> np.ndarray:
    parts = np.array(
        [
            decayed(
                events[events[column] == name], snapshot, PARAMS.interest_half_life_hours, value
            )
            for name in names
        ]
    )
    return parts / parts.sum() if parts.sum() > 0 else parts


def where(frame: pd.DataFrame, **equal) -> pd.DataFrame:
    """Rows of ``frame`` whose columns equal the given values."""
    mask = np.ones(len(frame), dtype=bool)
    for column, value in equal.items():
        mask &= (frame[column] == value).to_numpy()
    return frame[mask]


def smoothed(clicks: float, impressions: float, prior: float) -> float:
    m = PARAMS.ctr_prior_strength
    return (clicks + m * prior) / (impressions + m)


def test_ranges_are_cut_per_utc_day_and_checked():
    day = datetime(2026, 11, 1, tzinfo=UTC)
    cut = list(chunks(day + timedelta(hours=20), day + timedelta(days=1, hours=3), 1))
    assert [(c.start.hour, c.end.hour, len(c.snapshots)) for c in cut] == [(20, 0, 4), (0, 3, 3)]
    assert cut[0].snapshots[-1] == cut[1].start
    with pytest.raises(ValueError, match="multiples of 6"):
        list(chunks(day + timedelta(hours=1), day + timedelta(hours=12), 6))
    with pytest.raises(ValueError, match="timezone"):
        list(chunks(datetime(2026, 11, 1), day + timedelta(hours=1), 1))
    with pytest.raises(ValueError, match="empty range"):
        list(chunks(day, day, 1))


def test_spark_and_python_decay_agree(spark):
    ages = np.concatenate(
        [[0.0, 1e-6, 1.0, 3599.999], np.random.default_rng(5).uniform(0, 4e7, 2000)]
    )
    frame = spark.createDataFrame(pd.DataFrame({"age": ages}))
    for half_life in (0.25, 1, 24, 168):
        got = np.array(
            [row[0] for row in frame.select(spark_decay_weight("age", half_life)).collect()]
        )
        np.testing.assert_allclose(got, decay_weight(ages, half_life), rtol=1e-9, atol=1e-300)


def test_spark_decay_refuses_negative_ages(spark):
    frame = spark.createDataFrame(pd.DataFrame({"age": [10.0, -1.0]}))
    with pytest.raises(Exception, match="negative age"):
        frame.select(spark_decay_weight("age", 24)).collect()


def test_every_table_has_declared_columns_and_snapshot_layout(built: Built):
    for name, table in feature_tables(PARAMS).items():
        for snapshot in SNAPSHOTS:
            directory = partition_dir(built.features_root, name, snapshot)
            assert directory.is_dir(), directory
            for path in directory.glob("*.parquet"):
                assert tuple(pq.read_schema(path).names) == table.columns
                stamps = pq.read_table(path, columns=["event_timestamp"])["event_timestamp"]
                assert set(stamps.to_pylist()) == {snapshot}
        assert built.result.tables[name].rows == len(read_table(built.features_root, name))
    assert built.result.tables[USER_STATS].rows > 0
    assert built.result.tables[USER_GAZE].rows > 0
    assert built.result.tables[USER_STATS].max_row_bytes < 1024


def test_user_stats_equal_a_recomputation_by_hand(built: Built, history):
    rows = read_table(built.features_root, USER_STATS)
    imps, clicks, views = history["impressions"], history["clicks"], history["views"]
    checked = 0
    for row in rows.sample(6, random_state=0).itertuples(index=False):
        row = row._asdict()
        t = row["event_timestamp"].timestamp()
        for domain in Domain:
            user = {"user_id": row["user_id"], "domain": domain}
            for h in PARAMS.half_lives_hours:
                prior = decayed(clicks[clicks["domain"] == domain], t, h) / decayed(
                    imps[imps["domain"] == domain], t, h
                )
                n_imp, n_clk = (
                    decayed(where(imps, **user), t, h),
                    decayed(where(clicks, **user), t, h),
                )
                n_view = decayed(where(views, **user), t, h)
                assert row[f"{domain}_impressions_{h}h"] == pytest.approx(
                    n_imp, rel=1e-9, abs=1e-12
                )
                assert row[f"{domain}_clicks_{h}h"] == pytest.approx(n_clk, rel=1e-9, abs=1e-12)
                assert row[f"{domain}_ctr_{h}h"] == pytest.approx(
                    smoothed(n_clk, n_imp, prior), rel=1e-9
                )
                assert row[f"{domain}_views_{h}h"] == pytest.approx(n_view, rel=1e-9, abs=1e-12)
                if n_view > 0:
                    dwell = decayed(where(views, **user), t, h, "dwell_ms") / n_view
                    assert row[f"{domain}_dwell_ms_{h}h"] == pytest.approx(dwell, rel=1e-9)
                else:
                    assert pd.isna(row[f"{domain}_dwell_ms_{h}h"])
            last = where(clicks, **user)["ts_s"]
            last = last[last < t]
            expected = (t - last.max()) / 3600 if len(last) else None
            got = row[f"{domain}_hours_since_click"]
            assert (pd.isna(got) and expected is None) or got == pytest.approx(expected, rel=1e-9)
            interest = shares(where(clicks, **user), t, "category", PARAMS.vocabulary(domain))
            np.testing.assert_allclose(row[f"{domain}_category_interest"], interest, atol=1e-6)
            checked += int(n_imp > 0)
    assert checked > 0


def test_item_stats_equal_a_recomputation_by_hand(built: Built, history):
    rows = read_table(built.features_root, ITEM_STATS)
    imps, clicks, catalog = history["impressions"], history["clicks"], history["catalog"]
    for row in rows.sample(8, random_state=1).itertuples(index=False):
        row = row._asdict()
        t = row["event_timestamp"].timestamp()
        item = catalog.set_index("item_id").loc[row["item_id"]]
        assert (row["domain"], row["category"], row["creator_id"]) == (
            item["domain"],
            item["category"],
            item["creator_id"],
        )
        assert row["age_hours"] == pytest.approx((t - item["publish_s"]) / 3600, rel=1e-9)
        for h in PARAMS.half_lives_hours:
            prior = decayed(where(clicks, domain=item["domain"]), t, h) / decayed(
                where(imps, domain=item["domain"]), t, h
            )
            n_imp = decayed(imps[imps["item_id"] == row["item_id"]], t, h)
            n_clk = decayed(clicks[clicks["item_id"] == row["item_id"]], t, h)
            c_imp, c_clk = (
                decayed(where(imps, creator_id=item["creator_id"]), t, h),
                decayed(where(clicks, creator_id=item["creator_id"]), t, h),
            )
            assert row[f"impressions_{h}h"] == pytest.approx(n_imp, rel=1e-9)
            assert row[f"clicks_{h}h"] == pytest.approx(n_clk, rel=1e-9, abs=1e-12)
            assert row[f"domain_ctr_{h}h"] == pytest.approx(prior, rel=1e-9)
            assert row[f"ctr_{h}h"] == pytest.approx(smoothed(n_clk, n_imp, prior), rel=1e-9)
            assert row[f"creator_ctr_{h}h"] == pytest.approx(
                smoothed(c_clk, c_imp, prior), rel=1e-9
            )


def _circle(edges: pd.DataFrame, user: str, t: float) -> set[str]:
    before = edges[edges["ts_s"] < t].sort_values(["ts_s", "action", "relation"])
    state = before.groupby(["user_id", "friend_id"]).tail(1)
    alive = state[state["action"] == "added"]
    members = set(alive.loc[alive["user_id"] == user, "friend_id"])
    symmetric = alive[alive["relation"].isin(["friend", "family"])]
    members |= set(symmetric.loc[symmetric["friend_id"] == user, "user_id"])
    return members - {user}


def test_social_and_gaze_equal_a_recomputation_by_hand(built: Built, history):
    social = read_table(built.features_root, USER_SOCIAL)
    clicks = history["clicks"]
    for row in social.sample(5, random_state=2).itertuples(index=False):
        row = row._asdict()
        t = row["event_timestamp"].timestamp()
        circle = _circle(history["edges"], row["user_id"], t)
        assert row["friend_count"] == len(circle)
        pooled = clicks[clicks["user_id"].isin(circle)]
        for domain in Domain:
            expected = shares(
                pooled[pooled["domain"] == domain], t, "category", PARAMS.vocabulary(domain)
            )
            np.testing.assert_allclose(
                row[f"{domain}_friends_category_interest"], expected, atol=1e-6
            )
    gaze_rows = read_table(built.features_root, USER_GAZE)
    gaze = history["gaze"]
    for row in gaze_rows.head(5).itertuples(index=False):
        row = row._asdict()
        t = row["event_timestamp"].timestamp()
        mine = gaze[gaze["user_id"] == row["user_id"]]
        total = decayed(mine, t, PARAMS.interest_half_life_hours, "fixation_ms")
        assert row["gaze_fixation_ms"] == pytest.approx(total, rel=1e-9)
        expected = shares(mine, t, "region", REGIONS, "fixation_ms")
        np.testing.assert_allclose(row["gaze_region_share"], expected, atol=1e-6)


def test_sequences_are_newest_first_capped_and_exact(built: Built, history):
    rows = read_table(built.features_root, USER_SEQUENCE)
    clicks = history["clicks"]
    capped = 0
    for row in rows.itertuples(index=False):
        row = row._asdict()
        t = row["event_timestamp"].timestamp()
        mine = clicks[(clicks["user_id"] == row["user_id"]) & (clicks["ts_s"] < t)]
        expected = mine.sort_values(
            ["ts_s", "item_id", "domain", "category"], ascending=False
        ).head(PARAMS.sequence_length)
        assert list(row["seq_item_ids"]) == expected["item_id"].tolist()
        assert list(row["seq_ts"]) == np.floor(expected["ts_s"]).astype(int).tolist()
        assert list(row["seq_domains"]) == expected["domain"].tolist()
        assert row["seq_length"] == len(expected) <= PARAMS.sequence_length
        assert list(row["seq_ts"]) == sorted(row["seq_ts"], reverse=True)
        capped += len(mine) > PARAMS.sequence_length
    assert capped > 0, "no sequence was long enough to be capped"


def snapshot_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*.parquet"))
        if "_staging" not in p.parts
    }


def test_unknown_catalog_category_is_a_clear_error(spark, built: Built, tmp_path):
    narrow = FeaturesParams(categories={**PARAMS.categories, Domain.NEWS: ("politics",)})
    with pytest.raises(CatalogError, match=r"not in features\.categories: news/"):
        build_features(spark, built.curated_root, tmp_path / "features", START, END, narrow)
    assert not (tmp_path / "features" / USER_STATS).exists()


def test_rerun_replaces_the_range_identically(spark, built: Built):
    before = snapshot_files(built.features_root)
    again = build_features(spark, built.curated_root, built.features_root, START, END, PARAMS)
    assert snapshot_files(built.features_root) == before
    assert {n: t.rows for n, t in again.tables.items()} == {
        n: t.rows for n, t in built.result.tables.items()
    }
    assert not any((built.features_root / "_staging").iterdir())


def _append(path: Path, rows: pd.DataFrame) -> None:
    """Add rows to a curated Parquet file, keeping its schema."""
    table = pq.read_table(path)
    extra = pa.Table.from_pandas(
        rows[table.schema.names], schema=table.schema, preserve_index=False
    )
    pq.write_table(pa.concat_tables([table, extra]), path)


def test_events_at_or_after_t_do_not_change_t_rows(spark, built: Built, history, tmp_path):
    """Late label (a click after T on an impression before T) and new events after T."""
    t = SNAPSHOTS[0]
    curated_root = tmp_path / "curated"
    shutil.copytree(built.curated_root, curated_root)
    interactions = curated(curated_root, "interactions")
    before_t = interactions[(interactions["ts"] < t) & ~interactions["clicked"]]
    victim = before_t.iloc[0]
    user, item, domain = victim["user_id"], victim["item_id"], victim["domain"]
    hour = f"{victim['ts']:%H}"
    path = next(
        (
            curated_root / "interactions" / "date=2026-11-01" / f"hour={hour}" / f"domain={domain}"
        ).glob("*.parquet")
    )
    table = pq.read_table(path).to_pandas()
    hit = table["event_id"] == victim["event_id"]
    table.loc[hit, "clicked"] = True
    table.loc[hit, "click_ts"] = pd.Timestamp(t)  # exactly at T: not before T
    pq.write_table(
        pa.Table.from_pandas(table, schema=pq.read_schema(path), preserve_index=False), path
    )
    later = table[hit].assign(
        event_id="late-1",
        ts=pd.Timestamp(t + timedelta(seconds=30)),
        click_ts=pd.Timestamp(t + timedelta(seconds=40)),
    )
    later_dir = (
        curated_root / "interactions" / "date=2026-11-01" / f"hour={t:%H}" / f"domain={domain}"
    )
    later_dir.mkdir(parents=True, exist_ok=True)
    later_path = next(iter(later_dir.glob("*.parquet")), None)
    if later_path is None:
        later_path = later_dir / "part-00000.snappy.parquet"
        pq.write_table(
            pa.Table.from_pandas(
                later[table.columns.drop(["date", "hour", "domain"], errors="ignore")],
                preserve_index=False,
            ),
            later_path,
        )
    else:
        _append(later_path, later)
    gaze_path = next(
        (curated_root / Source.GAZE / "date=2026-11-01" / f"hour={t:%H}").glob("*.parquet")
    )
    gaze_schema = pq.read_schema(gaze_path)
    _append(
        gaze_path,
        pd.DataFrame(
            {
                "event_id": ["late-g"],
                "ts": [pd.Timestamp(t + timedelta(seconds=1))],
                "user_id": [user],
                "item_id": [item],
                "region": [REGIONS[0]],
                "fixation_ms": [900],
                "request_id": [None],
            }
        )[gaze_schema.names],
    )

    features_root = tmp_path / "features"
    build_features(spark, curated_root, features_root, START, END, PARAMS)
    for name in feature_tables(PARAMS):
        original = read_table(built.features_root, name)
        changed = read_table(features_root, name)
        at_t = lambda f: f[f["event_timestamp"] <= t].reset_index(drop=True)  # noqa: E731
        pd.testing.assert_frame_equal(at_t(changed), at_t(original), check_exact=False, rtol=1e-12)
    # The same edits do show up after T: the check above could have failed.
    after = read_table(features_root, USER_STATS)
    original = read_table(built.features_root, USER_STATS)
    key = (after["user_id"] == user) & (after["event_timestamp"] == SNAPSHOTS[1])
    old_key = (original["user_id"] == user) & (original["event_timestamp"] == SNAPSHOTS[1])
    assert (
        after.loc[key, f"{domain}_clicks_1h"].item()
        > original.loc[old_key, f"{domain}_clicks_1h"].sum()
    )
    gaze_after = read_table(features_root, USER_GAZE)
    assert ((gaze_after["user_id"] == user) & (gaze_after["event_timestamp"] == SNAPSHOTS[1])).any()
