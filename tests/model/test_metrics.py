"""Ranking and calibration metrics against hand-computed values (and sklearn where installed)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training.metrics import (
    auc,
    correlations,
    evaluate,
    expected_calibration_error,
    gauc,
    log_loss,
    ndcg_hr_at_k,
)


def test_auc_by_hand() -> None:
    # Positives 0.9 and 0.3, negatives 0.8 and 0.1: 3 of 4 pairs ordered correctly.
    assert auc([1, 0, 1, 0], [0.9, 0.8, 0.3, 0.1]) == pytest.approx(0.75)
    assert auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5), "a tie counts half"
    assert auc([1, 1], [0.2, 0.3]) is None


def test_auc_matches_sklearn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2_000)
    scores = np.round(rng.random(2_000) + 0.3 * labels, 2)  # rounded: many ties
    assert auc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)


def test_gauc_by_hand() -> None:
    clicked = [1, 0, 1, 0, 0, 1]
    scores = [0.8, 0.2, 0.1, 0.5, 0.3, 0.9]
    users = ["a", "a", "b", "b", "b", "c"]
    # a: AUC 1 over 2 impressions; b: AUC 0 over 3; c: one class, skipped.
    assert gauc(clicked, scores, users) == pytest.approx((2 * 1.0 + 3 * 0.0) / 5)
    assert gauc([1, 0], [0.1, 0.2], ["a", "b"]) is None


def test_gauc_matches_a_per_user_loop() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    users = rng.integers(0, 40, 1_500)
    labels = rng.integers(0, 2, 1_500)
    scores = np.round(rng.random(1_500) + 0.2 * labels, 1)
    total = weight = 0.0
    for user in np.unique(users):
        rows = users == user
        if labels[rows].min() != labels[rows].max():
            total += rows.sum() * metrics.roc_auc_score(labels[rows], scores[rows])
            weight += rows.sum()
    assert gauc(labels, scores, users) == pytest.approx(total / weight, abs=1e-12)


def test_log_loss_by_hand() -> None:
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(expected)
    assert math.isfinite(log_loss([1, 0], [0.0, 1.0])), "clipped, not infinite"


def test_expected_calibration_error_by_hand() -> None:
    probabilities = [0.1, 0.15, 0.9, 0.95]
    clicked = [0, 1, 1, 1]
    # bin [0.1, 0.2): mean 0.125 vs rate 0.5; bin [0.9, 1]: mean 0.925 vs rate 1.0
    expected = 0.5 * 0.375 + 0.5 * 0.075
    assert expected_calibration_error(clicked, probabilities) == pytest.approx(expected)
    assert expected_calibration_error([0, 1], [0.5, 0.5], bins=1) == pytest.approx(0.0)


def test_ndcg_and_hit_rate_by_hand() -> None:
    clicked = [0, 1, 0, 0, 0, 1, 1]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.2, 0.9]
    requests = [1, 1, 1, 2, 2, 3, 3]
    # request 1: click at rank 2 -> 1/log2(3); request 2: no click, skipped; request 3: ideal.
    ndcg, hit_rate = ndcg_hr_at_k(clicked, scores, requests, k=10)
    assert ndcg == pytest.approx((1 / math.log2(3) + 1.0) / 2)
    assert hit_rate == pytest.approx(1.0)
    ndcg_1, hit_rate_1 = ndcg_hr_at_k(clicked, scores, requests, k=1)
    assert ndcg_1 == pytest.approx(0.5) and hit_rate_1 == pytest.approx(0.5)
    assert ndcg_hr_at_k([0, 0], [0.1, 0.2], [1, 1]) == (None, None)


def test_correlations() -> None:
    truth = np.linspace(0.01, 0.5, 50)
    pearson, spearman = correlations(0.2 + 0.5 * truth, truth)
    assert pearson == pytest.approx(1.0) and spearman == pytest.approx(1.0)
    pearson, spearman = correlations(truth**4, truth)
    assert pearson < 0.99 and spearman == pytest.approx(1.0)
    assert correlations(np.full(5, 0.3), np.linspace(0, 1, 5)) == (None, None)


def test_evaluate_overall_and_per_domain_as_json() -> None:
    rng = np.random.default_rng(2)
    rows = 600
    truth = rng.uniform(0.02, 0.6, rows)
    clicked = rng.random(rows) < truth
    domains = np.array(["news", "video", "ad"])[rng.integers(0, 3, rows)]
    domains[clicked] = np.where(domains[clicked] == "ad", "news", domains[clicked])  # ad: no clicks
    result = evaluate(
        probabilities=truth,
        clicked=clicked.astype(int),
        user_id=rng.integers(0, 30, rows),
        request_id=np.arange(rows) // 6,
        domain=domains,
        true_probability=truth,
    )
    assert set(result.per_domain) == {"ad", "news", "video"}
    assert result.overall.rows == rows and result.overall.clicks == int(clicked.sum())
    assert result.overall.auc > 0.6 and result.overall.pearson == pytest.approx(1.0)
    assert result.per_domain["ad"].auc is None and result.per_domain["ad"].ndcg_at_k is None
    assert sum(m.rows for m in result.per_domain.values()) == rows
    text = json.dumps(result.as_dict(), allow_nan=False)
    assert json.loads(text)["per_domain"]["news"]["auc"] == result.per_domain["news"].auc


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probabilities": [0.5, 1.5]}, "probabilities"),
        ({"clicked": [1, 2]}, "0 or 1"),
        ({"user_id": [1]}, "user_id"),
        (
            {"probabilities": [], "clicked": [], "user_id": [], "request_id": [], "domain": []},
            "no rows",
        ),
    ],
)
def test_evaluate_rejects_bad_input(kwargs: dict, message: str) -> None:
    arguments = {
        "probabilities": [0.5, 0.5],
        "clicked": [1, 0],
        "user_id": [1, 2],
        "request_id": [1, 1],
        "domain": ["news", "news"],
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        evaluate(**arguments)
