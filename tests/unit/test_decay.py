"""The one time-decay definition: its arithmetic, and moving stored counters in time."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from feature_repo.decay import decay_rate, decay_to, decay_weight


def test_weight_halves_every_half_life():
    for half_life in (0.5, 1, 24, 168):
        for k in range(6):
            age = k * half_life * 3600
            assert decay_weight(age, half_life) == pytest.approx(0.5**k, rel=1e-12)


def test_weight_of_an_array_is_elementwise():
    ages = np.array([[0.0, 1800.0], [7200.0, 86_400.0]])
    weights = decay_weight(ages, 1)
    assert weights.shape == (2, 2)
    expected = [[2 ** (-a / 3600) for a in row] for row in ages]
    np.testing.assert_allclose(weights, expected, rtol=1e-13)


def test_bucketed_sum_equals_event_sum():
    """decayed(T) = sum_b S_b * w(T - b), S_b = sum_e w(b - ts_e): the build's algebra."""
    rng = np.random.default_rng(3)
    ts = np.sort(rng.uniform(0, 10 * 3600, 200))
    snapshot = 10 * 3600.0
    bucket = (np.floor(ts / 3600) + 1) * 3600
    for half_life in (1, 24, 168):
        direct = decay_weight(snapshot - ts, half_life).sum()
        per_bucket = {}
        for b, t in zip(bucket, ts, strict=True):
            per_bucket[b] = per_bucket.get(b, 0.0) + decay_weight(b - t, half_life)
        staged = sum(s * decay_weight(snapshot - b, half_life) for b, s in per_bucket.items())
        assert staged == pytest.approx(direct, rel=1e-12)


def test_decay_to_moves_a_counter_forward():
    t0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert decay_to(8.0, t0, t0 + timedelta(hours=48), 24) == pytest.approx(2.0, rel=1e-12)
    assert decay_to(8.0, t0, t0, 24) == 8.0
    # epoch seconds and arrays broadcast
    stored = np.array([1.0, 4.0])
    moved = decay_to(stored, t0.timestamp(), t0.timestamp() + 3600, 1)
    np.testing.assert_allclose(moved, [0.5, 2.0], rtol=1e-12)


def test_decay_to_composes():
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    t1, t2 = t0 + timedelta(minutes=37), t0 + timedelta(hours=5, seconds=11)
    direct = decay_to(3.0, t0, t2, 24)
    assert decay_to(decay_to(3.0, t0, t1, 24), t1, t2, 24) == pytest.approx(direct, rel=1e-14)


@pytest.mark.parametrize("half_life", [0, -1, math.inf, math.nan, "24"])
def test_bad_half_life_is_an_error(half_life):
    with pytest.raises(ValueError, match="half_life_hours"):
        decay_rate(half_life)


def test_negative_age_is_an_error():
    with pytest.raises(ValueError, match=">= 0"):
        decay_weight(-1.0, 24)
    with pytest.raises(ValueError, match="finite"):
        decay_weight(np.array([1.0, np.nan]), 24)


def test_decay_to_refuses_to_run_backwards_and_naive_times():
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="before"):
        decay_to(1.0, t0, t0 - timedelta(seconds=1), 24)
    with pytest.raises(ValueError, match="timezone"):
        decay_to(1.0, datetime(2026, 11, 1), t0, 24)
