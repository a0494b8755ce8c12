"""Property tests of the simulated media world and the logs it writes.

These check what the pipeline relies on, not just that the simulator runs: the logs obey the
contract, the logged propensities are the logging policy's, clicks follow position bias and
the ground truth, friends share interests, drift happens exactly when configured, and every
injected bad record carries the reason ingest must give it.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson
import polars as pl
import pytest
from scipy.spatial.distance import jensenshannon

from muma.contract import (
    Domain,
    Reason,
    Source,
    check_line,
    lateness_reason,
    parse_timestamp,
)
from simulator.config import InterestShock, SimulatorConfig
from simulator.logs import (
    BAD_KINDS,
    logging_policy_weights,
    plackett_luce_slates,
)
from simulator.world import DOMAINS, MediaWorld, to_ms

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.data.conftest import SimulatedRun

START = datetime(2026, 11, 1, 16, tzinfo=UTC)
SEED = 20261101

CROSS_RECORD_REASONS = {
    Reason.DUPLICATE_EVENT_ID,
    Reason.LATE_EVENT,
    Reason.CLICK_WITHOUT_IMPRESSION,
}
"""Injected reasons that a single line cannot show; ingest finds them across records."""


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()
    }


def _world(config: SimulatorConfig, seed: int = SEED, days: int = 3) -> MediaWorld:
    return MediaWorld(config, seed, START, START + timedelta(days=days))


def _shown_with_clicks(impressions: pl.DataFrame, clicks: pl.DataFrame) -> pl.DataFrame:
    """Impressions with a ``clicked`` flag from the clicks log (joined on request and item)."""
    clicked = clicks.select("request_id", "item_id", pl.lit(True).alias("clicked"))
    return impressions.join(clicked, on=["request_id", "item_id"], how="left").with_columns(
        pl.col("clicked").fill_null(False)
    )


# --------------------------------------------------------------------------- determinism
def test_same_seed_and_range_give_byte_identical_files(
    dirty_run: SimulatedRun, simulate_into: Callable[..., SimulatedRun], tmp_path: Path
) -> None:
    rerun = simulate_into(
        tmp_path, dirty_run.config, seed=dirty_run.seed, hours=len(dirty_run.hours)
    )

    for original, repeated in (
        (dirty_run.landing_root, rerun.landing_root),
        (dirty_run.sidecar_root, rerun.sidecar_root),
    ):
        original_files, repeated_files = _files(original), _files(repeated)
        assert original_files.keys() == repeated_files.keys()
        assert len(original_files) >= len(Source) * len(dirty_run.hours)
        for name, content in original_files.items():
            assert repeated_files[name] == content, name


def test_different_seed_gives_different_logs(
    clean_run: SimulatedRun, simulate_into: Callable[..., SimulatedRun], tmp_path: Path
) -> None:
    other = simulate_into(tmp_path, clean_run.config, seed=clean_run.seed + 1, hours=1)
    hour = clean_run.hours[0]

    for source in (Source.IMPRESSIONS, Source.CLICKS, Source.ITEMS, Source.SOCIAL_EDGES):
        assert other.lines(source, hour) != clean_run.lines(source, hour), source


# --------------------------------------------------------------------------- the contract
@pytest.mark.parametrize("source", list(Source))
def test_every_line_satisfies_the_contract(clean_run: SimulatedRun, source: Source) -> None:
    total = 0
    for hour, lines in clean_run.partitions(source):
        for line in lines:
            assert check_line(source, line)[1] is None, (hour, line)
        total += len(lines)

    assert total > 0
    assert total == clean_run.summary.counts[str(source)]


@pytest.mark.parametrize("source", list(Source))
def test_every_event_lies_within_its_partition_hour(
    clean_run: SimulatedRun, source: Source
) -> None:
    for hour, lines in clean_run.partitions(source):
        for line in lines:
            event_ts = parse_timestamp(orjson.loads(line)["ts"])
            assert lateness_reason(event_ts, hour, allowed_lateness=timedelta(0)) is None, line
            assert hour <= event_ts < hour + timedelta(hours=1), line


def test_some_timestamps_are_written_in_local_offsets(impressions: pl.DataFrame) -> None:
    utc = impressions["ts"].str.ends_with("Z")

    assert 0.03 < 1 - utc.mean() < 0.2
    assert impressions["event_time"].null_count() == 0


@pytest.mark.parametrize("source", list(Source))
def test_event_ids_are_unique(clean_run: SimulatedRun, source: Source) -> None:
    event_ids = [
        orjson.loads(line)["event_id"]
        for _, lines in clean_run.partitions(source)
        for line in lines
    ]

    assert len(event_ids) == len(set(event_ids))


def test_follow_up_events_never_precede_what_caused_them(
    clean_run: SimulatedRun, impressions: pl.DataFrame, clicks: pl.DataFrame
) -> None:
    key = ["request_id", "item_id"]
    shown = impressions.select(*key, pl.col("event_time").alias("shown_at"))
    clicked = clicks.select(*key, pl.col("event_time").alias("clicked_at"))
    views = clean_run.records(Source.VIEWS).select(*key, pl.col("event_time").alias("viewed_at"))
    gaze = clean_run.records(Source.GAZE).select(*key, pl.col("event_time").alias("seen_at"))

    click_times = clicked.join(shown, on=key, how="left")
    view_times = views.join(clicked, on=key, how="left")
    gaze_times = gaze.join(shown, on=key, how="left")

    assert click_times["shown_at"].null_count() == 0
    assert view_times["clicked_at"].null_count() == 0
    assert gaze_times["shown_at"].null_count() == 0
    assert (click_times["clicked_at"] >= click_times["shown_at"]).all()
    assert (view_times["viewed_at"] >= view_times["clicked_at"]).all()
    assert (gaze_times["seen_at"] >= gaze_times["shown_at"]).all()


def test_shown_items_are_published_and_announced_before_they_are_shown(
    clean_run: SimulatedRun, impressions: pl.DataFrame
) -> None:
    catalog = clean_run.records(Source.ITEMS).select(
        "item_id",
        pl.col("hour").alias("announced_hour"),
        pl.col("publish_ts")
        .map_elements(parse_timestamp, return_dtype=pl.Datetime("us", "UTC"))
        .alias("published_at"),
    )

    shown = impressions.join(catalog, on="item_id", how="left")

    assert shown["published_at"].null_count() == 0
    assert (shown["published_at"] <= shown["event_time"]).all()
    assert (shown["announced_hour"] <= shown["hour"]).all()


def test_removed_friendships_existed_before(clean_run: SimulatedRun) -> None:
    edges = clean_run.records(Source.SOCIAL_EDGES).sort("event_time", maintain_order=True)
    current: set[tuple[str, str]] = set()

    for user_id, friend_id, action in edges.select("user_id", "friend_id", "action").iter_rows():
        pair = (user_id, friend_id)
        if action == "added":
            assert pair not in current
            current.add(pair)
        else:
            assert pair in current
            current.remove(pair)
    assert edges["action"].n_unique() == 2


# --------------------------------------------------------------------------- propensities
def test_plackett_luce_propensities_follow_the_sequential_formula() -> None:
    rng = np.random.default_rng(1)
    weights = rng.dirichlet(np.full(20, 0.7), size=500)

    chosen, propensity = plackett_luce_slates(weights, 5, rng)

    chosen_weights = np.take_along_axis(weights, chosen, axis=1)
    taken_before = np.cumsum(chosen_weights, axis=1) - chosen_weights
    assert chosen.shape == propensity.shape == (500, 5)
    assert all(len(set(row)) == 5 for row in chosen.tolist())
    np.testing.assert_array_equal(propensity[:, 0], chosen_weights[:, 0])
    np.testing.assert_allclose(propensity, chosen_weights / (1 - taken_before), rtol=1e-9)
    assert (propensity > 0).all() and (propensity <= 1).all()


def test_plackett_luce_sampling_frequencies_match_the_propensities() -> None:
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    draws = 20_000
    rng = np.random.default_rng(7)

    chosen, propensity = plackett_luce_slates(np.tile(weights, (draws, 1)), 3, rng)

    first_slot = np.bincount(chosen[:, 0], minlength=4) / draws
    np.testing.assert_allclose(first_slot, weights, atol=0.015)
    # Plackett-Luce marginal of slot 2: sum over first picks a of w_a * w_b / (1 - w_a).
    second_expected = np.array(
        [
            sum(weights[a] * weights[b] / (1 - weights[a]) for a in range(4) if a != b)
            for b in range(4)
        ]
    )
    second_slot = np.bincount(chosen[:, 1], minlength=4) / draws
    np.testing.assert_allclose(second_slot, second_expected, atol=0.015)
    # The product of a slate's propensities is the probability of the whole ordered slate.
    slates = Counter(map(tuple, chosen.tolist()))
    for slate in ((0, 1, 2), (3, 2, 1)):
        rows = np.flatnonzero((chosen == slate).all(axis=1))
        slate_probability = propensity[rows[0]].prod()
        assert slates[slate] / draws == pytest.approx(slate_probability, abs=0.01)


def test_logging_policy_weights_keep_the_exploration_floor() -> None:
    scores = np.random.default_rng(3).normal(0, 5, size=(200, 50))

    weights = logging_policy_weights(scores, temperature=0.5, epsilon=0.1)
    uniform = logging_policy_weights(scores, temperature=0.5, epsilon=1.0)

    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert (weights >= 0.1 / 50 - 1e-15).all()
    np.testing.assert_allclose(uniform, 1 / 50)


def test_logged_propensities_are_plackett_luce_with_the_floor(
    clean_run: SimulatedRun, impressions: pl.DataFrame
) -> None:
    config = clean_run.config
    k = config.slate_size
    floor = config.logging_policy.epsilon / config.candidates
    slates = impressions.sort("request_id", "position")
    positions = slates["position"].to_numpy().reshape(-1, k)
    propensity = slates["propensity"].to_numpy().reshape(-1, k)
    items_per_slate = slates.group_by("request_id").agg(pl.col("item_id").n_unique())

    assert (positions == np.arange(1, k + 1)).all()
    assert (items_per_slate["item_id"] == k).all()
    assert (propensity > 0).all() and (propensity <= 1).all()
    assert (propensity[:, 0] >= floor - 1e-12).all()
    # Undo the sequential normalisation: every slot's policy weight keeps the floor and a
    # slate's weights never add up to more than the whole distribution.
    weights = np.empty_like(propensity)
    taken = np.zeros(len(propensity))
    for slot in range(k):
        weights[:, slot] = propensity[:, slot] * (1 - taken)
        taken += weights[:, slot]
    assert (weights >= floor * (1 - 1e-9)).all()
    assert (taken <= 1 + 1e-9).all()


# --------------------------------------------------------------------------- clicks and truth
def test_ctr_falls_with_position(impressions: pl.DataFrame, clicks: pl.DataFrame) -> None:
    shown = _shown_with_clicks(impressions, clicks)

    ctr = dict(shown.group_by("position").agg(pl.col("clicked").mean()).iter_rows())

    assert shown.height > 10_000
    assert ctr[1] > 1.5 * ctr[3]
    assert ctr[3] > 1.2 * ctr[5]


def test_true_click_probability_falls_with_position(
    clean_run: SimulatedRun, impressions: pl.DataFrame
) -> None:
    truth = impressions.join(clean_run.truth(), on=["event_id", "request_id"], how="inner")

    mean_p_click = truth.group_by("position").agg(pl.col("p_click").mean()).sort("position")

    assert truth.height == impressions.height
    assert (np.diff(mean_p_click["p_click"].to_numpy()) < 0).all()


def test_logged_clicks_are_the_truths_click_draws(
    clean_run: SimulatedRun, impressions: pl.DataFrame, clicks: pl.DataFrame
) -> None:
    shown = _shown_with_clicks(impressions, clicks).join(
        clean_run.truth().rename({"clicked": "true_click"}), on=["event_id", "request_id"]
    )

    by_position = shown.group_by("position").agg(
        pl.col("clicked").mean().alias("ctr"),
        pl.col("p_click").mean().alias("expected"),
        pl.len().alias("n"),
    )

    assert clicks.height == shown["clicked"].sum()
    assert (shown["clicked"] == shown["true_click"]).all()
    for _, ctr, expected, n in by_position.iter_rows():
        standard_error = np.sqrt(expected * (1 - expected) / n)
        assert abs(ctr - expected) < 4 * standard_error


# --------------------------------------------------------------------------- the world
def _cosine_similarity(distributions: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    unit = distributions / np.linalg.norm(distributions, axis=1, keepdims=True)
    return (unit[a] * unit[b]).sum(axis=1)


def _interests(world: MediaWorld) -> np.ndarray:
    """``U x C``: every user's interest distributions of all domains side by side."""
    return np.concatenate([world.interest_distribution(domain) for domain in DOMAINS], axis=1)


