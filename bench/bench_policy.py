"""Online CTR per policy and regret against the oracle in the simulated closed loop.

Runs :func:`policy.loop.run_loop` (what ``muma policy simulate`` runs): random, popularity,
the greedy MUMA ranker, the bandit, the unweighted bandit and the oracle serve the same
simulated users hour by hour, learning policies retrain daily on their own logs, and the
simulator's true click probabilities judge every slate. Figures are medians over seeds;
each seed is a fresh process (its own peak memory).

Target (issue 6): the bandit reaches at least 90% of the oracle's CTR and beats the greedy
ranker by 5% under drift. The full run uses ``policy.loop`` of params.yaml; ``--quick``
shrinks the world (2 days, 300 users, 300 items, 20 candidates, 1 epoch); three seeds either way.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import yaml

from bench.common import conditions, med, run_child, save

PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"
QUICK = {
    "days": 2,
    "users": 300,
    "items": 300,
    "shock_day": 1,
    "candidates": 20,
    "train": {"epochs": 1},
}

CHILD = """
import json, resource
from policy.loop import LoopParams, run_loop
params = LoopParams.model_validate(json.loads({params!r}))
report = run_loop(params, seed={seed})
report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(report))
"""


def loop_params(quick: bool) -> dict:
    """``policy.loop`` of params.yaml, shrunk by :data:`QUICK` in quick mode."""
    params = yaml.safe_load(PARAMS.read_text())["policy"]["loop"]
    if quick:
        train = {**params.get("train", {}), **QUICK["train"]}
        params = {**params, **QUICK, "train": train}
    return params


def summarise(reports: list[dict]) -> dict:
    """Per policy: medians over seeds of CTR, expected CTR, share of the oracle and regret."""
    policies = {}
    for name in reports[0]["policies"]:
        runs = [report["policies"][name] for report in reports]
        oracle = [report["policies"].get("oracle") for report in reports]
        entry = {
            "impressions": runs[0]["impressions"],
            "ctr_median": round(med([r["ctr"] for r in runs]), 5),
            "ctr_runs": [round(r["ctr"], 5) for r in runs],
            "expected_ctr_median": round(med([r["expected_ctr"] for r in runs]), 5),
        }
        if all(o is not None for o in oracle):
            entry["share_of_oracle_median"] = round(med([r["share_of_oracle"] for r in runs]), 4)
            entry["regret_clicks_median"] = round(med([r["regret_clicks"] for r in runs]), 1)
            entry["regret_per_impression_median"] = round(
                med(
                    [
                        o["expected_ctr"] - r["expected_ctr"]
                        for o, r in zip(oracle, runs, strict=True)
                    ]
                ),
                5,
            )
        policies[name] = entry
    result = {"policies": policies}
    for key in ("bandit_vs_greedy_relative", "debiased_vs_unweighted_relative"):
        values = [report[key] for report in reports if report.get(key) is not None]
        if values:
            result[f"{key}_median"] = round(med(values), 4)
    return result


def main(quick: bool = False, seeds: int | None = None) -> dict:
    params = loop_params(quick)
    seeds = seeds or 3
    reports = [
        run_child(CHILD.format(params=json.dumps(params, default=str), seed=seed))
        for seed in range(seeds)
    ]
    result = {
        **conditions(),
        "load_average_1m_after": round(os.getloadavg()[0], 1),
        "quick": quick,
        "seeds": seeds,
        "days": params["days"],
        "users": params["users"],
        "items": params["items"],
        "candidates": params["candidates"],
        "slate_size": params["slate_size"],
        "shock_day": params["shock_day"],
        "seconds_runs": [report["seconds"] for report in reports],
        "peak_rss_mb_max": round(max(report["peak_rss_mb"] for report in reports), 1),
        **summarise(reports),
        "target_share_of_oracle": 0.9,
        "target_bandit_vs_greedy_relative": 0.05,
    }
    save("policy", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2 days, 300 users, 300 items")
    parser.add_argument("--seeds", type=int, help="seeds to run (default 3)")
    arguments = parser.parse_args()
    print(json.dumps(main(arguments.quick, arguments.seeds), indent=2))
