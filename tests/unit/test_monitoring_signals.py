"""Monitoring signals on small synthetic windows: interest, representation, propensity, CTR."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from monitoring.config import CtrParams, InterestParams, MonitorParams, PropensityParams
from monitoring.drift import (
    calibration_by_domain,
    ctr_by_domain,
    derive_features,
    expected_calibration_error,
    screen_columns,
)
from monitoring.interest import interest_drift, js_distance, representation_drift
from monitoring.propensity import effective_sample_size, propensity_health

CATEGORIES = ["politics", "sports", "tech", "health", "travel"]


def clicks_frame(
    users: int, clicks_per_user: int, mix: np.ndarray, rng: np.random.Generator, domain="news"
) -> pd.DataFrame:
    """Each user clicks ``clicks_per_user`` categories drawn from their row of ``mix``, and
    is shown 20 more items of uniformly random categories without clicking."""
    rows = []
    for user in range(users):
        clicked = rng.choice(len(CATEGORIES), size=clicks_per_user, p=mix[user])
        skipped = rng.integers(0, len(CATEGORIES), size=20)
        for cats, was_clicked in ((clicked, True), (skipped, False)):
            rows += [
                {
                    "user_id": f"u{user}",
                    "domain": domain,
                    "category": CATEGORIES[c],
                    "clicked": was_clicked,
                }
                for c in cats
            ]
    return pd.DataFrame(rows)


def user_mixes(users: int, rng: np.random.Generator) -> np.ndarray:
    return rng.dirichlet(np.full(len(CATEGORIES), 0.5), size=users)


def test_js_distance_bounds_and_symmetry() -> None:
    p = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    q = np.array([[0.0, 0.0, 1.0], [0.2, 0.3, 0.5]])
    d = js_distance(p, q)
    assert d[0] == pytest.approx(1.0)
    assert d[1] == pytest.approx(0.0, abs=1e-7)
    assert np.allclose(js_distance(q, p), d)
    from scipy.spatial.distance import jensenshannon

    r = np.array([0.1, 0.6, 0.3])
    assert js_distance(p[1], r) == pytest.approx(jensenshannon(p[1], r, base=2))


def test_interest_stable_users_do_not_drift() -> None:
    rng = np.random.default_rng(1)
    mix = user_mixes(150, rng)
    ref, cur = clicks_frame(150, 8, mix, rng), clicks_frame(150, 8, mix, rng)
    (news,) = interest_drift(ref, cur, InterestParams(), seed=3)
    assert news.status == "ok" and news.threshold_source == "permutation"
    assert news.users_compared == 150
    assert not news.drifted
    # The permutation null reproduces the noise of 8-click mixes.
    assert abs(news.mean_js - news.null_mean_js) < 0.05
    assert news.mean_js < news.threshold


def test_interest_shift_is_detected_and_names_the_category() -> None:
    rng = np.random.default_rng(2)
    mix = user_mixes(150, rng)
    shifted = mix.copy()
    turned = rng.random(150) < 0.6
    shifted[turned] = 0.1 * mix[turned]
    shifted[turned, CATEGORIES.index("travel")] += 0.9
    ref, cur = clicks_frame(150, 8, mix, rng), clicks_frame(150, 8, shifted, rng)
    (news,) = interest_drift(ref, cur, InterestParams(), seed=3)
    assert news.drifted
    assert news.mean_js > news.threshold
    assert news.top_gain["category"] == "travel"


def test_interest_fixed_threshold_and_too_few_users() -> None:
    rng = np.random.default_rng(4)
    mix = user_mixes(10, rng)
    ref, cur = clicks_frame(10, 5, mix, rng), clicks_frame(10, 5, mix, rng)
    (news,) = interest_drift(ref, cur, InterestParams(min_users=20), seed=0)
    assert news.status == "too_few_users" and news.users_compared == 10
    assert news.mean_js is None and news.population_js is not None
    (fixed,) = interest_drift(ref, cur, InterestParams(min_users=5, permutations=0), seed=0)
    assert fixed.threshold_source == "params" and fixed.threshold == 0.3


def test_interest_dwell_weighting_changes_the_mix() -> None:
    ref = pd.DataFrame(
        {
            "user_id": ["a"] * 4,
            "domain": "news",
            "category": ["politics", "politics", "sports", "sports"],
            "clicked": True,
            "dwell_ms": [1_000, 1_000, 600_000, 600_000],
        }
    )
    cur = ref.assign(dwell_ms=[600_000, 600_000, 1_000, 1_000])
    plain = InterestParams(min_users=2, min_user_events=1, permutations=0)
    weighted = plain.model_copy(update={"dwell_weighted": True})
    two_users = pd.concat([ref, ref.assign(user_id="b")])
    two_cur = pd.concat([cur, cur.assign(user_id="b")])
    (unweighted_result,) = interest_drift(two_users, two_cur, plain)
    (weighted_result,) = interest_drift(two_users, two_cur, weighted)
    assert unweighted_result.mean_js == pytest.approx(0.0, abs=1e-6)
    assert weighted_result.mean_js > 0.1


def test_interest_needs_its_columns() -> None:
    frame = pd.DataFrame({"user_id": ["a"], "domain": ["news"], "clicked": [True]})
    with pytest.raises(ValueError, match="category"):
        interest_drift(frame, frame, InterestParams())


def test_representation_drift() -> None:
    rng = np.random.default_rng(5)
    emb = pd.DataFrame(rng.normal(size=(50, 8)), index=[f"u{i}" for i in range(50)])
    params = InterestParams()
    assert representation_drift(None, emb, params).status == "not available"
    same = representation_drift(emb, emb + rng.normal(0, 0.01, emb.shape), params)
    assert same.status == "ok" and not same.drifted and same.mean_cosine_distance < 0.01
    moved = representation_drift(
        emb, pd.DataFrame(rng.normal(size=(50, 8)), index=emb.index), params
    )
    assert moved.drifted and moved.mean_cosine_distance > 0.5
    with pytest.raises(ValueError, match="widths differ"):
        representation_drift(emb, emb.iloc[:, :4], params)


def test_effective_sample_size() -> None:
    assert effective_sample_size(np.ones(10)) == pytest.approx(10)
    assert effective_sample_size(np.array([1.0, 0.0, 0.0])) == pytest.approx(1)
    assert effective_sample_size(np.array([1.0, 3.0])) == pytest.approx(16 / 10)


def test_propensity_health_per_policy_and_domain() -> None:
    frame = pd.DataFrame(
        {
            "policy": ["a"] * 4 + ["b"] * 4,
            "domain": ["news"] * 8,
            "propensity": [0.5, 0.5, 0.5, 0.5, 0.5, 0.001, 0.5, None],
        }
    )
    healthy, sick = propensity_health(frame, PropensityParams(weight_clip=100, min_ess_share=0.5))
    assert (healthy.policy, healthy.ess, healthy.clipped_share) == ("a", 4.0, 0.0)
    assert healthy.healthy
    assert sick.rows == 3 and sick.missing == 1 and sick.min_propensity == 0.001
    assert sick.clipped_share == pytest.approx(1 / 3, abs=1e-3)
    text = " | ".join(sick.problems)
    assert "b/news" in text and "ESS" in text and "clipped" in text and "lack" in text


def test_ctr_drop_needs_size_and_significance() -> None:
    def window(ctr_news: float, n: int) -> pd.DataFrame:
        clicks = np.zeros(n, dtype=int)
        clicks[: int(ctr_news * n)] = 1
        return pd.DataFrame({"domain": ["news"] * n + ["video"] * n, "clicked": list(clicks) * 2})

    ref, cur = window(0.10, 5_000), window(0.06, 5_000)
    results = {r.domain: r for r in ctr_by_domain(ref, cur, CtrParams())}
    assert results["news"].dropped and results["news"].relative_change == pytest.approx(-0.4)
    assert results["video"].dropped  # both domains share the same synthetic clicks
    small = {r.domain: r for r in ctr_by_domain(window(0.1, 100), window(0.06, 100), CtrParams())}
    assert small["news"].status == "too_few_impressions" and not small["news"].dropped
    # A 40% drop on 600 impressions is not significant at z 3.
    noisy = ctr_by_domain(window(0.05, 600), window(0.03, 600), CtrParams(min_impressions=100))
    assert not noisy[0].dropped and noisy[0].z > -3


def test_calibration() -> None:
    rng = np.random.default_rng(6)
    p = rng.uniform(0.01, 0.3, 20_000)
    clicked = (rng.random(20_000) < p).astype(int)
    frame = pd.DataFrame({"domain": "news", "clicked": clicked, "prediction": p})
    (good,) = calibration_by_domain(frame, CtrParams())
    assert good.status == "ok" and not good.miscalibrated and good.ece < 0.01
    (bad,) = calibration_by_domain(frame.assign(prediction=2 * p), CtrParams())
    assert bad.miscalibrated and bad.ratio_error == pytest.approx(1.0, abs=0.1)
    (absent,) = calibration_by_domain(frame.drop(columns="prediction"), CtrParams())
    assert absent.status == "not available"
    assert expected_calibration_error(np.array([0.5, 0.5]), np.array([1.0, 0.0]), 10) == 0


def test_screen_columns_reports_what_evidently_cannot_compare() -> None:
    ref = pd.DataFrame({"a": [1.0, 2.0], "n": [None, None], "c": [3.0, 3.0], "k": [7.0, 7.0]})
    cur = pd.DataFrame({"a": [1.0, 5.0], "n": [1.0, None], "c": [3.0, 3.0], "k": [7.0, 8.0]})
    kinds = {
        "a": "numerical",
        "n": "numerical",
        "c": "numerical",
        "k": "numerical",
        "x": "categorical",
    }
    statuses = {s.column: s.status for s in screen_columns(ref, cur, kinds)}
    assert statuses == {
        "a": "ok",
        "n": "all_null",
        "c": "constant",
        "k": "constant_reference",
        "x": "missing",
    }


def test_derive_features_joins_the_catalog() -> None:
    interactions = pd.DataFrame(
        {
            "ts": ["2026-11-01T10:30:00+00:00", "2026-11-01T23:00:00+00:00"],
            "user_id": ["u1", "u1"],
            "item_id": ["i1", "i2"],
            "position": [1, 2],
            "propensity": [0.5, 0.25],
            "policy": ["p", "p"],
            "clicked": [True, False],
            "dwell_ms": [1000, None],
            "completion_ratio": [0.5, None],
            "domain": ["news", "video"],
        }
    )
    items = pd.DataFrame(
        {
            "item_id": ["i1", "i1", "i2"],
            "ts": pd.to_datetime(["2026-10-01", "2026-10-02", "2026-10-01"], utc=True),
            "category": ["old", "tech", "music"],
            "publish_ts": pd.to_datetime(
                ["2026-11-01T08:30Z", "2026-11-01T08:30Z", "2026-11-01T22:00Z"]
            ),
        }
    )
    features = derive_features(interactions, items)
    assert features["category"].tolist() == ["tech", "music"]
    assert features["item_age_hours"].tolist() == [2.0, 1.0]
    assert features["hour_of_day"].tolist() == [10.0, 23.0]
    assert features["user_impressions"].tolist() == [2.0, 2.0]
    assert features["user_clicks"].tolist() == [1.0, 1.0]
    assert features["clicked"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="clicked"):
        derive_features(interactions.drop(columns="clicked"))


def test_params_are_strict() -> None:
    with pytest.raises(ValidationError):
        MonitorParams.model_validate({"ctr": {"max_relative_drop": 0.2, "typo": 1}})
    params = MonitorParams.model_validate({"interest": {"alpha": 0.05}})
    assert params.interest.alpha == 0.05 and params.features.num_method == "wasserstein"


def exposure_frame(impressions: dict[str, int], ctr: dict[str, float]) -> pd.DataFrame:
    """One domain's rows: per category, ``impressions`` rows of which ``ctr`` are clicked."""
    rows = []
    for category, n in impressions.items():
        clicks = round(n * ctr[category])
        rows += [
            {"user_id": f"u{i % 7}", "domain": "news", "category": category, "clicked": i < clicks}
            for i in range(n)
        ]
    return pd.DataFrame(rows)


