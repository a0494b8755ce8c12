"""The estimators checked on the Open Bandit Dataset (Saito et al. 2020) sample.

The dataset logs the same ZOZOTOWN carousel under two policies in the same week: uniform
random and Bernoulli Thompson sampling (BTS). Each log's own click rate is the on-policy truth
for its policy, so each estimator can be judged by estimating one policy's click rate from the
*other* policy's log:

- ``bts_from_random``: target BTS, logged by the random policy (propensity 1/80 per slot).
  BTS's own action distribution is not published beside the logs (``obp`` rebuilds it from
  its prior file, which this project does not ship); it is estimated as BTS's empirical
  selection frequency per slot over the week, a consistent estimate of its time-averaged
  distribution. Time variation of BTS's posterior during the week is ignored.
- ``random_from_bts``: target uniform random (exactly known), logged by BTS with its exact
  logged propensities. BTS shows some items very rarely, so the weights are heavy-tailed.

Rounds are (impression, slot) pairs, as in ``obp``'s position-wise evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .ope import LoggedFeedback, evaluate_policy, relative_error
from .reward_model import cross_fitted_q_hat

POLICIES = ("random", "bts")
DIRECTIONS = {"bts_from_random": ("random", "bts"), "random_from_bts": ("bts", "random")}
"""direction -> (logging policy, target policy)."""


@dataclass(frozen=True)
class ObdLog:
    """One OBD log as arrays: 0-based item index and slot, click, logged propensity."""

    policy: str
    campaign: str
    item: np.ndarray
    position: np.ndarray
    click: np.ndarray
    pscore: np.ndarray
    n_items: int
    n_positions: int

    @property
    def ctr(self) -> float:
        return float(self.click.mean())

    def feedback(self) -> LoggedFeedback:
        return LoggedFeedback(
            reward=self.click,
            action=self.item,
            pscore=self.pscore,
            n_actions=self.n_items,
            position=self.position,
        )

    def selection_frequency(self) -> np.ndarray:
        """``n_positions x n_items``: share of each slot's rounds that showed each item."""
        counts = np.zeros((self.n_positions, self.n_items))
        np.add.at(counts, (self.position, self.item), 1.0)
        return counts / counts.sum(axis=1, keepdims=True)


def load_obd_log(root: Path, policy: str, campaign: str = "all") -> ObdLog:
    """Read ``<root>/<policy>/<campaign>/<campaign>.csv`` and its item count.

    Raises:
        FileNotFoundError: The log or its item_context.csv is missing.
        ValueError: Unknown policy, or positions/items outside the item context.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
    folder = Path(root) / policy / campaign
    log = pd.read_csv(
        folder / f"{campaign}.csv", usecols=["item_id", "position", "click", "propensity_score"]
    )
    n_items = len(pd.read_csv(folder / "item_context.csv", usecols=["item_id"]))
    if log["item_id"].min() < 0 or log["item_id"].max() >= n_items:
        raise ValueError(f"{folder}: item ids outside item_context.csv's {n_items} items")
    if log["position"].min() < 1:
        raise ValueError(f"{folder}: positions are 1-based")
    return ObdLog(
        policy=policy,
        campaign=campaign,
        item=log["item_id"].to_numpy(np.int64),
        position=log["position"].to_numpy(np.int64) - 1,
        click=log["click"].to_numpy(np.float64),
        pscore=log["propensity_score"].to_numpy(np.float64),
        n_items=n_items,
        n_positions=int(log["position"].max()),
    )


def target_distribution(target: ObdLog, logged: ObdLog) -> np.ndarray:
    """``n x K``: the target policy's distribution over items for each logged round's slot."""
    if target.policy == "random":
        return np.full((logged.item.size, logged.n_items), 1.0 / logged.n_items)
    return target.selection_frequency()[logged.position]


def cross_policy_check(
    root: Path,
    campaign: str = "all",
    max_weight: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> dict:
    """Estimate each policy's click rate from the other's log; compare with its own log.

    Returns:
        ``{direction: {truth, logged_ctr, estimates: {name: estimate dict + relative_error
        + covers_truth}}}`` for both directions.
    """
    logs = {policy: load_obd_log(root, policy, campaign) for policy in POLICIES}
    report = {}
    for direction, (logging, target) in DIRECTIONS.items():
        logged, truth_log = logs[logging], logs[target]
        dist = target_distribution(truth_log, logged)
        q_hat = cross_fitted_q_hat(
            logged.item,
            logged.position,
            logged.click,
            logged.n_items,
            logged.n_positions,
            seed=seed,
        )
        estimates = evaluate_policy(
            logged.feedback(),
            dist,
            q_hat=q_hat,
            max_weight=max_weight,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
        truth = truth_log.ctr
        report[direction] = {
            "logging_policy": logging,
            "target_policy": target,
            "campaign": campaign,
            "rounds": logged.item.size,
            "truth": truth,
            "logged_ctr": logged.ctr,
            "max_weight_clip": max_weight,
            "estimates": {
                name: estimate.as_dict()
                | {
                    "relative_error": relative_error(estimate.value, truth),
                    "covers_truth": estimate.ci_low <= truth <= estimate.ci_high,
                }
                for name, estimate in estimates.items()
            },
        }
    return report
