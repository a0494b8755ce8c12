"""The fast reader's encoding of Feast's Redis layout, checked against Feast's own helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from feature_repo.online import (
    decode_doubles,
    decode_string,
    entity_key_prefix,
    feature_field,
    redis_key,
)


def test_keys_and_fields_match_feast() -> None:
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    for user in ["u1", "user-with-ünïcode", ""]:
        key = EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user)])
        assert redis_key(entity_key_prefix("user_id"), user, b"muma") == _redis_key("muma", key)
    for name in ["user_hourly_stats:news_clicks_1h", "item_hourly_stats:ctr_24h"]:
        view, feature = name.split(":")
        assert feature_field(view, feature) == _mmh3(name)


def test_values_decode_like_the_protobuf() -> None:
    from feast.protos.feast.types.Value_pb2 import Null, Value

    doubles = [1.5, 0.0, -2.25e300, math.inf]
    raw = [Value(double_val=v).SerializeToString() for v in doubles]
    raw += [None, b"", Value(null_val=Null.NULL).SerializeToString()]
    raw.append(Value(int64_val=7).SerializeToString())
    got = decode_doubles(raw)
    np.testing.assert_array_equal(got[:4], doubles)
    assert np.isnan(got[4:7]).all()
    assert got[7] == 7.0

    long_text = "x" * 300
    for text in ["", "news", long_text, "ünï"]:
        assert decode_string(Value(string_val=text).SerializeToString()) == text
    assert decode_string(None) is None


@pytest.mark.parametrize("bad", [b"\x29\x00"])
def test_truncated_values_fail_loudly(bad: bytes) -> None:
    with pytest.raises(Exception):  # noqa: B017 - protobuf's DecodeError
        decode_doubles([bad])
