"""The one time-decay definition, shared by the Spark feature build and request-time code.

An event of age ``a`` seconds weighs ``2 ** (-a / (3600 * half_life_hours))``, computed as
``exp(-rate * a)`` with ``rate = ln 2 / (3600 * half_life_hours)``. The Python/numpy function
and the Spark expression are built from the same :func:`decay_rate` constant and the same
operations, so offline and online values agree to floating-point rounding.

A decayed counter stored at time ``t0`` moves to a later time ``t1`` by one multiplication,
:func:`decay_to`; that is what lets a feature row stamped at its snapshot be read at request
time, and what lets the Spark build sum hourly aggregates instead of rescanning events:
``decayed(T) = sum over buckets b <= T of S_b * decay(T - b)`` with
``S_b = sum over events e in b of decay(b - ts_e)``.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING, overload

import numpy as np

if TYPE_CHECKING:
    from pyspark.sql import Column

SECONDS_PER_HOUR = 3600.0

TimeLike = datetime | float | int | np.ndarray


def decay_rate(half_life_hours: float) -> float:
    """Decay rate per second, ``ln 2 / (3600 * half_life_hours)``.

    Raises:
        ValueError: ``half_life_hours`` is not a positive finite number.
    """
    if not (isinstance(half_life_hours, int | float) and math.isfinite(half_life_hours)):
        raise ValueError(f"half_life_hours must be a finite number, got {half_life_hours!r}")
    if half_life_hours <= 0:
        raise ValueError(f"half_life_hours must be positive, got {half_life_hours!r}")
    return math.log(2.0) / (SECONDS_PER_HOUR * float(half_life_hours))


@overload
def decay_weight(age_seconds: float, half_life_hours: float) -> float: ...
@overload
def decay_weight(age_seconds: np.ndarray, half_life_hours: float) -> np.ndarray: ...
def decay_weight(age_seconds, half_life_hours):
    """Weight of an event ``age_seconds`` old: 1 at age 0, 1/2 at one half-life.

    Args:
        age_seconds: Age (scalar or array, ``shape (...)``), seconds, non-negative.
        half_life_hours: Half-life in hours.

    Returns:
        Weights of the same shape, in ``(0, 1]``.

    Raises:
        ValueError: A negative or non-finite age (a future event has no weight to give).
    """
    rate = decay_rate(half_life_hours)
    ages = np.asarray(age_seconds, dtype=np.float64)
    if not np.all(np.isfinite(ages)):
        raise ValueError("age_seconds must be finite")
    if np.any(ages < 0):
        raise ValueError(f"age_seconds must be >= 0, got min {ages.min()}")
    weights = np.exp(-rate * ages)
    return float(weights) if weights.ndim == 0 else weights


def spark_decay_weight(age_seconds: Column | str, half_life_hours: float) -> Column:
    """The Spark ``Column`` of :func:`decay_weight`; fails the query on a negative age.

    Args:
        age_seconds: Column (or column name) of ages in seconds, as double.
        half_life_hours: Half-life in hours.
    """
    from pyspark.sql import functions as F

    rate = decay_rate(half_life_hours)
    age = F.col(age_seconds) if isinstance(age_seconds, str) else age_seconds
    age = age.cast("double")
    return F.when(
        age < 0, F.raise_error(F.lit("decay: negative age (an event after the snapshot)"))
    ).otherwise(F.exp(F.lit(-rate) * age))


def _epoch_seconds(value: TimeLike) -> float | np.ndarray:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware (UTC)")
        return value.timestamp()
    return np.asarray(value, dtype=np.float64) if isinstance(value, np.ndarray) else float(value)


def decay_to(
    value: float | np.ndarray, from_ts: TimeLike, to_ts: TimeLike, half_life_hours: float
) -> float | np.ndarray:
    """Move a decayed counter stored at ``from_ts`` to the later time ``to_ts``.

    Args:
        value: Decayed counter(s) as of ``from_ts``.
        from_ts: Time the counter refers to (aware datetime or epoch seconds, or an array).
        to_ts: Target time, not before ``from_ts`` (same forms).
        half_life_hours: The counter's half-life.

    Returns:
        ``value * decay_weight(to_ts - from_ts)``, broadcast over arrays.

    Raises:
        ValueError: ``to_ts`` is before ``from_ts`` (decay does not run backwards), or a
            naive datetime.
    """
    age = np.asarray(_epoch_seconds(to_ts)) - np.asarray(_epoch_seconds(from_ts))
    if np.any(age < 0):
        raise ValueError("decay_to: to_ts is before from_ts")
    result = np.asarray(value, dtype=np.float64) * decay_weight(age, half_life_hours)
    return float(result) if np.ndim(result) == 0 else result
