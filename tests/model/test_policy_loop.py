"""The closed loop on a tiny world: every policy serves the same requests, learning policies
retrain on their own logs, the oracle bounds everyone, and OPE runs on the bandit's logs."""

from __future__ import annotations

import math

import pytest

from policy.loop import LoopParams, LoopTrainParams, run_loop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report() -> dict:
    params = LoopParams(
        days=2,
        users=250,
        items=250,
        shock_day=1,
        candidates=12,
        train=LoopTrainParams(epochs=1, threads=1),
    )
    return run_loop(params, seed=3)


def test_every_policy_serves_the_same_requests(report: dict) -> None:
    counts = {result["impressions"] for result in report["policies"].values()}
    assert len(counts) == 1 and counts.pop() > 1000
    for result in report["policies"].values():
        assert len(result["daily"]) == 2
        assert set(result["per_domain"]) == {"news", "video", "ad"}


def test_the_oracle_bounds_every_policy_and_random_is_worst(report: dict) -> None:
    policies = report["policies"]
    oracle = policies["oracle"]["expected_ctr"]
    for name, result in policies.items():
        assert result["expected_ctr"] <= oracle + 1e-12, name
        assert result["share_of_oracle"] <= 1.0 + 1e-12
    assert policies["random"]["expected_ctr"] == min(r["expected_ctr"] for r in policies.values())
    assert policies["oracle"]["regret_clicks"] == 0


def test_learning_policies_retrain_on_their_own_logs(report: dict) -> None:
    for name in ("greedy", "bandit", "bandit_unweighted"):
        retrains = report["policies"][name]["retrains"]
        assert len(retrains) == 1 and retrains[0]["rows"] > 500, name
    assert report["policies"]["random"]["retrains"] == []


def test_ope_runs_on_the_bandits_own_logs(report: dict) -> None:
    ope = report["ope"]
    assert ope["rounds"] > 100 and 0 < ope["truth"] < 1
    assert set(ope["estimates"]) >= {"ips", "snips", "dm", "dr"}
    for estimate in ope["estimates"].values():
        assert math.isfinite(estimate["value"]) and estimate["ci_low"] <= estimate["ci_high"]


def test_loop_features_are_what_the_policy_could_know() -> None:
    import numpy as np

    from policy.loop import CTR_PRIOR, LOOP_FEATURES, _features, _Universe, _world

    params = LoopParams(days=1, users=20, items=300, shock_day=None)
    world = _world(params, seed=0)
    universe = _Universe("greedy", 20, 4, items=len(world.item_ids))
    items = np.asarray([0, 1, 2])
    same = np.flatnonzero(world.item_category == world.item_category[0])[:2]
    assert len(same) == 2
    other = np.flatnonzero(world.item_category != world.item_category[0])[0]
    hist = np.asarray([[same[0] + 1, same[1] + 1, other + 1, 0]] * 3)  # 2 of 3 clicks in cat(0)
    ts = world.item_publish_ms[items] / 1000.0 + np.asarray([0.0, 3600.0, 7200.0])
    universe.shown[1], universe.clicked[1] = 80, 9
    features = _features(world, universe, items, ts, hist)
    assert LOOP_FEATURES == ("age_hours", "item_ctr", "category_affinity")
    np.testing.assert_allclose(features[:, 0], [0.0, 1.0, 2.0])
    prior_clicks, prior_shown = CTR_PRIOR
    assert features[0, 1] == prior_clicks / prior_shown
    assert features[1, 1] == (9 + prior_clicks) / (80 + prior_shown)
    assert features[0, 2] == 2 / (3 + 1)
    empty = _features(world, universe, items[:1], ts[:1], np.zeros((1, 4), np.int64))
    assert empty[0, 2] == 0.0


def test_the_bandit_posterior_is_refit_on_every_logged_impression_after_a_retrain(
    report: dict,
) -> None:
    for name in ("bandit", "bandit_unweighted"):
        retrains = report["policies"][name]["retrains"]
        assert retrains and all(r["posterior_rows"] == r["rows"] for r in retrains)
    assert all(r["posterior_rows"] == 0 for r in report["policies"]["greedy"]["retrains"])


def test_the_bandits_days_report_what_exploration_cost_and_found(report: dict) -> None:
    first, second = report["policies"]["bandit"]["daily"]
    assert "exploration" not in first, "day 1 serves the logging policy"
    explore = second["exploration"]
    assert 0 <= explore["explored_share"] <= 1
    assert 0 <= explore["explored_in_oracle_top_k"] <= 1
    assert 0 <= explore["exploited_in_oracle_top_k"] <= 1
    assert explore["mean_posterior_width"] > 0 and explore["mean_logit_std"] > 0
    assert all("exploration" not in day for day in report["policies"]["greedy"]["daily"])
