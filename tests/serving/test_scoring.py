"""Pure parts of serving: request encoding equals the training featurizer's, the fast
vocabulary equals the slow one, candidate generation, the params section, the metrics text."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from muma.params import ParamsError
from serving.candidates import CandidateIndex, domain_names, friends_of, generate
from serving.config import ServeParams, load_serve_params
from serving.metrics import Metrics
from serving.scoring import FastVocabulary, RequestEncoder, speed_up
from training.featurize import FeatureError

NOW = pd.Timestamp("2026-11-01T02:00:00Z")


def _user_values(world, user: str) -> dict:
    row = world.users.set_index("user_id").loc[user]
    return row.to_dict()


def test_request_encoding_matches_the_featurizer_on_the_full_frame(world):
    featurizer = world.featurizer
    values = _user_values(world, "u4")
    items = world.catalog.head(25).copy()
    items.loc[3, "item_id"] = "brand-new-item"
    domains = items["domain"].to_numpy(dtype=object)
    encoder = RequestEncoder(speed_up(copy.deepcopy(featurizer)))
    assert len(values["seq_item_ids"]) > 0
    fast = encoder.request("u4", values, encoder.items(items), domains, NOW.timestamp(), 1)
    full = items.assign(user_id="u4", ts=NOW, **{k: [v] * len(items) for k, v in values.items()})
    full["request_id"] = "r"
    slow = featurizer.transform(full, position=1)
    for name in ("user", "item", "category", "creator", "domain", "position"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(slow, name), err_msg=name)
    for name in ("user_dense", "item_dense", "long_item", "long_gap", "recent_item", "recent_gap"):
        np.testing.assert_allclose(
            getattr(fast, name), getattr(slow, name), rtol=1e-6, err_msg=name
        )


def test_user_encoding_treats_missing_and_misshapen_values_as_the_frame_does(world):
    featurizer = world.featurizer
    values = _user_values(world, "u4")
    scalar = next(c.name for c in featurizer.user_columns if not c.width)
    vector = next(c.name for c in featurizer.user_columns if c.width)
    odd = values | {scalar: None, vector: 3.0, "seq_item_ids": None, "seq_ts": None}
    odd.pop(next(c.name for c in featurizer.user_columns if c.name not in (scalar, vector)))
    encoder = RequestEncoder(featurizer)
    items = world.catalog.head(2)
    fast = encoder.request("u4", odd, encoder.items(items), items["domain"].to_numpy(), 0.0, 1)
    frame_values = {c.name: odd.get(c.name) for c in featurizer.user_columns}
    frame_values[vector] = None
    full = items.assign(
        user_id="u4",
        ts=pd.Timestamp(0, unit="s", tz="UTC"),
        seq_item_ids=[[], []],
        seq_ts=[[], []],
        **{k: [np.nan if v is None else v] * 2 for k, v in frame_values.items() if k != vector},
    )
    full[vector] = [None, None]
    slow = featurizer.transform(full, position=1)
    np.testing.assert_allclose(fast.user_dense, slow.user_dense, rtol=1e-6)
    assert (fast.long_item == 0).all() and (fast.recent_item == 0).all()


def test_the_user_row_is_the_frames_bit_for_bit_for_every_user(world):
    featurizer = world.featurizer
    scalar = next(c.name for c in featurizer.user_columns if not c.width)
    vector = next(c.name for c in featurizer.user_columns if c.width)
    hours = next(c.name for c in featurizer.user_columns if "hours_since" in c.name)
    rows = [_user_values(world, f"u{n}") for n in range(len(world.users))]
    rows[3] = rows[3] | {scalar: None, hours: None, vector: [0.5, None, 2.0]}
    rows[7] = rows[7] | {vector: list(range(40)), scalar: -3.0}  # longer than the column
    rows[9] = rows[9] | {scalar: float("inf"), vector: None}
    item = world.catalog.iloc[1].to_dict()
    frame = pd.DataFrame(rows).assign(user_id="u", ts=NOW, **item)
    want = featurizer.transform(frame, position=1).user_dense
    got = np.concatenate(
        [featurizer.encode_user("u", row, NOW.timestamp()).user_dense for row in rows]
    )
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_domain_ids_of_runs_and_of_mixed_orders():
    from serving.scoring import domain_ids

    runs = np.asarray(["news"] * 3 + ["ad"] * 2 + ["video"], dtype=object)
    assert domain_ids(runs).tolist() == [1, 1, 1, 3, 3, 2]
    assert domain_ids(np.asarray(["ad", "news", "ad"], dtype=object)).tolist() == [3, 1, 3]
    assert domain_ids(np.asarray([], dtype=object)).shape == (0,)
    with pytest.raises(FeatureError, match="unknown domain 'sports'"):
        domain_ids(np.asarray(["news", "sports"], dtype=object))


def test_fast_vocabulary_gives_the_same_ids(world):
    slow = world.featurizer.items
    fast = FastVocabulary(slow)
    values = ["i1", "i239", None, float("nan"), "unknown", "", 5, pd.NA, np.str_("i7")]
    np.testing.assert_array_equal(fast.ids(values), slow.ids(values))
    as_array = np.asarray(values, dtype=object)
    np.testing.assert_array_equal(fast.ids(as_array), slow.ids(as_array))
    np.testing.assert_array_equal(fast.ids(pd.Series(values)), slow.ids(pd.Series(values)))
    np.testing.assert_array_equal(fast.ids([["i1"], "i1"]), slow.ids([["i1"], "i1"]))
    assert fast.ids([]).shape == (0,)
    assert len(fast) == len(slow) and fast.token(2) == slow.token(2)


def _index(world, params: ServeParams) -> CandidateIndex:
    catalog = world.catalog

    def read_items(ids: list[str]) -> pd.DataFrame:
        frame = catalog.set_index("item_id").reindex(ids).reset_index()
        frame["found"] = frame["domain"].notna()
        return frame

    return CandidateIndex.build(world.featurizer, read_items, params)


def test_candidate_index_ranks_popular_and_fresh_per_domain(world):
    params = ServeParams()
    index = _index(world, params)
    tokens = world.featurizer.items.tokens
    stats = world.catalog.set_index("item_id")
    for domain in ("news", "video", "ad"):
        popular = tokens[index.popular[domain] - 2]
        assert (stats.loc[popular, "domain"] == domain).all()
        clicks = stats.loc[popular, "clicks_24h"].to_numpy()
        assert (np.diff(clicks) <= 0).all()
        ages = stats.loc[tokens[index.fresh[domain] - 2], "age_hours"].to_numpy()
        assert (np.diff(ages) >= 0).all()
    assert index.from_store and len(index.fallback) > 0
    blind = CandidateIndex.build(world.featurizer, None, params)
    assert not blind.from_store and all(len(v) for v in blind.popular.values())


def test_candidates_are_distinct_in_domain_and_skip_seen_items(world):
    params = ServeParams()
    featurizer = world.featurizer
    index = _index(world, params)
    user = _user_values(world, "u4")
    friends = friends_of(featurizer, "u4", 5)
    assert friends == ["u5"]  # the synthetic circle pairs u4 with u5
    got = generate(
        featurizer, index, "u4", user["seq_item_ids"], ["i7", "i8"], ["news", "ad"], 25, params
    )
    assert set(got.ids) == {"news", "ad"}
    seen = set(featurizer.items.ids(user["seq_item_ids"]).tolist())
    for domain, ids in got.ids.items():
        assert len(ids) == 25 and len(set(ids.tolist())) == 25
        assert (domain_names(featurizer, ids) == domain).all()
        assert not seen & set(ids.tolist())
    assert got.sources["graph"] > 0
    cold = generate(featurizer, index, "nobody", [], [], ["video"], 10, params)
    assert cold.sources["graph"] == 0 and len(cold.ids["video"]) == 10
    assert set(cold.ids["video"].tolist()) <= set(index.popular["video"].tolist())
    befriended = generate(featurizer, index, "nobody", [], ["i7", "i8"], ["video"], 10, params)
    assert (
        befriended.sources["friends"] == 1
        and befriended.ids["video"][0] == featurizer.items.ids(["i7"])[0]
    )


def test_taking_from_a_source_stops_at_its_cap_and_the_domain_size():
    from serving.candidates import _take

    def reference(values, cap, chosen, seen, size):
        added = 0
        for value in values.tolist():
            if len(chosen) >= size or added >= cap:
                break
            if value < 2 or value in seen or value in chosen:
                continue
            chosen[value] = None
            added += 1
        return added

    rng = np.random.default_rng(0)
    for trial in range(200):
        values = rng.integers(0, 150, int(rng.integers(0, 600)))  # repeats and padding ids
        seen = set(rng.integers(0, 150, 40).tolist())
        start = dict.fromkeys(rng.integers(2, 150, int(rng.integers(0, 20))).tolist())
        cap, size = int(rng.integers(0, 90)), int(rng.integers(1, 120))
        got, want = dict(start), dict(start)
        assert _take(values, cap, got, seen, size) == reference(values, cap, want, seen, size)
        assert list(got) == list(want), trial


def test_serve_params_default_and_from_params_yaml(tmp_path):
    assert load_serve_params(tmp_path / "missing.yaml") == ServeParams()
    path = tmp_path / "params.yaml"
    path.write_text("base: {seed: 1}\n")
    assert load_serve_params(path).policy == "softmax"
    path.write_text("serve:\n  policy: bandit\n  exploration: {news: {temperature: 2.0}}\n")
    params = load_serve_params(path)
    assert params.policy == "bandit" and params.exploration_for("news").temperature == 2.0
    path.write_text("serve:\n  polcy: bandit\n")
    with pytest.raises(ParamsError, match="polcy"):
        load_serve_params(path)


def test_metrics_render_the_prometheus_text_format():
    metrics = Metrics()
    metrics.counter("things_total", "things")
    metrics.histogram("wait_seconds", "waits", (0.1, 1.0))
    metrics.gauge("up", "up", lambda: {(): 1.0})
    metrics.inc("things_total", 2, kind='a"b')
    metrics.observe("wait_seconds", 0.5)
    text = metrics.render()
    assert "# TYPE things_total counter" in text
    assert 'things_total{kind="ab"} 2' in text
    assert 'wait_seconds_bucket{le="0.1"} 0' in text
    assert 'wait_seconds_bucket{le="1"} 1' in text
    assert 'wait_seconds_bucket{le="+Inf"} 1' in text
    assert "wait_seconds_count 1" in text and "up 1" in text


def test_one_chunk_scores_equal_the_chunked_scores(world, bundles):
    from training.bundle import ModelBundle

    bundle = ModelBundle.load(bundles["first"])
    encoder = RequestEncoder(speed_up(bundle.featurizer))
    items = world.catalog.head(40)
    encoded = encoder.request(
        "u4",
        _user_values(world, "u4"),
        encoder.items(items),
        items["domain"].to_numpy(dtype=object),
        NOW.timestamp(),
        1,
    )
    batch = bundle.featurizer.batch(encoded)
    whole = bundle.logits(batch, chunk=len(items))  # one chunk: the batch as it is
    chunked = bundle.logits(batch, chunk=7)  # six chunks, each a copy of its rows
    assert whole.shape == (len(items),)
    np.testing.assert_allclose(whole.numpy(), chunked.numpy(), rtol=1e-6, atol=1e-6)
    assert bundle.logits(bundle.featurizer.batch(encoded, rows=slice(0, 0))).shape == (0,)
