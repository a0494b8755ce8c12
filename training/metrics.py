"""Offline ranking metrics, overall and per domain (numpy/scipy, vectorised; no sklearn).

* AUC: Mann-Whitney with average ranks for tied scores.
* GAUC: per-user AUC weighted by the user's impressions; users with one class are skipped.
* Log loss, with probabilities clipped to ``[1e-7, 1 - 1e-7]``.
* ECE: expected calibration error over equal-width probability bins.
* NDCG@k and HR@k per request (grouped by request id), averaged over requests with at least one
  click; score ties are broken by input order.
* Pearson and Spearman correlation with the true click probability (simulated data only).

A metric that is undefined on the data (one class only, no clicked request) is ``None``, so the
JSON written to ``metrics/`` never holds NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

_EPSILON = 1e-7


@dataclass(frozen=True, slots=True)
class MetricSet:
    """Metrics of one slice (overall or one domain)."""

    rows: int
    clicks: int
    auc: float | None
    gauc: float | None
    log_loss: float
    ece: float
    ndcg_at_k: float | None
    hr_at_k: float | None
    pearson: float | None
    spearman: float | None


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Metrics overall and per domain.

    Attributes:
        k: Cut-off of NDCG and HR.
        overall: All rows.
        per_domain: Domain label -> metrics of its rows.
    """

    k: int
    overall: MetricSet
    per_domain: dict[str, MetricSet]

    def as_dict(self) -> dict:
        """JSON-ready: ``{"k": .., "overall": {..}, "per_domain": {domain: {..}}}``."""
        return {
            "k": self.k,
            "overall": asdict(self.overall),
            "per_domain": {domain: asdict(metrics) for domain, metrics in self.per_domain.items()},
        }


def _labels(clicked: ArrayLike) -> NDArray[np.float64]:
    labels = np.asarray(clicked, dtype=np.float64).reshape(-1)
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("click labels must be 0 or 1")
    return labels


def _scores(scores: ArrayLike, size: int, name: str = "scores") -> NDArray[np.float64]:
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    if values.shape[0] != size:
        raise ValueError(f"{name} has {values.shape[0]} rows, labels have {size}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite")
    return values