def _friend_and_random_pairs(world: MediaWorld) -> tuple[np.ndarray, np.ndarray]:
    friends = np.array(list(world.edges))
    rng = np.random.default_rng(0)
    strangers = rng.integers(0, world.config.users, size=(20_000, 2))
    return friends, strangers[strangers[:, 0] != strangers[:, 1]]


def test_friends_interests_are_more_alike_than_strangers() -> None:
    world = _world(SimulatorConfig(users=1_000, items=400))
    friends, strangers = _friend_and_random_pairs(world)
    interests = _interests(world)

    friend_similarity = _cosine_similarity(interests, friends[:, 0], friends[:, 1]).mean()
    stranger_similarity = _cosine_similarity(interests, strangers[:, 0], strangers[:, 1]).mean()

    assert len(friends) > 1_000
    assert friend_similarity > stranger_similarity + 0.15


def test_interests_are_static_without_drift_influence_or_shock() -> None:
    config = SimulatorConfig(users=500, items=300, drift_per_day=0.0, social_influence=0.0)
    world = _world(config)
    before = world.interest_logits.copy()

    world.advance_to(START + timedelta(days=3))

    np.testing.assert_array_equal(world.interest_logits, before)


def test_drift_moves_interests_by_the_configured_amount() -> None:
    world = _world(SimulatorConfig(users=500, items=300, drift_per_day=0.1))
    before = world.interest_logits.copy()

    world.advance_to(START + timedelta(hours=23))
    after_hours = world.interest_logits.copy()
    world.advance_to(START + timedelta(days=3))

    np.testing.assert_array_equal(after_hours, before)
    change = world.interest_logits - before
    assert np.std(change) == pytest.approx(0.1 * np.sqrt(3), rel=0.05)


