"""Off-policy evaluation: IPS, self-normalised IPS, the direct method and doubly robust.

Every estimator answers "what click rate would the *target* policy get?" from rounds logged by
another policy, using the logged propensity of each shown item. Notation for ``n`` logged
rounds and ``K`` actions:

- ``reward``: ``n`` observed rewards (clicks, 0/1), ``action``: ``n`` shown action indices;
- ``pscore``: ``n`` logged propensities, the logging policy's probability of the shown action
  in its slot (``muma.contract``'s ``propensity``);
- ``target_prob``: ``n`` target-policy probabilities of the *shown* action in that slot;
- ``target_dist``: ``n x K`` target-policy distribution over actions per round;
- ``q_hat``: ``n x K`` reward model predictions per round and action.

Weights are ``w = target_prob / pscore``, clipped at ``max_weight`` when given (clipping trades
variance for a downward bias). Confidence intervals are percentile bootstrap intervals over
rounds with the reward model held fixed: they carry the sampling error of the rounds, not the
error of ``q_hat`` itself, so the direct method's interval is too narrow to judge its bias.

References: Horvitz & Thompson (1952); Swaminathan & Joachims (2015, SNIPS);
Dudik, Langford & Li (2011, DR).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

Estimator = Literal["ips", "snips", "dm", "dr"]
ESTIMATORS: tuple[Estimator, ...] = ("ips", "snips", "dm", "dr")


class OpeInputError(ValueError):
    """Logged data or target policy that no estimator can use (shapes, ranges, support)."""


@dataclass(frozen=True)
class LoggedFeedback:
    """Rounds logged by a stochastic policy with exact propensities.

    Attributes:
        reward: ``n`` rewards in [0, 1].
        action: ``n`` shown action indices in ``[0, n_actions)``.
        pscore: ``n`` logged propensities in (0, 1].
        n_actions: Number of actions ``K``.
        position: Optional ``n`` slot indices (0-based), for slot-wise reward models.
    """

    reward: np.ndarray
    action: np.ndarray
    pscore: np.ndarray
    n_actions: int
    position: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.reward)
        if n == 0:
            raise OpeInputError("no logged rounds")
        for name in ("action", "pscore") + (("position",) if self.position is not None else ()):
            if len(getattr(self, name)) != n:
                raise OpeInputError(f"{name} has {len(getattr(self, name))} rows, reward has {n}")
        if not np.all(np.isfinite(self.reward)) or self.reward.min() < 0 or self.reward.max() > 1:
            raise OpeInputError("rewards must be finite and in [0, 1]")
        if self.action.min() < 0 or self.action.max() >= self.n_actions:
            raise OpeInputError(f"actions must be in [0, {self.n_actions})")
        if not np.all(np.isfinite(self.pscore)) or self.pscore.min() <= 0 or self.pscore.max() > 1:
            raise OpeInputError(
                f"logged propensities must be in (0, 1]; found min {self.pscore.min()!r}, "
                f"max {self.pscore.max()!r} (placeholder propensities cannot be used for IPS)"
            )

    @property
    def n_rounds(self) -> int:
        return len(self.reward)


@dataclass(frozen=True)
class OpeEstimate:
    """One estimator's estimate of the target policy's mean reward, with its diagnostics.

    Attributes:
        estimator: ``ips``, ``snips``, ``dm`` or ``dr``.
        value: Point estimate.
        ci_low: Lower end of the bootstrap confidence interval.
        ci_high: Upper end.
        confidence: Level of the interval, e.g. 0.95.
        n_rounds: Logged rounds used.
        effective_sample_size: ``(sum w)^2 / sum w^2`` of the (clipped) weights.
        max_weight: Largest weight after clipping.
        clipped_share: Share of rounds whose weight was clipped.
    """

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    confidence: float
    n_rounds: int
    effective_sample_size: float
    max_weight: float
    clipped_share: float

    def as_dict(self) -> dict:
        return asdict(self)


def importance_weights(
    target_prob: np.ndarray, pscore: np.ndarray, max_weight: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(w, clipped)``: ``target_prob / pscore``, clipped at ``max_weight`` when given."""
    if np.any(target_prob < 0) or np.any(target_prob > 1):
        raise OpeInputError("target probabilities must be in [0, 1]")
    weights = target_prob / pscore
    clipped = np.zeros(weights.shape, dtype=bool)
    if max_weight is not None:
        if max_weight <= 0:
            raise OpeInputError("max_weight must be positive")
        clipped = weights > max_weight
        weights = np.minimum(weights, max_weight)
    return weights, clipped


def _check_matrix(name: str, matrix: np.ndarray, feedback: LoggedFeedback) -> None:
    if matrix.shape != (feedback.n_rounds, feedback.n_actions):
        raise OpeInputError(
            f"{name} must be n_rounds x n_actions = {feedback.n_rounds} x {feedback.n_actions}, "
            f"got {matrix.shape}"
        )


