"""The real-data frame builder is point-in-time and splits by time.

Every feature of a row (counts, CTRs, recency, the behaviour sequence) must come from events
strictly before the row's impression time, checked against a brute-force recount: on a
hand-made log with same-time impressions (Ciao has day resolution) and on the MIND subset
imported through the real importer, capped to a few hundred behaviour rows.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.featurize import Featurizer
from training.model.config import GraphConfig
from training.realdata import (
    FRAME_COLUMNS,
    ITEM_FEATURES,
    USER_FEATURES,
    RealDataError,
    build_dataset,
    load_dataset,
)

MIND = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mind_small_subset"
T0 = datetime(2026, 1, 1, 7, tzinfo=UTC)


def _log(days: int = 10, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Interactions of 4 users x 6 items at day resolution (several impressions share a ts)."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(days):
        ts = T0 + timedelta(days=day)
        for user in range(4):
            for item in rng.choice(6, size=2, replace=False):
                clicked = bool(rng.random() < 0.5)
                rows.append(
                    {
                        "event_id": f"e{len(rows)}",
                        "ts": ts,
                        "request_id": f"r{len(rows)}",
                        "user_id": f"u{user}",
                        "item_id": f"i{item}",
                        "domain": "news" if item < 3 else "video",
                        "position": 1,
                        "propensity": 0.001,
                        "clicked": clicked,
                        "click_ts": ts + timedelta(seconds=1) if clicked else pd.NaT,
                    }
                )
    interactions = pd.DataFrame(rows)
    items = pd.DataFrame(
        {
            "item_id": [f"i{n}" for n in range(6)],
            "domain": ["news"] * 3 + ["video"] * 3,
            "category": ["a", "b", "a", "c", "c", "d"],
            "creator_id": ["x-unknown"] * 6,
            "ts": [T0] * 6,
        }
    )
    return interactions, items


def _brute_force(interactions: pd.DataFrame, row: pd.Series, length: int) -> dict:
    """The row's features recounted from the raw log, one filter per feature."""
    t = row["ts"]
    earlier = interactions[interactions["ts"] < t]
    clicks = interactions[interactions["clicked"] & (interactions["click_ts"] < t)]
    user_clicks = clicks[clicks["user_id"] == row["user_id"]].sort_values(
        "click_ts", ascending=False, kind="stable"
    )
    return {
        "user_impressions": int((earlier["user_id"] == row["user_id"]).sum()),
        "user_clicks": len(user_clicks),
        "item_impressions": int((earlier["item_id"] == row["item_id"]).sum()),
        "item_clicks": int((clicks["item_id"] == row["item_id"]).sum()),
        "clicks": Counter(
            zip(
                user_clicks["item_id"],
                (int(stamp.timestamp()) for stamp in user_clicks["click_ts"]),
                strict=True,
            )
        ),
        "seq_times": sorted(
            (int(stamp.timestamp()) for stamp in user_clicks["click_ts"].head(length)),
            reverse=True,
        ),
    }


def _check_point_in_time(
    interactions: pd.DataFrame, frame: pd.DataFrame, length: int, with_history: bool = False
) -> None:
    interactions = interactions.assign(
        ts=pd.to_datetime(interactions["ts"], utc=True),
        click_ts=pd.to_datetime(interactions["click_ts"], utc=True),
        clicked=interactions["clicked"].astype(bool),
    )
    for _, row in frame.iterrows():
        expected = _brute_force(interactions, row, length)
        for name in ("user_impressions", "user_clicks", "item_impressions", "item_clicks"):
            assert row[name] == expected[name], (name, row["event_id"])
        request_s = row["ts"].timestamp()
        stamps = list(row["seq_ts"])
        assert all(stamp < request_s for stamp in stamps), row["event_id"]
        assert stamps == sorted(stamps, reverse=True), "sequence must be newest first"
        logged = len(expected["seq_times"])
        assert stamps[:logged] == expected["seq_times"], row["event_id"]
        # Each entry is one of the user's earlier clicks (ties at the cut may pick either).
        pairs = Counter(zip(row["seq_item_ids"][:logged], stamps[:logged], strict=True))
        assert not pairs - expected["clicks"], row["event_id"]
        if not with_history:
            assert len(stamps) == logged
        if row["user_clicks"] == 0:
            assert np.isnan(row["user_hours_since_click"])
        else:
            assert row["user_hours_since_click"] > 0
        assert 0 < row["user_ctr"] < 1 and 0 < row["item_ctr"] < 1