def test_evolution_depends_only_on_the_time_reached() -> None:
    config = SimulatorConfig(users=500, items=300, drift_per_day=0.1, social_influence=0.05)
    stepwise, direct = _world(config), _world(config)

    for day in (1, 2, 3):
        stepwise.advance_to(START + timedelta(days=day, hours=5))
    direct.advance_to(START + timedelta(days=3, hours=5))

    np.testing.assert_array_equal(stepwise.interest_logits, direct.interest_logits)


def test_social_influence_pulls_friends_together() -> None:
    world = _world(SimulatorConfig(users=1_000, items=400, social_influence=0.3), days=6)
    friends, _ = _friend_and_random_pairs(world)
    before = _cosine_similarity(_interests(world), friends[:, 0], friends[:, 1]).mean()

    world.advance_to(START + timedelta(days=5))

    after = _cosine_similarity(_interests(world), friends[:, 0], friends[:, 1]).mean()
    assert after > before + 0.05


def _shock_world(category: str | None = "weather") -> tuple[MediaWorld, InterestShock]:
    shock = InterestShock(at=START + timedelta(hours=36), domain=Domain.NEWS, category=category)
    return _world(SimulatorConfig(users=1_000, items=400, shock=shock)), shock


def _population_interest(world: MediaWorld, domain: Domain) -> np.ndarray:
    return world.interest_distribution(domain).mean(axis=0)