def _probabilities(probabilities: ArrayLike, size: int) -> NDArray[np.float64]:
    values = _scores(probabilities, size, "probabilities")
    if ((values < 0) | (values > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    return values


def auc(clicked: ArrayLike, scores: ArrayLike) -> float | None:
    """Area under the ROC curve; ``None`` when only one class is present.

    Args:
        clicked: ``N`` labels in {0, 1}.
        scores: ``N`` scores (any monotone transform gives the same AUC).
    """
    labels = _labels(clicked)
    values = _scores(scores, labels.size)
    positives = labels.sum()
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = stats.rankdata(values)  # average ranks for ties
    return float(
        (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


def gauc(clicked: ArrayLike, scores: ArrayLike, user_id: ArrayLike) -> float | None:
    """Impression-weighted mean of per-user AUC over users with both classes.

    Args:
        clicked: ``N`` labels.
        scores: ``N`` scores.
        user_id: ``N`` user keys (any hashable dtype numpy can sort).

    Returns:
        The GAUC, or ``None`` when no user has both a click and a non-click.
    """
    labels = _labels(clicked)
    values = _scores(scores, labels.size)
    users = np.asarray(user_id).reshape(-1)
    if users.size != labels.size:
        raise ValueError(f"user_id has {users.size} rows, labels have {labels.size}")
    if labels.size == 0:
        return None
    _, group = np.unique(users, return_inverse=True)
    dense_score = stats.rankdata(values, method="dense").astype(np.int64)
    # One sortable key per (user, score): ranks tie only within a user's equal scores.
    key = group.astype(np.int64) * (int(dense_score.max()) + 1) + dense_score
    ranks = stats.rankdata(key)  # global average ranks
    sizes = np.bincount(group)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # rows of earlier users
    local = ranks - offsets[group]  # rank within the user's rows
    positives = np.bincount(group, weights=labels, minlength=sizes.size)
    negatives = sizes - positives
    rank_sum = np.bincount(group, weights=local * labels, minlength=sizes.size)
    both = (positives > 0) & (negatives > 0)
    if not both.any():
        return None
    per_user = (rank_sum[both] - positives[both] * (positives[both] + 1) / 2) / (
        positives[both] * negatives[both]
    )
    return float(np.average(per_user, weights=sizes[both]))


def log_loss(clicked: ArrayLike, probabilities: ArrayLike) -> float:
    """Mean binary cross-entropy of predicted click probabilities.

    Raises:
        ValueError: Empty input, labels not in {0, 1}, probabilities outside ``[0, 1]``.
    """
    labels = _labels(clicked)
    if labels.size == 0:
        raise ValueError("log loss of no rows")
    clipped = np.clip(_probabilities(probabilities, labels.size), _EPSILON, 1 - _EPSILON)
    return float(-np.mean(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped)))


def expected_calibration_error(
    clicked: ArrayLike, probabilities: ArrayLike, bins: int = 10
) -> float:
    """``sum_b (n_b / N) * |mean predicted_b - click rate_b|`` over equal-width bins.

    Args:
        clicked: ``N`` labels.
        probabilities: ``N`` predicted click probabilities.
        bins: Number of bins over ``[0, 1]``; 1.0 falls in the last bin.
    """
    labels = _labels(clicked)
    if labels.size == 0:
        raise ValueError("calibration error of no rows")
    if bins < 1:
        raise ValueError("bins must be >= 1")
    predicted = _probabilities(probabilities, labels.size)
    index = np.minimum((predicted * bins).astype(np.int64), bins - 1)
    counts = np.bincount(index, minlength=bins)
    gap = np.abs(
        np.bincount(index, weights=predicted, minlength=bins)
        - np.bincount(index, weights=labels, minlength=bins)
    )
    return float(gap.sum() / counts.sum())


def ndcg_hr_at_k(
    clicked: ArrayLike, scores: ArrayLike, request_id: ArrayLike, k: int = 10
) -> tuple[float | None, float | None]:
    """Mean NDCG@k and HR@k over requests with at least one click.

    Within a request, rows are ranked by descending score; gain is the click (0/1) and the
    discount ``1 / log2(rank + 1)`` for 1-based ranks up to ``k``. HR@k is 1 when any click
    ranks in the top ``k``.

    Returns:
        ``(ndcg, hr)``, both ``None`` when no request has a click.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    labels = _labels(clicked)
    values = _scores(scores, labels.size)
    requests = np.asarray(request_id).reshape(-1)
    if requests.size != labels.size:
        raise ValueError(f"request_id has {requests.size} rows, labels have {labels.size}")
    if labels.size == 0:
        return None, None
    _, group = np.unique(requests, return_inverse=True)
    count = int(group.max()) + 1

    def discounted(order_key: NDArray[np.float64]) -> NDArray[np.float64]:
        # Sort by request, then descending key; stable so ties keep input order.
        order = np.lexsort((np.arange(labels.size), -order_key, group))
        sorted_group = group[order]
        starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
        sizes = np.diff(np.r_[starts, labels.size])
        rank = np.arange(labels.size) - np.repeat(starts, sizes)  # 0-based within request
        gain = np.where(rank < k, labels[order] / np.log2(rank + 2), 0.0)
        return np.bincount(sorted_group, weights=gain, minlength=count)

    dcg = discounted(values)
    ideal = discounted(labels)
    hits = np.bincount(group, weights=labels, minlength=count) > 0
    if not hits.any():
        return None, None
    ndcg = dcg[hits] / ideal[hits]
    # A hit in the top k is exactly a positive DCG.
    return float(ndcg.mean()), float((dcg[hits] > 0).mean())


def correlations(
    probabilities: ArrayLike, true_probability: ArrayLike
) -> tuple[float | None, float | None]:
    """Pearson and Spearman correlation of predictions with the true click probability.

    Returns:
        ``(pearson, spearman)``; ``None`` for fewer than two rows or a constant input.
    """
    predicted = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    truth = _scores(true_probability, predicted.size, "true_probability")
    if predicted.size < 2 or np.ptp(predicted) == 0 or np.ptp(truth) == 0:
        return None, None
    return (
        float(stats.pearsonr(predicted, truth).statistic),
        float(stats.spearmanr(predicted, truth).statistic),
    )


def _metric_set(
    clicked: NDArray[np.float64],
    probabilities: NDArray[np.float64],
    user_id: NDArray,
    request_id: NDArray,
    true_probability: NDArray[np.float64] | None,
    k: int,
    bins: int,
) -> MetricSet:
    ndcg, hit_rate = ndcg_hr_at_k(clicked, probabilities, request_id, k)
    pearson = spearman = None
    if true_probability is not None:
        pearson, spearman = correlations(probabilities, true_probability)
    return MetricSet(
        rows=int(clicked.size),
        clicks=int(clicked.sum()),
        auc=auc(clicked, probabilities),
        gauc=gauc(clicked, probabilities, user_id),
        log_loss=log_loss(clicked, probabilities),
        ece=expected_calibration_error(clicked, probabilities, bins),
        ndcg_at_k=ndcg,
        hr_at_k=hit_rate,
        pearson=pearson,
        spearman=spearman,
    )


def evaluate(
    probabilities: ArrayLike,
    clicked: ArrayLike,
    user_id: ArrayLike,
    request_id: ArrayLike,
    domain: ArrayLike,
    true_probability: ArrayLike | None = None,
    *,
    k: int = 10,
    bins: int = 10,
) -> Evaluation:
    """Every metric, overall and per domain.

    Args:
        probabilities: ``N`` predicted click probabilities (calibrated).
        clicked: ``N`` labels in {0, 1}.
        user_id: ``N`` user keys (GAUC).
        request_id: ``N`` request keys (NDCG, HR).
        domain: ``N`` domain labels; each distinct value gets its own :class:`MetricSet`.
        true_probability: ``N`` true click probabilities (simulated data), or ``None``.
        k: NDCG/HR cut-off.
        bins: ECE bins.

    Raises:
        ValueError: No rows, inputs of different lengths, or values out of range.
    """
    labels = _labels(clicked)
    if labels.size == 0:
        raise ValueError("nothing to evaluate: no rows")
    predicted = _probabilities(probabilities, labels.size)
    users = np.asarray(user_id).reshape(-1)
    requests = np.asarray(request_id).reshape(-1)
    domains = np.asarray(domain).reshape(-1)
    for name, values in {"user_id": users, "request_id": requests, "domain": domains}.items():
        if values.size != labels.size:
            raise ValueError(f"{name} has {values.size} rows, labels have {labels.size}")
    truth = None
    if true_probability is not None:
        truth = _probabilities(true_probability, labels.size)
    overall = _metric_set(labels, predicted, users, requests, truth, k, bins)
    per_domain = {}
    for value in np.unique(domains):
        rows = domains == value
        per_domain[str(value)] = _metric_set(
            labels[rows],
            predicted[rows],
            users[rows],
            requests[rows],
            None if truth is None else truth[rows],
            k,
            bins,
        )
    return Evaluation(k=k, overall=overall, per_domain=per_domain)