def _check_split(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, ds) -> None:
    assert train["ts"].max() < ds.valid_start <= valid["ts"].min()
    assert valid["ts"].max() < ds.test_start <= test["ts"].min()
    for frame in (train, valid, test):
        assert frame["ts"].is_monotonic_increasing


def test_hand_made_log_is_point_in_time_and_split_by_day() -> None:
    interactions, items = _log()
    ds = build_dataset(
        "hand",
        interactions,
        items,
        pd.DataFrame({"user_id": ["u0"], "friend_id": ["u1"]}),
        sequence_length=3,
        valid_share=0.2,
        test_share=0.2,
        split_unit="day",
        group_requests_by_day=True,
    )
    frame = pd.concat([ds.train, ds.valid, ds.test], ignore_index=True)
    vectors = [
        f"{domain}_{kind}"
        for domain in ("news", "video")
        for kind in ("category_interest", "friends_category_interest", "category_ctr")
    ]
    assert list(frame.columns) == [*FRAME_COLUMNS, *vectors]
    assert ds.category_vectors == {"news": ("a", "b"), "video": ("c", "d")}
    assert ds.user_features == (*USER_FEATURES, *vectors)
    assert len(frame) == len(interactions)
    _check_point_in_time(interactions, frame, length=3)
    _check_split(ds.train, ds.valid, ds.test, ds)
    # The first day sees nothing; same-day impressions never see each other's clicks.
    first = frame[frame["ts"] == T0]
    assert (first["user_impressions"] == 0).all() and first["seq_item_ids"].map(len).eq(0).all()
    # Placeholders never become weights, unknown creators never become graph hubs.
    assert (frame["propensity"] == 1.0).all() and frame["dwell_ms"].isna().all()
    assert frame["creator_id"].isna().all()
    assert (
        frame["request_id"] == frame["user_id"] + "@" + frame["ts"].dt.strftime("%Y-%m-%d")
    ).all()
    # Items first seen after training are not in the catalog unless an item record says so.
    assert set(ds.catalog["item_id"]) == set(items["item_id"])
    assert ds.friendships.shape == (1, 2)