def test_shock_changes_population_interests_only_after_its_time() -> None:
    world, shock = _shock_world()
    start = _population_interest(world, Domain.NEWS)
    other_domains = {d: _population_interest(world, d) for d in (Domain.VIDEO, Domain.AD)}

    world.advance_to(shock.at - timedelta(minutes=1))
    just_before = _population_interest(world, Domain.NEWS)
    world.advance_to(shock.at)
    at_shock = _population_interest(world, Domain.NEWS)
    world.advance_to(shock.at + timedelta(hours=30))
    later = _population_interest(world, Domain.NEWS)

    assert jensenshannon(start, just_before, base=2) < 1e-9
    assert jensenshannon(start, at_shock, base=2) > 0.3
    np.testing.assert_array_equal(later, at_shock)
    target = world.config.categories[Domain.NEWS].index("weather")
    assert int(np.argmax(at_shock - start)) == target
    for domain, distribution in other_domains.items():
        np.testing.assert_allclose(_population_interest(world, domain), distribution)


def test_shock_raises_true_click_probability_of_its_category() -> None:
    world, shock = _shock_world()
    names = world.category_names
    weather = np.flatnonzero(world.item_category == names.index("weather"))
    politics = np.flatnonzero(world.item_category == names.index("politics"))
    users = np.arange(world.config.users)[:, None]
    # A fixed evaluation time, so item freshness does not confound the comparison.
    at_ms = to_ms(START)

    def mean_p_click(items: np.ndarray) -> float:
        return float(world.click_probability(users, items[None, :], at_ms, 1).mean())

    before = mean_p_click(weather), mean_p_click(politics)
    world.advance_to(shock.at)
    after = mean_p_click(weather), mean_p_click(politics)

    assert len(weather) > 0 and len(politics) > 0
    assert after[0] > 1.5 * before[0]
    assert after[1] < before[1]


