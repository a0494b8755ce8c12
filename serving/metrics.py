"""Prometheus text exposition (format 0.0.4), written by hand: counters, gauges, histograms.

A few dozen series do not justify a dependency; :class:`Metrics` is thread-safe and renders
``# HELP``/``# TYPE`` blocks that Prometheus and ``promtool check metrics`` accept.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.008, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
AGE_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0)

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = [*labels, *extra]
    if not pairs:
        return ""
    body = ",".join(
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(10), " ").replace(chr(34), "")}"'
        for key, value in pairs
    )
    return "{" + body + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
        self.total += value
        self.count += 1


class Metrics:
    """Named metric families with labels; :meth:`render` gives the exposition text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._help: dict[str, tuple[str, str]] = {}
        self._counters: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, dict[Labels, float]] = {}
        self._gauge_functions: dict[str, Callable[[], dict[Labels, float]]] = {}
        self._histograms: dict[str, dict[Labels, _Histogram]] = {}
        self._buckets: dict[str, tuple[float, ...]] = {}

    def counter(self, name: str, doc: str) -> None:
        self._help[name] = ("counter", doc)
        self._counters.setdefault(name, {})

    def gauge(self, name: str, doc: str, function: Callable[[], dict[Labels, float]] | None = None):
        """A gauge set with :meth:`set`, or computed by ``function`` at render time."""
        self._help[name] = ("gauge", doc)
        self._gauges.setdefault(name, {})
        if function is not None:
            self._gauge_functions[name] = function

    def histogram(self, name: str, doc: str, buckets: tuple[float, ...] = LATENCY_BUCKETS):
        self._help[name] = ("histogram", doc)
        self._histograms.setdefault(name, {})
        self._buckets[name] = buckets

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            family = self._counters[name]
            family[key] = family.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._gauges[name][tuple(sorted(labels.items()))] = value

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            family = self._histograms[name]
            if key not in family:
                family[key] = _Histogram(self._buckets[name])
            family[key].observe(value)

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (0 when never set); for tests and /health."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            family = self._counters.get(name) or self._gauges.get(name) or {}
            return family.get(key, 0.0)

    def render(self) -> str:
        computed = {name: function() for name, function in self._gauge_functions.items()}
        lines: list[str] = []
        with self._lock:
            for name, (kind, doc) in self._help.items():
                lines.append(f"# HELP {name} {doc}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "counter":
                    for labels, value in self._counters[name].items():
                        lines.append(f"{name}{_labels(labels)} {_number(value)}")
                elif kind == "gauge":
                    series = dict(self._gauges[name])
                    series.update(computed.get(name, {}))
                    for labels, value in series.items():
                        lines.append(f"{name}{_labels(labels)} {_number(value)}")
                else:
                    for labels, histogram in self._histograms[name].items():
                        for bound, count in zip(histogram.buckets, histogram.counts, strict=True):
                            le = (("le", _number(bound)),)
                            lines.append(f"{name}_bucket{_labels(labels, le)} {count}")
                        inf = (("le", "+Inf"),)
                        lines.append(f"{name}_bucket{_labels(labels, inf)} {histogram.count}")
                        lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.total)}")
                        lines.append(f"{name}_count{_labels(labels)} {histogram.count}")
        return "\n".join(lines) + "\n"
