"""Pure parts of the real-time path: aggregation, merging, the event-time guard, decay."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from feature_repo.decay import decay_weight
from feature_repo.realtime import (
    LAST_CLICK_ITEM,
    LAST_CLICK_TS,
    ROW_TS,
    UPDATED_TS,
    aggregate_events,
    count_late,
    decay_to_request,
    decayed_counter_names,
    events_frame,
    merge_aggregates,
    realtime_table,
)

HALF_LIFE = 2.0
FEATURES = list(realtime_table(HALF_LIFE).feature_names)


def random_events(seed: int, count: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return events_frame(
        pd.DataFrame(
            {
                "user_id": rng.choice(["a", "b", "c", "d"], size=count),
                "item_id": [f"i{n}" for n in range(count)],
                "domain": rng.choice(["news", "video", "ad"], size=count),
                "kind": rng.choice(["click", "view"], size=count),
                "ts": 1_800_000_000 + rng.integers(0, 6 * 3600, size=count).astype(float),
                "dwell_ms": rng.integers(0, 90_000, size=count),
            }
        )
    )


def empty_store(users) -> pd.DataFrame:
    frame = pd.DataFrame({name: np.nan for name in FEATURES}, index=pd.Index(users, name="user_id"))
    frame[LAST_CLICK_ITEM] = None
    return frame


def fold_in_batches(events: pd.DataFrame, batches: list[np.ndarray]) -> pd.DataFrame:
    stored = empty_store(sorted(events["user_id"].unique()))
    for batch in batches:
        part = events.iloc[batch]
        rows = merge_aggregates(stored, aggregate_events(part, HALF_LIFE), HALF_LIFE)
        update = rows.set_index("user_id")[FEATURES]
        stored.loc[update.index, FEATURES] = update
    return stored


def test_counters_are_the_decayed_sum_of_every_event() -> None:
    events = random_events(1)
    got = fold_in_batches(events, [np.arange(len(events))])
    for user, mine in events.groupby("user_id"):
        newest = mine["ts"].max()
        weights = decay_weight(newest - mine["ts"].to_numpy(), HALF_LIFE)
        clicks = weights[((mine["kind"] == "click") & (mine["domain"] == "news")).to_numpy()].sum()
        views = (mine["kind"] == "view") & (mine["domain"] == "ad")
        dwell = (weights * mine["dwell_ms"].to_numpy())[views.to_numpy()].sum()
        assert got.loc[user, "rt_news_clicks"] == pytest.approx(clicks, rel=1e-12)
        assert got.loc[user, "rt_ad_dwell_ms"] == pytest.approx(dwell, rel=1e-12)
        assert got.loc[user, UPDATED_TS] == newest


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_arrival_order_and_batching_do_not_change_the_state(seed: int) -> None:
    """Late events fold in exactly; newer values never move back."""
    events = random_events(seed)
    whole = fold_in_batches(events, [np.arange(len(events))])
    order = np.random.default_rng(seed).permutation(len(events))
    shuffled = fold_in_batches(events, np.array_split(order, 9))
    counters = list(decayed_counter_names())
    np.testing.assert_allclose(
        shuffled[counters].to_numpy(float), whole[counters].to_numpy(float), rtol=1e-9
    )
    assert shuffled[UPDATED_TS].tolist() == whole[UPDATED_TS].tolist()
    assert shuffled[LAST_CLICK_TS].tolist() == whole[LAST_CLICK_TS].tolist()
    assert shuffled[LAST_CLICK_ITEM].tolist() == whole[LAST_CLICK_ITEM].tolist()


def test_a_late_batch_keeps_newer_values_and_moves_the_row_timestamp_on() -> None:
    stored = empty_store(["a"])
    first = events_frame(
        [{"user_id": "a", "item_id": "new", "domain": "news", "kind": "click", "ts": 1000.0}]
    )
    row = merge_aggregates(stored, aggregate_events(first, HALF_LIFE), HALF_LIFE)
    stored.loc["a", FEATURES] = row.set_index("user_id").loc["a", FEATURES]
    late = events_frame(
        [{"user_id": "a", "item_id": "old", "domain": "news", "kind": "click", "ts": 400.0}]
    )
    assert count_late(late, stored[UPDATED_TS]) == 1
    again = merge_aggregates(stored, aggregate_events(late, HALF_LIFE), HALF_LIFE).iloc[0]
    assert again[LAST_CLICK_ITEM] == "new" and again[UPDATED_TS] == 1000.0
    assert again["rt_news_clicks"] == pytest.approx(1 + decay_weight(600, HALF_LIFE), rel=1e-12)
    assert again[ROW_TS] == pytest.approx(1000.001)
    assert again["event_timestamp"] > row.iloc[0]["event_timestamp"]


def test_decay_to_request_decays_and_zeroes_missing_rows() -> None:
    stored = pd.DataFrame({name: [10.0, np.nan] for name in decayed_counter_names()})
    stored[UPDATED_TS] = [1000.0, np.nan]
    out = decay_to_request(stored, 1000.0 + 3600 * HALF_LIFE, HALF_LIFE)
    assert out["rt_news_clicks_now"].tolist() == pytest.approx([5.0, 0.0])
    # Clock skew: a request before the update sees the stored value, not more.
    assert decay_to_request(stored, 900.0, HALF_LIFE)["rt_ad_views_now"][0] == 10.0


def test_events_frame_rejects_bad_events() -> None:
    good = {"user_id": "a", "item_id": "i", "domain": "news", "kind": "click", "ts": 1.0}
    with pytest.raises(ValueError, match="unknown event kinds"):
        events_frame([{**good, "kind": "like"}])
    with pytest.raises(ValueError, match="unknown domains"):
        events_frame([{**good, "domain": "music"}])
    with pytest.raises(ValueError, match="dwell_ms"):
        events_frame([{**good, "kind": "view", "dwell_ms": -5}])
    with pytest.raises(ValueError, match="lack columns"):
        events_frame([{k: v for k, v in good.items() if k != "item_id"}])
    stamped = events_frame([{**good, "ts": datetime(2026, 11, 1, tzinfo=UTC)}])
    assert stamped["ts"].iloc[0] == datetime(2026, 11, 1, tzinfo=UTC).timestamp()


def test_a_tie_between_clicks_goes_to_the_later_arrival_and_ids_become_strings() -> None:
    events = [
        {"user_id": 7, "item_id": "first", "domain": "news", "kind": "click", "ts": 50.0},
        {"user_id": 7, "item_id": "second", "domain": "ad", "kind": "click", "ts": 50.0},
        {"user_id": 7, "item_id": "older", "domain": "ad", "kind": "click", "ts": 10.0},
        {"user_id": "8", "item_id": 3, "domain": "video", "kind": "view", "ts": 20.0},
    ]
    got = aggregate_events(events_frame(events), HALF_LIFE).set_index("user_id")
    assert got.loc["7", LAST_CLICK_ITEM] == "second" and got.loc["7", LAST_CLICK_TS] == 50.0
    assert got.loc["7", "events"] == 3 and got.loc["8", "events"] == 1
    assert got.loc["8", LAST_CLICK_ITEM] is None and np.isnan(got.loc["8", LAST_CLICK_TS])
    assert got.loc["7", "rt_ad_clicks"] == pytest.approx(1 + decay_weight(40, HALF_LIFE))


def test_events_without_a_time_are_rejected() -> None:
    good = {"user_id": "a", "item_id": "i", "domain": "news", "kind": "click", "ts": 1.0}
    with pytest.raises(ValueError, match="finite"):
        events_frame([good, {**good, "ts": None}])
    with pytest.raises(ValueError, match="finite"):
        events_frame([{**good, "ts": "not a time"}])
    with pytest.raises(ValueError, match="required"):
        events_frame([{**good, "user_id": None}])
