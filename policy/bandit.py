"""Neural-linear exploration: a Bayesian linear model on the ranker's last hidden layer.

The ranker's penultimate activations ``h`` (``D`` floats per candidate) are a learned
representation; a ridge-regression posterior over them, kept per domain, says how well each
direction of that space has been observed. Its upper-confidence bonus
``alpha * sqrt(h^T A^-1 h)`` is added to the ranker's logit, so candidates unlike anything
recently shown look better, and shrinks as clicks and non-clicks on similar items arrive
(Riquelme et al. 2018, "Deep Bayesian bandits showdown"; Li et al. 2010, LinUCB).
"""

from __future__ import annotations

import numpy as np


class NeuralLinearUCB:
    """Per-domain ridge posterior on hidden features, giving optimism bonuses.

    Args:
        dim: Hidden feature size ``D``.
        domains: Domain names, one posterior each.
        ridge: Prior precision ``lambda`` (``A = lambda * I + sum h h^T``).
        alpha: Width multiplier of the bonus.
    """

    def __init__(self, dim: int, domains: list[str], ridge: float = 1.0, alpha: float = 1.0):
        if dim <= 0 or ridge <= 0 or alpha < 0:
            raise ValueError("dim and ridge must be positive, alpha non-negative")
        self.dim, self.ridge, self.alpha = dim, ridge, alpha
        self.precision = {domain: ridge * np.eye(dim) for domain in domains}
        self.response = {domain: np.zeros(dim) for domain in domains}
        self._covariance = {domain: np.eye(dim) / ridge for domain in domains}
        self.observations = dict.fromkeys(domains, 0)

    def _check(self, domain: str, hidden: np.ndarray) -> None:
        if domain not in self.precision:
            raise KeyError(f"unknown domain {domain!r}; known: {sorted(self.precision)}")
        if hidden.shape[-1] != self.dim:
            raise ValueError(f"hidden features have {hidden.shape[-1]} dims, expected {self.dim}")

    def update(self, domain: str, hidden: np.ndarray, reward: np.ndarray) -> None:
        """Add ``N x D`` shown candidates' features and their ``N`` rewards to ``domain``."""
        self._check(domain, hidden)
        self.precision[domain] += hidden.T @ hidden
        self.response[domain] += hidden.T @ reward
        self._covariance[domain] = np.linalg.inv(self.precision[domain])
        self.observations[domain] += len(hidden)

    def width(self, domain: str, hidden: np.ndarray) -> np.ndarray:
        """``... x D`` features -> ``...`` posterior widths ``sqrt(h^T A^-1 h)``."""
        self._check(domain, hidden)
        quad = np.einsum("...d,de,...e->...", hidden, self._covariance[domain], hidden)
        return np.sqrt(np.maximum(quad, 0.0))

    def bonus(self, domain: str, hidden: np.ndarray) -> np.ndarray:
        """``... x D`` features -> ``...`` bonuses ``alpha * sqrt(h^T A^-1 h)``."""
        return self.alpha * self.width(domain, hidden)

    def sample_direction(self, domain: str, rng: np.random.Generator) -> np.ndarray:
        """A ``D`` draw ``theta ~ N(0, A^-1)``: the posterior's spread around its mean."""
        if domain not in self.precision:
            raise KeyError(f"unknown domain {domain!r}; known: {sorted(self.precision)}")
        factor = np.linalg.cholesky(self._covariance[domain])  # D x D, L L^T = A^-1
        return factor @ rng.standard_normal(self.dim)

    def mean_reward(self, domain: str, hidden: np.ndarray) -> np.ndarray:
        """``... x D`` features -> the posterior mean ``h^T A^-1 b``."""
        self._check(domain, hidden)
        return hidden @ (self._covariance[domain] @ self.response[domain])
