"""Off-policy estimators on the real Open Bandit Dataset sample: relative errors.

Reuses :func:`policy.obd.cross_policy_check` (what ``muma policy evaluate`` runs): each of
the two logging policies' click rate is estimated from the *other* policy's log with IPS,
SNIPS, DM and DR and compared with that policy's own logged CTR. IPS and SNIPS do not
depend on the seed; DM and DR do through the cross-fitted reward model, and the intervals
through the bootstrap, so the figures are medians over seeds. Campaign ``all`` always;
the full run adds ``men`` and ``women``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.common import conditions, med, save

OBD = Path(__file__).resolve().parents[2] / "shared" / "data" / "open_bandit_dataset_sample"


def measure(root: Path, campaign: str, seeds: int, n_bootstrap: int) -> dict:
    """Median relative error, estimate and interval coverage per direction and estimator."""
    from policy.obd import cross_policy_check

    began = time.perf_counter()
    reports = [cross_policy_check(root, campaign, None, n_bootstrap, seed) for seed in range(seeds)]
    seconds = (time.perf_counter() - began) / seeds
    directions = {}
    for direction, first in reports[0].items():
        estimators = {}
        for name in first["estimates"]:
            runs = [report[direction]["estimates"][name] for report in reports]
            estimators[name] = {
                "estimate_median": med([r["value"] for r in runs]),
                "relative_error_median": round(med([r["relative_error"] for r in runs]), 4),
                "relative_error_runs": [round(r["relative_error"], 4) for r in runs],
                "covers_truth_share": sum(r["covers_truth"] for r in runs) / len(runs),
                "effective_sample_size": round(runs[0]["effective_sample_size"], 1),
            }
        directions[direction] = {
            "logging_policy": first["logging_policy"],
            "target_policy": first["target_policy"],
            "rounds": first["rounds"],
            "truth": first["truth"],
            "estimators": estimators,
        }
    return {"seconds_per_seed": round(seconds, 2), "directions": directions}


def main(quick: bool = False, root: Path = OBD) -> dict:
    if not (root / "random").is_dir():
        raise FileNotFoundError(f"no Open Bandit Dataset sample at {root}")
    seeds, n_bootstrap = (3, 200) if quick else (5, 1000)
    campaigns = ("all",) if quick else ("all", "men", "women")
    result = {
        **conditions(),
        "data": str(root.name),
        "seeds": seeds,
        "bootstrap": n_bootstrap,
        "campaigns": {
            campaign: measure(root, campaign, seeds, n_bootstrap) for campaign in campaigns
        },
    }
    save("ope", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="campaign all, 3 seeds, 200 resamples")
    print(json.dumps(main(parser.parse_args().quick), indent=2))