def target_prob_of_shown(target_dist: np.ndarray, feedback: LoggedFeedback) -> np.ndarray:
    """``n`` target probabilities of the shown actions, read from ``n x K`` distributions."""
    _check_matrix("target_dist", target_dist, feedback)
    sums = target_dist.sum(axis=1)
    if np.any(np.abs(sums - 1) > 1e-6):
        raise OpeInputError("each row of target_dist must sum to 1")
    return target_dist[np.arange(feedback.n_rounds), feedback.action]


def _per_round_terms(
    feedback: LoggedFeedback,
    weights: np.ndarray,
    target_dist: np.ndarray | None,
    q_hat: np.ndarray | None,
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Per-round numerators (and SNIPS denominators) whose means give each estimate."""
    terms: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        "ips": (weights * feedback.reward, None),
        "snips": (weights * feedback.reward, weights),
    }
    if target_dist is not None and q_hat is not None:
        direct = (target_dist * q_hat).sum(axis=1)
        shown_q = q_hat[np.arange(feedback.n_rounds), feedback.action]
        terms["dm"] = (direct, None)
        terms["dr"] = (direct + weights * (feedback.reward - shown_q), None)
    return terms


def _estimate(numerator: np.ndarray, denominator: np.ndarray | None, axis: int = -1):
    if denominator is None:
        return numerator.mean(axis=axis)
    total = denominator.sum(axis=axis)
    return np.where(total > 0, numerator.sum(axis=axis) / np.where(total > 0, total, 1), np.nan)


def evaluate_policy(
    feedback: LoggedFeedback,
    target_dist: np.ndarray | None = None,
    *,
    target_prob: np.ndarray | None = None,
    q_hat: np.ndarray | None = None,
    max_weight: float | None = None,
    n_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, OpeEstimate]:
    """Estimate the target policy's mean reward with every estimator its inputs allow.

    IPS and SNIPS need the target probability of each shown action (``target_prob``, or read
    from ``target_dist``); DM and DR also need ``target_dist`` and the reward model ``q_hat``.

    Args:
        feedback: The logged rounds.
        target_dist: ``n x K`` target distributions (rows sum to 1).
        target_prob: ``n`` target probabilities of the shown actions (instead of target_dist).
        q_hat: ``n x K`` reward model predictions, for DM and DR.
        max_weight: Clip importance weights at this value (None: no clipping).
        n_bootstrap: Bootstrap resamples for the confidence intervals (0: no interval).
        confidence: Interval level.
        seed: Bootstrap seed.

    Returns:
        Estimates by estimator name.

    Raises:
        OpeInputError: Inconsistent shapes, out-of-range values, or no target probabilities.
    """
    if target_dist is not None:
        shown = target_prob_of_shown(target_dist, feedback)
        if target_prob is not None and not np.allclose(shown, target_prob):
            raise OpeInputError("target_prob disagrees with target_dist")
        target_prob = shown
    if target_prob is None:
        raise OpeInputError("give target_dist or target_prob")
    if len(target_prob) != feedback.n_rounds:
        raise OpeInputError(f"target_prob has {len(target_prob)} rows, not {feedback.n_rounds}")
    if q_hat is not None:
        _check_matrix("q_hat", q_hat, feedback)
    weights, clipped = importance_weights(target_prob, feedback.pscore, max_weight)
    ess = float(weights.sum() ** 2 / (weights**2).sum()) if weights.any() else 0.0
    terms = _per_round_terms(feedback, weights, target_dist, q_hat)

    rng = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    estimates = {}
    for name, (numerator, denominator) in terms.items():
        value = float(_estimate(numerator, denominator))
        low = high = float("nan")
        if n_bootstrap > 0:
            samples = np.empty(n_bootstrap)
            # Resample in chunks: all n_bootstrap x n indices at once cost 8 bytes each.
            chunk = max(1, 2_000_000 // feedback.n_rounds)
            for begin in range(0, n_bootstrap, chunk):
                size = min(chunk, n_bootstrap - begin)
                index = rng.integers(0, feedback.n_rounds, size=(size, feedback.n_rounds))
                samples[begin : begin + size] = _estimate(
                    numerator[index], None if denominator is None else denominator[index]
                )
            low, high = (float(q) for q in np.nanquantile(samples, [tail, 1 - tail]))
        estimates[name] = OpeEstimate(
            estimator=name,
            value=value,
            ci_low=low,
            ci_high=high,
            confidence=confidence,
            n_rounds=feedback.n_rounds,
            effective_sample_size=ess,
            max_weight=float(weights.max()),
            clipped_share=float(clipped.mean()),
        )
    return estimates


def relative_error(estimate: float, truth: float) -> float:
    """``|estimate - truth| / truth``."""
    if truth == 0:
        raise OpeInputError("relative error against a true value of 0 is undefined")
    return abs(estimate - truth) / abs(truth)
