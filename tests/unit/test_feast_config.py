"""Feast configuration: the Redis URL conversion and the params section."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from feature_repo.store import FeastParams, redis_connection_string


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379", "127.0.0.1:6379"),
        ("redis://localhost/13", "localhost:6379,db=13"),
        ("redis://user:p%40ss@cache:6380/2", "cache:6380,db=2,username=user,password=p@ss"),
        ("rediss://cache:6380/0", "cache:6380,db=0,ssl=true"),
    ],
)
def test_redis_urls_become_feast_connection_strings(url: str, expected: str) -> None:
    assert redis_connection_string(url) == expected


@pytest.mark.parametrize("url", ["http://cache:6379", "redis://", "redis://cache/x"])
def test_bad_redis_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError):
        redis_connection_string(url)


def test_feast_params_forbid_unknown_keys_and_bad_values() -> None:
    assert FeastParams().project == "muma"
    with pytest.raises(ValidationError):
        FeastParams(ttl_hour=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        FeastParams(project="_hidden")
    with pytest.raises(ValidationError):
        FeastParams(realtime_half_life_hours=0)
