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
    from scipy import sparse

    from policy.loop import (
        CATEGORY_CTR_PRIOR,
        CTR_PRIOR,
        LOOP_FEATURES,
        SHARE_PRIOR,
        _circle_matrix,
        _features,
        _Universe,
        _world,
    )
    from simulator.world import DOMAINS

    params = LoopParams(days=1, users=20, items=300, shock_day=None)
    world = _world(params, seed=0)
    n_cat = len(world.category_names)
    edges = ([0, 1, 1, 3], [1, 0, 3, 1])  # 0 <-> 1 <-> 3: user 3 is in user 0's circle
    friends = sparse.csr_matrix(([1.0] * 4, edges), shape=(20, 20))
    circle = _circle_matrix(friends)
    assert sorted(circle[0].indices) == [1, 3] and sorted(circle[1].indices) == [0, 3]
    universe = _Universe(
        "greedy",
        20,
        4,
        items=len(world.item_ids),
        categories=n_cat,
        friends=friends,
        circle=circle,
    )
    news = world.domain_categories[DOMAINS[0]]
    video = world.domain_categories[DOMAINS[1]]
    first = np.flatnonzero(world.item_category == news[0])[0]  # a news item of category 0
    items = np.asarray([first, first, 1, 2])
    users = np.asarray([0, 2, 0, 0])
    ts = world.item_publish_ms[items] / 1000.0 + np.asarray([0.0, 3600.0, 7200.0, 0.0])
    universe.shown[1], universe.clicked[1] = 80, 9
    # User 0: 3 news clicks in category 0 of 6 shown, 1 in another news category, 5 video clicks
    # (other domains do not dilute the share); friend 1: 2 clicks in category 0 of 4 news clicks;
    # friend of friend 3: 1 of 4.
    universe.category_shown[0, news[0]], universe.category_clicked[0, news[0]] = 6, 3
    universe.category_shown[0, news[1]], universe.category_clicked[0, news[1]] = 2, 1
    universe.category_shown[0, video[0]], universe.category_clicked[0, video[0]] = 5, 5
    universe.category_shown[1, news[0]], universe.category_clicked[1, news[0]] = 9, 2
    universe.category_shown[1, news[2]], universe.category_clicked[1, news[2]] = 9, 2
    universe.category_shown[3, news[0]], universe.category_clicked[3, news[0]] = 4, 1
    universe.category_shown[3, news[3]], universe.category_clicked[3, news[3]] = 4, 3
    features = _features(world, universe, users, items, ts)
    assert LOOP_FEATURES[:3] == ("age_hours", "item_ctr", "category_affinity")
    np.testing.assert_allclose(features[:, 0], [0.0, 1.0, 2.0, 0.0])
    prior_clicks, prior_shown = CTR_PRIOR
    assert features[0, 1] == prior_clicks / prior_shown
    assert features[2, 1] == (9 + prior_clicks) / (80 + prior_shown)
    n = len(news)
    everyone = (6 + 1) / (12 + n)  # everyone's news clicks: 6 of 12 in category 0, plus 1 each
    friends_share = (2 + SHARE_PRIOR * everyone) / (4 + SHARE_PRIOR)
    circle_share = (2 + 1 + SHARE_PRIOR * everyone) / (4 + 4 + SHARE_PRIOR)
    own_share = (3 + SHARE_PRIOR * circle_share) / (4 + SHARE_PRIOR)
    np.testing.assert_allclose(features[0, 2], np.log(own_share * n))
    np.testing.assert_allclose(features[0, 3], np.log(friends_share * n))
    everyone_ctr = (6 + prior_clicks) / (19 + prior_shown)
    user_ctr = (3 + CATEGORY_CTR_PRIOR * everyone_ctr) / (6 + CATEGORY_CTR_PRIOR)
    np.testing.assert_allclose(features[0, 4], np.log(user_ctr / everyone_ctr))
    # User 2 has no clicks and no friends: everyone's share, everyone's CTR.
    np.testing.assert_allclose(features[1, 2:], [np.log(everyone * n)] * 2 + [0.0])


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


def test_partial_truths_are_bounded_by_the_oracle_they_reproduce(report: dict) -> None:
    partial = report["partial_truths"]
    views = partial["views"]
    oracle = report["policies"]["oracle"]["expected_ctr"]
    assert math.isclose(views["truth"]["expected_ctr"], oracle, rel_tol=1e-9)
    for name, view in views.items():
        assert view["share_of_oracle"] <= 1.0 + 1e-12, name
    assert views["freshness_only"]["expected_ctr"] < views["interest_freshness"]["expected_ctr"]
    assert views["expected_focus"]["expected_ctr"] >= views["without_focus"]["expected_ctr"] - 1e-3
    assert len(partial["daily"]) == 2
    greedy = partial["policies"]["greedy"]
    assert math.isclose(greedy["share_of_oracle"], report["policies"]["greedy"]["share_of_oracle"])


