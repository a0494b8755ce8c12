"""Evidently drift report over 1M rows x 50 features per window: seconds and peak memory.

Target (issue 8): at most 60 s and under 4 GB on this 2-core machine. Evidently's cost is
per column (histograms, plotly figures) and per row, so each window is a seeded uniform
sample of ``monitor.features.max_rows`` rows (default 50,000) before the report. To show
the sample keeps the detection power, the current window shifts columns by graded amounts
(some below, some above the 0.1 threshold) and the bench compares the report's verdicts
with exact scores computed on all 1M rows (normed Wasserstein, Jensen-Shannon).
Each run is a fresh process (its own peak RSS).
"""

from __future__ import annotations

import argparse
import json

from bench.common import conditions, run_child, save

CHILD = """
import json, resource, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from scipy.stats import wasserstein_distance
from monitoring.config import FeatureDriftParams
from scipy.spatial.distance import jensenshannon  # natural log, as Evidently
from monitoring.report import feature_drift_report

rows, numerical, categorical, max_rows = {rows}, {numerical}, {categorical}, {max_rows}
rng = np.random.default_rng(8)
# Shifts in reference standard deviations: graded around the 0.1 threshold.
num_shift = [0.0, 0.03, 0.06, 0.15, 0.3, 0.6] + [0.0] * (numerical - 6)
cat_tilt = [0.0, 0.05, 0.6, 1.5] + [0.0] * (categorical - 4)
levels = np.array(list("abcdefgh"))

def window(current):
    data = {{}}
    for i in range(numerical):
        shift = num_shift[i] if current else 0.0
        if i % 2:
            data[f"num_{{i}}"] = rng.normal(shift, 1.0, rows)
        else:  # skewed, std sqrt(2): shifted by the same number of standard deviations
            data[f"num_{{i}}"] = rng.gamma(2.0, 1.0, rows) + shift * np.sqrt(2)
    for i in range(categorical):
        p = np.linspace(1, 2, len(levels)) ** ((cat_tilt[i] if current else 0.0) * 3)
        data[f"cat_{{i}}"] = levels[rng.choice(len(levels), rows, p=p / p.sum())]
    data["clicked"] = (rng.random(rows) < 0.05).astype(int)
    data["domain"] = np.array(["news", "video", "ad"])[rng.integers(0, 3, rows)]
    return pd.DataFrame(data)

import_began = time.perf_counter()
import evidently.metrics, evidently.metrics.group_by  # once per process, timed apart
import_seconds = time.perf_counter() - import_began
reference, current = window(False), window(True)
columns = {{f"num_{{i}}": "numerical" for i in range(numerical)}}
columns |= {{f"cat_{{i}}": "categorical" for i in range(categorical)}}
began = time.perf_counter()
cpu0 = resource.getrusage(resource.RUSAGE_SELF)
params = FeatureDriftParams(max_rows=max_rows)
snapshot, summary = feature_drift_report(reference, current, columns, params, seed=1)
seconds = time.perf_counter() - began
cpu1 = resource.getrusage(resource.RUSAGE_SELF)

exact = {{}}
for name, kind in columns.items():
    ref, cur = reference[name].to_numpy(), current[name].to_numpy()
    if kind == "numerical":
        exact[name] = wasserstein_distance(ref, cur) / np.std(ref)
    else:
        p = pd.Series(ref).value_counts(normalize=True).reindex(levels, fill_value=0).to_numpy()
        q = pd.Series(cur).value_counts(normalize=True).reindex(levels, fill_value=0).to_numpy()
        exact[name] = float(jensenshannon(p, q))
def threshold(name):
    return params.num_threshold if columns[name] == "numerical" else params.cat_threshold

agree = all((exact[n] >= threshold(n)) == summary.columns[n]["drifted"] for n in columns)
errors = [abs(summary.columns[n]["score"] - exact[n]) for n in columns]
print(json.dumps({{
    "rows_per_window": rows,
    "features": numerical + categorical,
    "sampled_rows": summary.sampled_rows,
    "seconds": round(seconds, 2),
    "evidently_import_seconds": round(import_seconds, 2),
    "cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "drifted_sample": sorted(summary.drifted),
    "drifted_exact": sorted(n for n in columns if exact[n] >= threshold(n)),
    "verdicts_agree": agree,
    "max_abs_score_error": round(max(errors), 4),
    "scores_sample_vs_exact": {{
        n: [summary.columns[n]["score"], round(exact[n], 4)]
        for n in columns
        if n[-2:] in ("_0", "_1", "_2", "_3", "_4", "_5")
    }},
}}))
"""


def measure(rows: int, max_rows: int, numerical: int = 40, categorical: int = 10) -> dict:
    code = CHILD.format(rows=rows, numerical=numerical, categorical=categorical, max_rows=max_rows)
    return run_child(code)


def main(quick: bool = False) -> dict:
    import os

    rows = 200_000 if quick else 1_000_000
    run = measure(rows, max_rows=50_000)
    result = {
        **conditions(),
        "load_average_1min": round(os.getloadavg()[0], 1),
        **run,
        "target_seconds": 60,
        "target_peak_rss_mb": 4096,
    }
    save("monitoring", result)
    return result


def table(result: dict) -> str:
    keys = [
        "rows_per_window",
        "features",
        "sampled_rows",
        "seconds",
        "cpu_seconds",
        "evidently_import_seconds",
        "peak_rss_mb",
        "verdicts_agree",
        "max_abs_score_error",
        "load_average_1min",
    ]
    width = max(len(k) for k in keys)
    return "\n".join(f"{k:<{width}}  {result[k]}" for k in keys)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200k rows instead of 1M")
    outcome = main(parser.parse_args().quick)
    print(table(outcome))
    print(json.dumps(outcome, indent=2))
