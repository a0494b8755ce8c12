"""The ranker benchmark's verdicts and its DeepCTR-Torch inputs (no training here)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bench.bench_ranker import deepctr_inputs, targets


def _row(auc: float, runs: list[float] | None = None, sps: int = 12_000) -> dict:
    row = {"auc": auc, "samples_per_second_median": sps}
    if runs is not None:
        row["auc_runs"] = runs
    return row


def test_targets_report_gaps_in_auc_points_and_per_seed_medians() -> None:
    results = {
        "datasets": {
            "mind": {
                "models": {
                    "muma": _row(0.66, [0.650, 0.660, 0.670]),
                    "din": _row(0.65, [0.645, 0.640, 0.660]),
                    "deepctr_din": _row(0.68),
                    "deepctr_din-no_position": _row(0.64, [0.63, 0.64]),
                }
            }
        }
    }
    verdicts = targets(results)
    assert verdicts["mind: MUMA - DIN AUC points (target >= 1.0)"] == pytest.approx(1.0)
    # per-seed gaps 0.5, 2.0, 1.0 -> median 1.0
    key = "mind: MUMA - DIN AUC points (target >= 1.0), median of per-seed gaps"
    assert verdicts[key] == pytest.approx(1.0)
    assert verdicts["mind: MUMA - DeepCTR DIN AUC points"] == pytest.approx(-2.0)
    assert verdicts["mind: MUMA - DeepCTR DIN without the logged slot AUC points"] == (
        pytest.approx(2.0)
    )
    # repeats differ (3 against 2): no paired median, and none where a peer has one run
    assert not any("logged slot AUC points, median" in k for k in verdicts)
    assert not any("DeepCTR DIN AUC points, median" in k for k in verdicts)
    assert verdicts["mind: MUMA samples/s (target >= 10,000)"] == 12_000


def test_targets_skip_missing_peers() -> None:
    results = {"datasets": {"ciao": {"models": {"muma": _row(0.71)}}}}
    assert targets(results) == {"ciao: MUMA samples/s (target >= 10,000)": 12_000}


def test_deepctr_inputs_can_withhold_the_logged_slot() -> None:
    encoded = SimpleNamespace(
        user=np.array([2, 3]),
        item=np.array([4, 5]),
        category=np.array([1, 2]),
        creator=np.array([0, 0]),
        domain=np.array([1, 1]),
        position=np.array([7, 31]),
        user_dense=np.zeros((2, 1), dtype=np.float32),
        item_dense=np.zeros((2, 1), dtype=np.float32),
        long_item=np.array([[4, 0], [5, 4]]),
    )
    featurizer = SimpleNamespace(item_category=np.array([0, 0, 0, 0, 1, 2]))
    logged = deepctr_inputs(featurizer, encoded)
    withheld = deepctr_inputs(featurizer, encoded, position=False)
    assert logged["position"].tolist() == [7, 31]
    assert withheld["position"].tolist() == [1, 1]
    assert withheld["seq_length"].tolist() == [1, 2]
    assert withheld["hist_category"].tolist() == [[1, 0], [2, 1]]
    for key in logged.keys() - {"position"}:
        assert np.array_equal(logged[key], withheld[key])
