"""Serving's fast scoring path gives the model's own scores.

:class:`training.model.request.RequestRanker` reorders MUMA's arithmetic for one user and many
candidates (per-model item graph table, the user's part once, the attention's first layer as
one matrix product over the real behaviours). These tests compare it with the ordinary forward
pass on the broadcast batch for every architecture switch, and, through a running service, the
scores it serves with the training path (``Featurizer.transform`` of the full rows, then the
model) after a hot reload and after the items' online rows change.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pandas as pd
import pytest
import torch

from serving.item_cache import ItemRows
from serving.scoring import RequestEncoder, RequestScorer, request_inputs, speed_up
from training.bundle import ModelBundle, build_model
from training.config import TrainParams
from training.model.config import MumaConfig
from training.model.request import RequestRanker
from training.pipeline import model_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

NOW = pd.Timestamp("2026-11-01T02:00:00Z")
TOLERANCE = 1e-5


def _values(world, user: str) -> dict:
    return world.users.set_index("user_id").loc[user].to_dict()


def _candidates(world, count: int = 60, seed: int = 3) -> pd.DataFrame:
    """Candidates of mixed, interleaved domains, one of them an item the model never saw."""
    rng = np.random.default_rng(seed)
    items = world.catalog.iloc[rng.choice(len(world.catalog), count, replace=False)].copy()
    items = items.reset_index(drop=True)
    items.loc[5, "item_id"] = "brand-new-item"
    return items


def _muma(world, seed: int = 0, **switches) -> MumaConfig:
    config = MumaConfig.model_validate(model_config(TrainParams(model="muma"), world.featurizer))
    return config.model_copy(update=switches)


def _both(world, config: MumaConfig, user: str, items: pd.DataFrame, values=None, seed: int = 0):
    """``(fast, ordinary)``: each a ``(logits, hidden)`` pair of the same request."""
    torch.manual_seed(seed)
    model = build_model("muma", config.model_dump(mode="json")).eval()
    featurizer = speed_up(copy.deepcopy(world.featurizer))
    encoder = RequestEncoder(featurizer)
    values = _values(world, user) if values is None else values
    domains = items["domain"].to_numpy(dtype=object)
    rows = encoder.items(items)
    batch = featurizer.batch(encoder.request(user, values, rows, domains, NOW.timestamp(), 1))
    with torch.inference_mode():
        ordinary = (model(batch).click_logit / 1.7, model.hidden(batch))
    ranker = RequestRanker(model, torch.from_numpy(featurizer.item_neighbours), temperature=1.7)
    one = featurizer.encode_user(user, values, NOW.timestamp())
    domain_ids = batch.domain_id.numpy()
    fast = ranker.scores(request_inputs(featurizer, one, rows, domain_ids, 1))
    return fast, ordinary


def _assert_same(fast, ordinary) -> None:
    (fast_logits, fast_hidden), (logits, hidden) = fast, ordinary
    assert fast_logits.shape == logits.shape and fast_hidden.shape == hidden.shape
    np.testing.assert_allclose(fast_logits.numpy(), logits.numpy(), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(fast_hidden.numpy(), hidden.numpy(), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(
    "switches",
    [
        {},
        {"no_lstm": True},
        {"no_transformer": True},
        {"no_time_decay": True},
        {"no_graph": True},
        {"dwell_head": False},
    ],
    ids=["full", "no_lstm", "no_transformer", "no_time_decay", "no_graph", "no_dwell"],
)
def test_fast_scores_equal_the_forward_pass_for_every_switch(world, switches):
    items = _candidates(world)
    for user in ("u4", "u11", "u30"):  # histories of different lengths (padding in the window)
        _assert_same(*_both(world, _muma(world, **switches), user, items))


def test_fast_scores_equal_the_forward_pass_with_other_block_shapes(world):
    config = _muma(world)
    shapes = {
        "embedding": config.embedding.model_copy(update={"item_combine": "concat"}),
        "encoder": config.encoder.model_copy(update={"attention_hidden": (12, 6)}),
        "towers": config.towers.model_copy(update={"bottom": (24,), "tower": (8, 4)}),
    }
    items = _candidates(world, seed=5)
    _assert_same(*_both(world, config.model_copy(update=shapes), "u4", items, seed=2))


def test_fast_scores_equal_the_forward_pass_with_the_category_affinity(world):
    config = _muma(world)
    features = config.features
    rng = np.random.default_rng(0)
    shape = (features.domains + 1, features.categories + 1, 2)
    index = rng.integers(-1, features.user_dense, shape)
    features = features.model_copy(update={"category_affinity": index.tolist()})
    config = MumaConfig.model_validate({**config.model_dump(), "features": features.model_dump()})
    _assert_same(*_both(world, config, "u4", _candidates(world)))


def test_fast_scores_for_cold_users_empty_histories_and_one_candidate(world):
    config = _muma(world)
    items = _candidates(world)
    _assert_same(*_both(world, config, "someone-new", items, values={}))
    empty = _values(world, "u4") | {"seq_item_ids": [], "seq_ts": []}
    _assert_same(*_both(world, config, "u4", items, values=empty))
    _assert_same(*_both(world, config, "u4", items.head(1)))
    with_unknown = _values(world, "u4")
    with_unknown["seq_item_ids"] = ["never-seen", *with_unknown["seq_item_ids"][1:]]
    _assert_same(*_both(world, config, "u4", items, values=with_unknown))


def test_the_ranker_refuses_inputs_that_do_not_fit(world):
    featurizer = world.featurizer
    model = build_model("muma", _muma(world).model_dump(mode="json")).eval()
    neighbours = torch.from_numpy(featurizer.item_neighbours)
    with pytest.raises(ValueError, match="item metapaths"):
        RequestRanker(model, neighbours[:, :1])
    with pytest.raises(ValueError, match="eval mode"):
        RequestRanker(copy.deepcopy(model).train(), neighbours)
    ranker = RequestRanker(model, neighbours)
    encoder = RequestEncoder(featurizer)
    items = _candidates(world, 4)
    rows = encoder.items(items)
    one = featurizer.encode_user("u4", _values(world, "u4"), NOW.timestamp())
    with pytest.raises(ValueError, match="domain ids must lie"):
        ranker.scores(request_inputs(featurizer, one, rows, np.asarray([1, 2, 4, 1]), 1))
    narrow = ItemRows(rows.item, rows.category, rows.creator, rows.item_dense[:, :1], rows.raw)
    with pytest.raises(ValueError, match="item_dense width"):
        ranker.scores(request_inputs(featurizer, one, narrow, np.ones(4, np.int64), 1))


def test_the_scorer_uses_the_ordinary_path_for_other_models(world, tmp_path, helpers):
    bundle = helpers.save_bundle(world, tmp_path / "din", seed=0, model="din")
    bundle = ModelBundle.load(tmp_path / "din")
    scorer = RequestScorer(bundle, RequestEncoder(bundle.featurizer))
    assert scorer.ranker is None
    items = _candidates(world, 8)
    domains = items["domain"].to_numpy(dtype=object)
    rows = scorer.encoder.items(items)
    got = scorer.score("u4", _values(world, "u4"), rows, domains, NOW.timestamp(), 1).logits
    frame = _full_frame(items, "u4", _values(world, "u4"), NOW.timestamp())
    want = bundle.logits(bundle.featurizer.batch(bundle.featurizer.transform(frame, position=1)))
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=TOLERANCE)


# ------------------------------------------------------------------- through the service
def _full_frame(items: pd.DataFrame, user: str, values: dict, ts_s: float) -> pd.DataFrame:
    """The training path's rows: every candidate with the user's feature values."""
    frame = items.copy()
    frame["user_id"] = user
    frame["request_id"] = "r"
    frame["ts"] = pd.Timestamp(ts_s, unit="s", tz="UTC")
    for name, value in values.items():
        frame[name] = [value] * len(frame)
    return frame


def _served_scores_equal_the_training_path(svc, answer: dict, seen: dict) -> dict[str, float]:
    """Recompute every shown item's probability with ``Featurizer.transform`` and the model's
    forward pass, from the user values the scorer was given and the item rows now in Redis."""
    state = svc.manager.state
    bundle = state.bundle
    shown = [(d, item) for d, slate in answer["slates"].items() for item in slate]
    assert shown
    items = state.reader.read_items([item["item_id"] for _, item in shown])
    assert items["found"].all()
    items["domain"] = [domain for domain, _ in shown]
    frame = _full_frame(items, answer["user_id"], seen["values"], seen["ts_s"])
    encoded = bundle.featurizer.transform(frame, position=1)
    want = torch.sigmoid(bundle.logits(bundle.featurizer.batch(encoded))).numpy()
    got = np.asarray([item["score"] for _, item in shown])
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    return {f"{d}/{item['item_id']}": item["score"] for d, item in shown}


def test_served_scores_equal_the_training_path_after_a_reload_and_after_items_change(
    tmp_path, bundles, world, redis_server, helpers, monkeypatch
):
    import redis

    from feature_repo.config import FeaturesParams
    from feature_repo.tables import ITEM_STATS, feature_tables
    from serving.online_rows import write_rows
    from serving.schemas import RecommendRequest

    data_root = tmp_path / "data"
    svc = helpers.service_on(
        data_root,
        redis_server.url,
        world,
        bundles["first"],
        policy="greedy",
        item_cache_seconds=0.3,
    )
    client = redis.Redis.from_url(redis_server.url)
    seen: dict = {}
    original = RequestScorer.score

    def spy(self, user_id, values, items, domains, ts_s, position, with_hidden=False):
        seen.update(values=dict(values), ts_s=ts_s, fast=self.ranker is not None)
        return original(self, user_id, values, items, domains, ts_s, position, with_hidden)

    monkeypatch.setattr(RequestScorer, "score", spy)
    svc.start(background=False)
    try:
        request = RecommendRequest(user_id="u4", k=5)
        first = svc.manager.state.version
        before = _served_scores_equal_the_training_path(svc, svc.recommend(request), seen)
        assert seen["fast"]

        second = helpers.promote_dir(data_root, bundles["second"])
        assert svc.manager.check().result == "loaded" and second != first
        assert svc.manager.state.scorer.bundle.version == second
        reloaded = _served_scores_equal_the_training_path(svc, svc.recommend(request), seen)
        common = set(before) & set(reloaded)
        assert any(before[key] != reloaded[key] for key in common) or not common

        catalog = world.catalog.copy()
        catalog["ctr_24h"] = catalog["ctr_24h"][::-1].to_numpy() * 3
        catalog["clicks_24h"] = catalog["clicks_24h"] + 40.0
        catalog["age_hours"] = catalog["age_hours"] * 0.5
        table = feature_tables(FeaturesParams())[ITEM_STATS]
        write_rows(client, helpers.feast.project, table, catalog, helpers.t0)
        time.sleep(0.4)  # past the item cache's TTL
        changed = _served_scores_equal_the_training_path(svc, svc.recommend(request), seen)
        common = set(reloaded) & set(changed)
        assert common and all(reloaded[key] != changed[key] for key in common)
    finally:
        svc.stop()