def test_population_interest_is_exposure_normalised() -> None:
    ctr = {"politics": 0.10, "sports": 0.05, "tech": 0.08}
    reference = exposure_frame({"politics": 4_000, "sports": 4_000, "tech": 4_000}, ctr)
    # The catalog showed far more sports: click shares move, interest does not.
    supply = exposure_frame({"politics": 2_000, "sports": 8_000, "tech": 2_000}, ctr)
    # Same exposure, but users now click sports three times as often.
    taste = exposure_frame(
        {"politics": 4_000, "sports": 4_000, "tech": 4_000}, {**ctr, "sports": 0.15}
    )
    params = InterestParams(min_users=100)  # population level only
    (unchanged,) = interest_drift(reference, supply, params, seed=1)
    (changed,) = interest_drift(reference, taste, params, seed=1)
    assert unchanged.population_js < 0.02 and not unchanged.drifted
    assert changed.population_js > changed.population_threshold >= 0.1 and changed.drifted
    assert changed.top_gain["category"] == "sports"
    # sports: 0.05 / 0.23 of the CTR mass before, 0.15 / 0.33 after
    assert changed.top_gain["reference_share"] == pytest.approx(0.217, abs=0.01)
    assert changed.top_gain["current_share"] == pytest.approx(0.455, abs=0.01)