def test_the_rankers_weights_on_the_truth_are_reported_per_day(report: dict) -> None:
    first, second = report["policies"]["greedy"]["daily"]
    assert "ranker_vs_truth" not in first, "day 1 serves the logging policy"
    fit = second["ranker_vs_truth"]
    assert set(fit["weights"]) == {"interest", "quality", "latent", "freshness", "focus"}
    assert 0 <= fit["r2"] <= 1 and fit["rows"] > 0


def test_the_ranker_fit_recovers_known_weights_within_requests() -> None:
    import numpy as np

    from policy.loop import RANKER_TERMS, ranker_fit_counts, ranker_fit_summary

    rng = np.random.default_rng(0)
    terms = {name: rng.normal(size=(50, 8)) for name in RANKER_TERMS}
    weights = {"interest": 0.5, "quality": 1.0, "latent": 0.0, "freshness": 2.0, "focus": 0.1}
    per_request = rng.normal(size=(50, 1)) * 10  # a request's offset changes no slate
    logits = sum(w * terms[n] for n, w in weights.items()) + per_request
    fit = ranker_fit_summary(ranker_fit_counts(logits, terms))
    for name, weight in weights.items():
        assert math.isclose(fit["weights"][name], weight, abs_tol=1e-3), name
    assert fit["r2"] > 0.999 and fit["rows"] == 400


def test_the_exact_interest_as_estimate_reproduces_the_partial_truths() -> None:
    import numpy as np

    from policy.loop import (
        ESTIMATED_INTEREST_VIEWS,
        estimated_interest_counts,
        partial_truth_counts,
    )

    rng = np.random.default_rng(1)
    names = ("base", "interest", "quality", "latent", "fatigue", "freshness", "focus")
    terms = {name: rng.normal(size=(40, 12)) for name in names}
    examination = np.array([1.0, 0.6, 0.4])
    partial = partial_truth_counts(terms, np.full((40, 12), 0.1), 0.8, examination)
    exact = estimated_interest_counts(terms, {"exact": terms["interest"]}, examination)
    same = {
        "item_terms": "without_focus",
        "without_latent": "without_focus_latent",
        "interest_freshness": "interest_freshness",
    }
    assert set(same) == set(ESTIMATED_INTEREST_VIEWS)
    for view, partial_name in same.items():
        assert math.isclose(exact[f"exact.{view}"], partial[partial_name]), view
    blind = estimated_interest_counts(terms, {"none": np.zeros((40, 12))}, examination)
    assert math.isclose(blind["none.interest_freshness"], partial["freshness_only"])


def test_the_interest_estimates_map_the_features_to_the_terms_scale() -> None:
    import numpy as np

    from policy.loop import INTEREST_FIT_FEATURES, interest_estimates, interest_fit_counts

    rng = np.random.default_rng(2)
    features = rng.normal(size=(30, 10, 5)) * 2
    weights = np.array([0.8, 0.5, -0.2])
    per_request = rng.normal(size=(30, 1)) * 5  # a request's offset changes no slate
    interest = features[..., list(INTEREST_FIT_FEATURES)] @ weights + per_request
    fit = interest_fit_counts(features, interest)
    estimates = interest_estimates(1.2, features, fit)
    np.testing.assert_allclose(estimates["link"], 1.2 * np.clip(features[..., 2], -3, 3))
    centred = interest - interest.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(estimates["fit"], centred, atol=1e-9)
    assert not interest_estimates(1.2, features, None)["fit"].any(), "no rounds yet: no signal"


def test_estimated_interest_is_reported_per_learning_policy(report: dict) -> None:
    estimated = report["partial_truths"]["estimated_interest"]
    views = report["partial_truths"]["views"]
    assert set(estimated) == {"greedy", "bandit", "bandit_unweighted"}
    for name, entry in estimated.items():
        for estimator in ("link", "fit"):
            shares = entry[estimator]
            for view, share in shares.items():
                assert 0 < share <= 1.0 + 1e-12, (name, estimator, view)
            assert shares["item_terms"] > views["item_only"]["share_of_oracle"], (name, estimator)
        assert entry["fit_weights"]["category_affinity"] > 0, name
        days = report["policies"][name]["daily"]
        assert all(set(day["estimated_interest"]) == {"link", "fit"} for day in days), name
