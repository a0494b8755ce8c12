"""Off-policy estimators: hand-computed values, input errors, and unbiasedness on a known bandit."""

from __future__ import annotations

import numpy as np
import pytest

from policy.ope import LoggedFeedback, OpeInputError, evaluate_policy, relative_error
from policy.reward_model import cross_fitted_q_hat, tabular_ctr

# Four rounds, three actions, hand-checkable numbers.
REWARD = np.array([1.0, 0.0, 1.0, 0.0])
ACTION = np.array([0, 1, 2, 0])
PSCORE = np.array([0.5, 0.25, 0.25, 0.5])
TARGET = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.2, 0.6, 0.2],
        [0.0, 0.5, 0.5],
        [1.0, 0.0, 0.0],
    ]
)
Q_HAT = np.array(
    [
        [0.6, 0.2, 0.1],
        [0.5, 0.1, 0.2],
        [0.3, 0.3, 0.4],
        [0.5, 0.1, 0.1],
    ]
)


def feedback() -> LoggedFeedback:
    return LoggedFeedback(REWARD, ACTION, PSCORE, n_actions=3)


def test_estimates_equal_hand_computed_values():
    # w = [0.8/0.5, 0.6/0.25, 0.5/0.25, 1.0/0.5] = [1.6, 2.4, 2.0, 2.0]
    # IPS = (1.6*1 + 0 + 2.0*1 + 0) / 4 = 0.9 ; SNIPS = 3.6 / 8.0 = 0.45
    # DM per round = [0.51, 0.20, 0.35, 0.50] -> mean 0.39
    # DR per round = DM + w * (r - q_shown) = [0.51 + 1.6*0.4, 0.20 - 2.4*0.1,
    #                0.35 + 2.0*0.6, 0.50 - 2.0*0.5] = [1.15, -0.04, 1.55, -0.5] -> 0.54
    estimates = evaluate_policy(feedback(), TARGET, q_hat=Q_HAT, n_bootstrap=0)
    assert estimates["ips"].value == pytest.approx(0.9)
    assert estimates["snips"].value == pytest.approx(0.45)
    assert estimates["dm"].value == pytest.approx(0.39)
    assert estimates["dr"].value == pytest.approx(0.54)
    assert estimates["ips"].effective_sample_size == pytest.approx(8.0**2 / 16.32)


def test_clipping_caps_weights_and_reports_it():
    estimates = evaluate_policy(feedback(), TARGET, max_weight=2.0, n_bootstrap=0)
    # w = [1.6, 2.0, 2.0, 2.0] -> IPS = (1.6 + 2.0) / 4
    assert estimates["ips"].value == pytest.approx(0.9)
    assert estimates["ips"].max_weight == 2.0
    assert estimates["ips"].clipped_share == pytest.approx(0.25)
    clipped = evaluate_policy(feedback(), TARGET, max_weight=1.0, n_bootstrap=0)
    assert clipped["ips"].value == pytest.approx(0.5)


def test_without_a_reward_model_only_weighting_estimators_run():
    estimates = evaluate_policy(feedback(), target_prob=np.array([0.8, 0.6, 0.5, 1.0]))
    assert set(estimates) == {"ips", "snips"}
    assert estimates["ips"].ci_low <= estimates["ips"].value <= estimates["ips"].ci_high


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pscore": np.array([0.5, 0.0, 0.25, 0.5])}, "propensities must be in"),
        ({"pscore": np.array([0.5, 1.5, 0.25, 0.5])}, "propensities must be in"),
        ({"action": np.array([0, 1, 3, 0])}, "actions must be in"),
        ({"reward": np.array([1.0, np.nan, 1.0, 0.0])}, "rewards must be finite"),
        ({"pscore": np.array([0.5, 0.25, 0.25])}, "pscore has 3 rows"),
    ],
)
def test_bad_logged_data_is_refused_with_a_clear_error(change, message):
    arguments = {"reward": REWARD, "action": ACTION, "pscore": PSCORE} | change
    with pytest.raises(OpeInputError, match=message):
        LoggedFeedback(**arguments, n_actions=3)


def test_bad_target_policies_are_refused():
    with pytest.raises(OpeInputError, match="sum to 1"):
        evaluate_policy(feedback(), TARGET * 0.5)
    with pytest.raises(OpeInputError, match="n_rounds x n_actions"):
        evaluate_policy(feedback(), TARGET[:, :2])
    with pytest.raises(OpeInputError, match="give target_dist or target_prob"):
        evaluate_policy(feedback())
    with pytest.raises(OpeInputError, match="true value of 0"):
        relative_error(0.1, 0.0)


def test_estimators_recover_a_known_policy_value():
    """A contextual bandit with known click probabilities: IPS, SNIPS and DR are unbiased."""
    rng = np.random.default_rng(7)
    n, k = 100_000, 5
    true_q = rng.uniform(0.01, 0.3, size=(n, k))
    logging = np.exp(rng.normal(size=(n, k)))
    logging /= logging.sum(axis=1, keepdims=True)
    target = np.exp(4 * true_q)
    target /= target.sum(axis=1, keepdims=True)
    action = (logging.cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    reward = (rng.uniform(size=n) < true_q[np.arange(n), action]).astype(float)
    logged = LoggedFeedback(reward, action, logging[np.arange(n), action], n_actions=k)
    truth = float((target * true_q).sum(axis=1).mean())
    noisy_model = np.clip(true_q + rng.normal(0, 0.05, size=(n, k)), 0, 1)
    estimates = evaluate_policy(
        logged, target, q_hat=noisy_model, n_bootstrap=200, confidence=0.999, seed=1
    )
    for name in ("ips", "snips", "dr"):
        assert relative_error(estimates[name].value, truth) < 0.03, name
        assert estimates[name].ci_low <= truth <= estimates[name].ci_high, name
    # DR with a decent model has a narrower interval than IPS.
    width = {name: e.ci_high - e.ci_low for name, e in estimates.items()}
    assert width["dr"] < width["ips"]


def test_tabular_reward_model_smooths_toward_the_slot_mean():
    action = np.array([0, 0, 1, 1, 1])
    position = np.array([0, 0, 0, 1, 1])
    reward = np.array([1.0, 1.0, 0.0, 0.0, 1.0])
    table = tabular_ctr(action, position, reward, n_actions=3, n_positions=2, prior_strength=1.0)
    slot0 = 2 / 3
    assert table[0, 0] == pytest.approx((2 + slot0) / 3)
    assert table[0, 2] == pytest.approx(slot0)  # never shown in slot 0
    q_hat = cross_fitted_q_hat(action, position, reward, 3, 2, folds=2)
    assert q_hat.shape == (5, 3)
    assert np.all((q_hat >= 0) & (q_hat <= 1))