def test_monitor_section_loads_from_a_params_file(tmp_path) -> None:
    from muma.params import ParamsError, load_section

    path = tmp_path / "params.yaml"
    path.write_text(
        "monitor:\n  features:\n    max_rows: 20000\n  interest:\n    permutations: 0\n"
    )
    params = load_section(path, "monitor", MonitorParams)
    assert params.features.max_rows == 20_000 and params.interest.permutations == 0
    path.write_text("monitor:\n  interest:\n    permutation: 10\n")
    with pytest.raises(ParamsError, match="permutation"):
        load_section(path, "monitor", MonitorParams)


def test_read_interactions_reads_the_curated_layout(tmp_path) -> None:
    from datetime import UTC, datetime

    import polars as pl

    from monitoring.inputs import read_interactions

    base = tmp_path / "interactions"
    for hour, domain, n in ((10, "news", 3), (10, "video", 2), (11, "news", 4), (12, "ad", 5)):
        directory = base / "date=2026-11-01" / f"hour={hour:02d}" / f"domain={domain}"
        directory.mkdir(parents=True)
        pl.DataFrame({"event_id": [f"{hour}-{domain}-{i}" for i in range(n)]}).write_parquet(
            directory / "part-00000.snappy.parquet"
        )
    start = datetime(2026, 11, 1, 10, tzinfo=UTC)
    frame = read_interactions(tmp_path, start, start.replace(hour=12))
    assert len(frame) == 9
    assert frame.groupby("domain").size().to_dict() == {"news": 7, "video": 2}
    with pytest.raises(FileNotFoundError, match="no curated interactions"):
        read_interactions(tmp_path, start.replace(hour=20), start.replace(hour=22))