def test_category_vectors_count_own_and_friends_clicks_before_the_impression() -> None:
    """Each row's click shares per category, recounted by brute force from the raw log: the
    user's own clicks and the clicks of the users it links to (u0 -> u1, u2 -> u0), with click
    time strictly before the impression (same-day rows never see each other); and the user's
    smoothed click rate per category."""
    interactions, items = _log(days=6, seed=3)
    edges = pd.DataFrame({"user_id": ["u0", "u2", "u9"], "friend_id": ["u1", "u0", "u0"]})
    ds = build_dataset(
        "hand", interactions, items, edges, valid_share=0.2, test_share=0.2, split_unit="day"
    )
    frame = pd.concat([ds.train, ds.valid, ds.test], ignore_index=True)
    category = dict(zip(items["item_id"], items["category"], strict=True))
    clicks = interactions[interactions["clicked"]].assign(
        category=lambda f: f["item_id"].map(category)
    )
    links = {"u0": ["u1"], "u2": ["u0"]}
    checked = rated = 0
    for _, row in frame.iterrows():
        for domain, names in ds.category_vectors.items():
            for kind, users in (
                ("category_interest", [row["user_id"]]),
                ("friends_category_interest", links.get(row["user_id"], [])),
            ):
                seen = clicks[clicks["user_id"].isin(users) & (clicks["click_ts"] < row["ts"])]
                counts = np.array([(seen["category"] == name).sum() for name in names], float)
                value = row[f"{domain}_{kind}"]
                if counts.sum() == 0:
                    assert value is None
                else:
                    np.testing.assert_allclose(value, counts / counts.sum(), rtol=1e-6)
                    checked += 1
            # The user's click rate per category: own clicks before the impression over own
            # impressions before it, smoothed towards the row's user_ctr.
            mine = interactions[interactions["user_id"] == row["user_id"]]
            shown = mine[mine["ts"] < row["ts"]]["item_id"].map(category)
            liked = mine[mine["clicked"] & (mine["click_ts"] < row["ts"])]["item_id"].map(category)
            shows = np.array([(shown == name).sum() for name in names], float)
            likes = np.array([(liked == name).sum() for name in names], float)
            value = row[f"{domain}_category_ctr"]
            if shows.sum() == 0:
                assert value is None
            else:
                expected = (likes + 3.0 * row["user_ctr"]) / (shows + 3.0)
                np.testing.assert_allclose(value, expected, rtol=1e-5)
                rated += 1
    assert checked > 20 and rated > 20
    # No category at all: no vectors, the frame as before.
    bare = build_dataset(
        "bare",
        interactions,
        items.assign(category=None),
        edges,
        valid_share=0.2,
        test_share=0.2,
        split_unit="day",
    )
    assert bare.category_vectors == {} and bare.user_features == USER_FEATURES


def test_split_needs_distinct_times() -> None:
    interactions, items = _log(days=1)
    with pytest.raises(RealDataError, match="empty window"):
        build_dataset(
            "one-day", interactions, items, pd.DataFrame(columns=["user_id", "friend_id"])
        )


@pytest.mark.skipif(not MIND.is_dir(), reason="../shared/data/mind_small_subset is missing")
def test_mind_subset_frames_are_point_in_time_and_featurize(tmp_path: Path) -> None:
    from ingest.importers.mind import import_mind
    from monitoring.inputs import interactions_from_landing
    from muma.landing import partition_hours

    landing = tmp_path / "landing"
    import_mind(MIND, landing, limit=150)
    ds = load_dataset("mind", landing, sequence_length=50, valid_share=0.15, test_share=0.15)
    _check_split(ds.train, ds.valid, ds.test, ds)
    hours = partition_hours(landing / "v1", "impressions")
    interactions = interactions_from_landing(landing, hours[0], hours[-1] + timedelta(hours=1))
    frame = pd.concat([ds.train, ds.valid, ds.test], ignore_index=True)
    sample = frame.sample(n=min(150, len(frame)), random_state=0)
    _check_point_in_time(interactions, sample, length=50, with_history=True)
    # Pre-period histories follow the in-log clicks, newest first, stamped before the log.
    histories = pd.read_parquet(tmp_path / "imports" / "mind" / "histories.parquet")
    history = dict(zip(histories["request_id"], histories["history"], strict=True))
    log_start = frame["ts"].min().timestamp()
    for _, row in sample.iterrows():
        logged = int(row["user_clicks"]) if row["user_clicks"] < 50 else 50
        past = [str(i) for i in list(history.get(row["request_id"], []))[::-1]]
        assert list(row["seq_item_ids"][logged:]) == past[: 50 - logged]
        assert all(stamp < log_start for stamp in list(row["seq_ts"])[logged:])
    # The frames go through the shared featurizer unchanged.
    featurizer = Featurizer.fit(
        ds.train,
        ds.catalog,
        ds.friendships,
        user_feature_names=USER_FEATURES,
        item_feature_names=ITEM_FEATURES,
        graph=GraphConfig(neighbours=4),
        long_length=50,
        recent_length=20,
        seed=0,
    )
    encoded = featurizer.transform(ds.test)
    assert featurizer.feature_space().user_dense == len(USER_FEATURES)
    assert encoded.long_item.shape == (len(ds.test), 50)
    assert (encoded.long_gap >= 0).all()
