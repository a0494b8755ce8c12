"""Monitoring on simulated logs: an interest shock is caught on its day, a stationary world
raises at most one false alarm in 20 daily runs, and a CTR drop names its domain.

The worlds are small (400 users) and stationary apart from what a test injects: the
simulator publishes a fixed third of its catalog spread over the simulated range while the
backlog ages, so with the default freshness half-lives news CTR sinks day after day over a
three-week range; the freshness decay is switched off here so that "no drift" means none.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.config import MonitorParams
from monitoring.inputs import interactions_from_landing, items_from_landing
from monitoring.report import assess
from muma.contract import Domain, Source
from simulator.config import InterestShock, SimulatorConfig
from simulator.logs import simulate

START = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)
SEED = 20261108
NO_DECAY = {Domain.NEWS: 1e6, Domain.VIDEO: 1e6, Domain.AD: 1e6}


def world(**changes) -> SimulatorConfig:
    """400 users with ~6 requests a day each: enough clicks per user and day to compare."""
    return SimulatorConfig(
        users=400,
        items=600,
        sessions_per_user_per_day=4,
        freshness_half_life_hours=NO_DECAY,
        **changes,
    )


def simulate_days(
    root: Path, config: SimulatorConfig, days: int
) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Simulate ``days`` days; return one interactions frame per day and the catalog."""
    landing = root / "landing"
    simulate(config, SEED, START, START + days * DAY, landing, root / "sidecar")
    frames = [
        interactions_from_landing(landing, START + d * DAY, START + (d + 1) * DAY)
        for d in range(days)
    ]
    return frames, items_from_landing(landing, START, START + days * DAY)


@pytest.fixture(scope="module")
def params() -> MonitorParams:
    return MonitorParams()


@pytest.fixture(scope="module")
def shocked(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Three days; on day 2 (00:00) 60% of users turn to one news category."""
    shock = InterestShock(at=START + 2 * DAY, domain=Domain.NEWS, strength=3.0, share=0.6)
    return simulate_days(tmp_path_factory.mktemp("shocked"), world(shock=shock), 3)


@pytest.fixture(scope="module")
def stationary(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Twenty-one days of a world without drift."""
    return simulate_days(tmp_path_factory.mktemp("stationary"), world(), 21)


def test_landing_converter_matches_the_logs(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    summary = simulate(world(), SEED, START, START + timedelta(hours=3), landing, tmp_path / "s")
    frame = interactions_from_landing(landing, START, START + timedelta(hours=3))
    assert len(frame) == summary.counts[str(Source.IMPRESSIONS)]
    assert frame["clicked"].sum() == summary.counts[str(Source.CLICKS)]
    assert frame["event_id"].is_unique
    assert frame.loc[frame["clicked"], "dwell_ms"].notna().all()
    assert frame.loc[~frame["clicked"], "dwell_ms"].isna().all()
    empty = interactions_from_landing(landing, START - DAY, START - DAY + timedelta(hours=1))
    assert empty.empty and "propensity" in empty.columns


def test_interest_shock_is_detected_on_its_day(
    shocked: tuple[list[pd.DataFrame], pd.DataFrame], params: MonitorParams
) -> None:
    (day0, day1, day2), items = shocked
    before = assess(day0, day1, params, items=items)
    on_the_day = assess(day1, day2, params, items=items)

    assert not any("interest drift in news" in r for r in before.decision.reasons), (
        before.decision.reasons
    )
    assert on_the_day.decision.retrain
    reasons = [r for r in on_the_day.decision.reasons if r.startswith("interest drift in news")]
    assert any("mean user JS" in r for r in reasons), on_the_day.decision.reasons
    news = next(r for r in on_the_day.summary["interest"] if r["domain"] == "news")
    assert news["status"] == "ok" and news["users_compared"] >= 20
    assert news["mean_js"] > news["threshold"] > news["null_mean_js"]
    # Only the shocked domain moves.
    assert not any("interest drift in video" in r for r in on_the_day.decision.reasons)


@pytest.mark.slow
def test_twenty_days_without_drift_raise_at_most_one_false_alarm(
    stationary: tuple[list[pd.DataFrame], pd.DataFrame], params: MonitorParams
) -> None:
    frames, items = stationary
    alarms = {}
    for day in range(1, 21):
        decision = assess(frames[day - 1], frames[day], params, items=items).decision
        if decision.retrain:
            alarms[day] = decision.reasons
    assert len(alarms) <= 1, alarms


def drop_clicks(frame: pd.DataFrame, domain: str, share: float, seed: int) -> pd.DataFrame:
    """Unclick ``share`` of ``domain``'s clicked rows (their views go with them)."""
    rng = np.random.default_rng(seed)
    clicked = frame.index[(frame["domain"] == domain) & frame["clicked"]]
    lost = rng.choice(clicked, size=int(share * len(clicked)), replace=False)
    out = frame.copy()
    out.loc[lost, ["clicked"]] = False
    out.loc[lost, ["click_ts", "dwell_ms", "completion_ratio"]] = None
    return out


@pytest.mark.parametrize("domain", ["news", "video"])
def test_ctr_drop_in_one_domain_is_named(
    stationary: tuple[list[pd.DataFrame], pd.DataFrame], params: MonitorParams, domain: str
) -> None:
    frames, items = stationary
    current = drop_clicks(frames[10], domain, 0.4, seed=1)
    decision = assess(frames[9], current, params, items=items).decision
    drops = [r for r in decision.reasons if r.startswith("CTR drop in")]
    assert len(drops) == 1 and drops[0].startswith(f"CTR drop in {domain}:"), decision.reasons
    assert "(-4" in drops[0] or "(-3" in drops[0]