def test_shock_without_category_turns_users_to_the_least_popular_one() -> None:
    world, shock = _shock_world(category=None)
    start = _population_interest(world, Domain.NEWS)

    world.advance_to(shock.at)

    assert int(np.argmax(_population_interest(world, Domain.NEWS) - start)) == int(np.argmin(start))


# --------------------------------------------------------------------------- online environment
def test_respond_returns_one_outcome_per_slot() -> None:
    world = _world(SimulatorConfig(users=2_000, items=800))
    at = START + timedelta(hours=2)
    slate = world.oracle_slate("u0000042", at, Domain.VIDEO, 5)

    outcome = world.respond("u0000042", at, slate, np.random.default_rng(0))

    assert len(set(slate)) == 5
    for values in (
        outcome.clicked,
        outcome.dwell_ms,
        outcome.completion_ratio,
        outcome.fixation_ms,
        outcome.p_click,
    ):
        assert np.shape(values) == (5,)
    assert outcome.clicked.dtype == bool
    assert ((outcome.p_click > 0) & (outcome.p_click < 1)).all()
    assert (outcome.dwell_ms[~outcome.clicked] == 0).all()
    assert (outcome.completion_ratio[~outcome.clicked] == 0).all()
    assert ((outcome.completion_ratio >= 0) & (outcome.completion_ratio <= 1)).all()


def test_oracle_slate_beats_a_random_slate() -> None:
    world = _world(SimulatorConfig(users=2_000, items=800))
    at = START + timedelta(hours=2)
    rng = np.random.default_rng(5)
    available = world.available_items(Domain.NEWS, to_ms(at))
    positions = np.arange(1, 6)
    oracle_true, random_true, oracle_online, random_online = [], [], [], []
    oracle_clicks = random_clicks = 0

    for user in rng.choice(world.config.users, size=300, replace=False):
        user_id = str(world.user_ids[user])
        oracle = world.oracle_slate(user_id, at, Domain.NEWS, 5)
        random = [str(world.item_ids[i]) for i in rng.choice(available, size=5, replace=False)]
        for slate, true, online in (
            (oracle, oracle_true, oracle_online),
            (random, random_true, random_online),
        ):
            items = np.array([world.item_index(item) for item in slate])
            true.append(
                world.click_probability(np.full(5, user), items, to_ms(at), positions).sum()
            )
            online.append(world.respond(user_id, at, slate, rng).p_click.sum())
        oracle_clicks += int(world.respond(user_id, at, oracle, rng).clicked.sum())
        random_clicks += int(world.respond(user_id, at, random, rng).clicked.sum())

    # Without a session focus the oracle's slate is the best possible for every user.
    assert (np.array(oracle_true) >= np.array(random_true)).all()
    assert np.mean(oracle_online) > 3 * np.mean(random_online)
    assert oracle_clicks > random_clicks


