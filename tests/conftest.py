"""The reliability suite's recorder (``-m reliability``; ``make reliability``).

Tests marked ``reliability`` record their figures through the ``reliability`` fixture; with
``MUMA_RELIABILITY_REPORT`` set (``make reliability`` sets it) the figures and every marked
test's outcome are written there as JSON at the end of the session, and
``python -m bench.reliability_doc`` turns that file into ``docs/reliability.md``. Without the
variable nothing is written, so ``make test`` runs the same tests and leaves no file.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPORT_ENV = "MUMA_RELIABILITY_REPORT"


class Recorder:
    """Figures by name, and the outcome of every test marked ``reliability``."""

    def __init__(self) -> None:
        self.figures: dict[str, dict] = {}
        self.outcomes: dict[str, dict] = {}
        self.started = time.time()

    def record(self, name: str, figures: dict) -> None:
        self.figures.setdefault(name, {}).update(figures)

    def as_dict(self) -> dict:
        return {
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}",
            "load_average_1m_end": round(os.getloadavg()[0], 2),
            "seconds": round(time.time() - self.started, 1),
            "figures": self.figures,
            "tests": self.outcomes,
        }


_RECORDER = Recorder()


@pytest.fixture(scope="session")
def reliability() -> Recorder:
    return _RECORDER


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if item.get_closest_marker("reliability") is not None and (
        report.when == "call" or report.outcome != "passed"
    ):
        _RECORDER.outcomes[item.nodeid] = {
            "outcome": report.outcome,
            "seconds": round(report.duration, 2),
        }
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get(REPORT_ENV)
    if target and _RECORDER.outcomes:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_RECORDER.as_dict(), indent=2, sort_keys=True) + "\n")