# --------------------------------------------------------------------------- bad records
def test_bad_records_carry_the_reason_ingest_must_give_them(dirty_run: SimulatedRun) -> None:
    range_reasons = {
        Reason.PROPENSITY_OUT_OF_RANGE,
        Reason.NEGATIVE_DWELL,
        Reason.ABSURD_DWELL,
        Reason.OUT_OF_RANGE,
        Reason.INVALID_VALUE,
    }
    checked = Counter()
    for source in Source:
        for hour, lines in dirty_run.partitions(source):
            present = set(lines)
            for entry in dirty_run.manifest(source, hour):
                line, reason = entry["line"].encode(), Reason(entry["reason"])
                assert line in present
                violation = check_line(source, line)[1]
                if reason in CROSS_RECORD_REASONS:
                    assert violation is None, entry
                else:
                    assert violation is not None and violation.reason is reason, entry
                if entry["kind"] == "impossible_value":
                    assert reason in range_reasons
                else:
                    assert entry["kind"] == reason.value
                checked[reason] += 1

    assert set(checked) == set(Reason) - {Reason.FUTURE_EVENT}


def test_duplicate_event_id_entries_repeat_an_event_id(dirty_run: SimulatedRun) -> None:
    found = 0
    for source in Source:
        for hour, lines in dirty_run.partitions(source):
            event_ids = Counter(
                record["event_id"]
                for record, _ in (check_line(source, line) for line in lines)
                if record is not None
            )
            for entry in dirty_run.manifest(source, hour):
                if entry["reason"] == Reason.DUPLICATE_EVENT_ID:
                    assert event_ids[orjson.loads(entry["line"])["event_id"]] > 1
                    found += 1
    assert found > 0


def test_late_event_entries_are_late(dirty_run: SimulatedRun) -> None:
    found = 0
    for source in Source:
        for hour in dirty_run.hours:
            for entry in dirty_run.manifest(source, hour):
                record, _ = check_line(source, entry["line"])
                if record is None:
                    continue
                event_ts = parse_timestamp(record["ts"])
                late = lateness_reason(event_ts, hour, allowed_lateness=timedelta(hours=2))
                if entry["reason"] == Reason.LATE_EVENT:
                    assert late is Reason.LATE_EVENT
                    found += 1
                else:
                    assert late is None, entry
    assert found > 0


def test_click_without_impression_entries_name_an_unknown_request(
    dirty_run: SimulatedRun,
) -> None:
    requests = set(dirty_run.records(Source.IMPRESSIONS)["request_id"])
    clicks = dirty_run.records(Source.CLICKS)
    orphans = set(clicks.filter(~pl.col("request_id").is_in(list(requests)))["event_id"])

    injected = {
        orjson.loads(entry["line"])["event_id"]
        for hour in dirty_run.hours
        for entry in dirty_run.manifest(Source.CLICKS, hour)
        if entry["reason"] == Reason.CLICK_WITHOUT_IMPRESSION
    }

    assert injected
    assert orphans == injected


def test_every_bad_kind_is_injected(dirty_run: SimulatedRun) -> None:
    kinds = Counter(
        entry["kind"]
        for source in Source
        for hour in dirty_run.hours
        for entry in dirty_run.manifest(source, hour)
    )

    assert set(kinds) == set(BAD_KINDS)
    assert kinds == dirty_run.summary.bad


def test_partitions_hold_the_good_lines_plus_the_bad_lines(
    clean_run: SimulatedRun, dirty_run: SimulatedRun
) -> None:
    for source in Source:
        for hour in clean_run.hours:
            good = clean_run.lines(source, hour)
            bad = [entry["line"].encode() for entry in dirty_run.manifest(source, hour)]

            written = dirty_run.lines(source, hour)

            assert len(written) == len(good) + len(bad)
            assert Counter(written) == Counter(good) + Counter(bad)
            assert len(bad) == round(dirty_run.config.bad_records.share * len(good))
        assert dirty_run.summary.counts[str(source)] == sum(
            len(dirty_run.lines(source, hour)) for hour in dirty_run.hours
        )
