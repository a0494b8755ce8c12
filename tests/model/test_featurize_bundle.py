"""Featurizer, training loop, bundle and promotion on small synthetic feature-store rows.

The rows look like the point-in-time training set (user and item feature columns, newest-first
behaviour sequences) and carry a planted rule: a user clicks items of the category they
clicked most recently. A few epochs must learn it, and every persistence path must refuse
tampering.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import torch

from training.bundle import BundleError, ModelBundle, build_model
from training.config import EvaluateParams, TrainParams
from training.featurize import PAD, UNKNOWN, FeatureError, Featurizer, Vocabulary
from training.model.config import GraphConfig
from training.pipeline import evaluate_bundle, model_config
from training.registry import decide
from training.train import TrainingError, drop_ids, fit, start_dwell_at_mean

CATEGORIES = {
    "news": ["politics", "sports", "tech"],
    "video": ["music", "gaming"],
    "ad": ["retail"],
}
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _catalog(items: int = 60) -> pd.DataFrame:
    rows = []
    domains = list(CATEGORIES)
    for index in range(items):
        domain = domains[index % 3]
        category = CATEGORIES[domain][index % len(CATEGORIES[domain])]
        rows.append(
            {
                "item_id": f"i{index}",
                "domain": domain,
                "category": category,
                "creator_id": f"c{index % 7}",
            }
        )
    return pd.DataFrame(rows)


def _rows(catalog: pd.DataFrame, requests: int, seed: int, start: datetime) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    category = dict(zip(catalog["item_id"], catalog["category"], strict=True))
    domain = dict(zip(catalog["item_id"], catalog["domain"], strict=True))
    items = catalog["item_id"].to_numpy()
    rows = []
    for request in range(requests):
        user = f"u{rng.integers(40)}"
        ts = start + timedelta(minutes=int(request))
        history = list(rng.choice(items, size=int(rng.integers(0, 8))))
        stamps = [
            int((ts - timedelta(hours=float(h))).timestamp())
            for h in sorted(rng.uniform(0.1, 40, len(history)))
        ]
        favourite = category[history[0]] if history else None
        for position, item in enumerate(rng.choice(items, size=5, replace=False), start=1):
            rows.append(
                {
                    "event_id": f"e{request}-{position}",
                    "request_id": f"r{request}",
                    "user_id": user,
                    "item_id": item,
                    "domain": domain[item],
                    "category": category[item],
                    "creator_id": None,
                    "ts": ts,
                    "position": position,
                    "propensity": float(rng.uniform(0.05, 1.0)),
                    "clicked": bool(category[item] == favourite) ^ bool(rng.random() < 0.05),
                    "dwell_ms": float(rng.integers(1000, 60000)),
                    "news_clicks_24h": float(rng.poisson(2)) if rng.random() > 0.1 else np.nan,
                    "news_hours_since_click": np.nan,
                    "news_category_interest": list(rng.dirichlet(np.ones(3)).astype(np.float32))
                    if rng.random() > 0.2
                    else None,
                    "ctr_24h": float(rng.uniform(0, 0.3)),
                    "seq_item_ids": history,
                    "seq_ts": stamps[::-1] if stamps else [],
                }
            )
    frame = pd.DataFrame(rows)
    # A click from the sequence's newest item decides the label: it must be first (newest).
    frame["seq_ts"] = frame["seq_ts"].apply(lambda v: sorted(v, reverse=True))
    return frame


@pytest.fixture(scope="module")
def data():
    catalog = _catalog()
    train = _rows(catalog, 600, 1, T0)
    valid = _rows(catalog, 150, 2, T0 + timedelta(days=1))
    friends = pd.DataFrame({"user_id": ["u1", "u2"], "friend_id": ["u3", "u4"]})
    featurizer = Featurizer.fit(
        train,
        catalog,
        friends,
        user_feature_names=["news_clicks_24h", "news_hours_since_click", "news_category_interest"],
        item_feature_names=["ctr_24h", "missing_column"],
        graph=GraphConfig(neighbours=4),
        long_length=6,
        recent_length=3,
        seed=0,
    )
    return catalog, train, valid, featurizer


def test_vocabulary_pads_missing_and_marks_unknown():
    vocabulary = Vocabulary.build(["b", "a", None, "a"])
    assert vocabulary.tokens.tolist() == ["a", "b"]
    assert vocabulary.ids(["a", "b", "zzz", None]).tolist() == [2, 3, UNKNOWN, PAD]
    assert vocabulary.token(2) == "a" and vocabulary.token(UNKNOWN) is None


def test_featurizer_shapes_sequences_and_standardisation(data):
    _, train, _, featurizer = data
    encoded = featurizer.transform(train)
    batch = featurizer.batch(encoded, np.arange(50)).validate()
    space = featurizer.feature_space()
    assert batch.user_dense.shape == (50, space.user_dense) and space.user_dense == 1 + 1 + 3
    assert batch.item_dense.shape == (50, 1)  # the absent column is skipped
    # Oldest first and left-aligned: gaps decrease along a row, and masks are prefix runs.
    row = int(np.argmax((encoded.long_item > 0).sum(1)))
    length = int((encoded.long_item[row] > 0).sum())
    gaps = encoded.long_gap[row, :length]
    assert np.all(np.diff(gaps) <= 0) and np.all(encoded.long_item[row, length:] == 0)
    assert (
        featurizer.items.token(int(encoded.long_item[row, length - 1]))
        == train["seq_item_ids"][row][0]
    )
    # The recent window is the newest tail.
    recent = int((encoded.recent_item[row] > 0).sum())
    assert encoded.recent_item[row, recent - 1] == encoded.long_item[row, length - 1]
    standardised = encoded.user_dense[:, 0]
    assert abs(float(standardised.mean())) < 0.1


def test_transform_names_missing_columns(data):
    _, train, _, featurizer = data
    with pytest.raises(FeatureError, match="seq_ts"):
        featurizer.transform(train.drop(columns=["seq_ts"]))


def test_unseen_users_and_items_do_not_crash(data):
    _, train, _, featurizer = data
    rows = train.head(5).assign(user_id="new-user", item_id="new-item")
    encoded = featurizer.transform(rows)
    assert set(encoded.user.tolist()) == {UNKNOWN} and set(encoded.item.tolist()) == {UNKNOWN}
    # The cold-start item keeps its category from the row.
    assert (encoded.category > UNKNOWN).all()


def test_ids_without_a_training_row_are_embedded_as_unknown(data):
    """A user known from the friendships only has an embedding no gradient ever reached: a
    batch embeds it as unknown, while its graph neighbours still come from its own id."""
    catalog, train, _, _ = data
    friends = pd.DataFrame({"user_id": ["u1", "u2"], "friend_id": ["lonely", "u4"]})
    new_item = {"item_id": "i-new", "domain": "news", "category": "tech", "creator_id": "c1"}
    featurizer = Featurizer.fit(
        train,
        pd.concat([catalog, pd.DataFrame([new_item])], ignore_index=True),
        friends,
        user_feature_names=["news_clicks_24h"],
        item_feature_names=["ctr_24h"],
        graph=GraphConfig(neighbours=4),
        long_length=6,
        recent_length=3,
        seed=0,
    )
    rows = train.head(4).assign(user_id=["lonely", "lonely", "u1", "u1"])
    encoded = featurizer.transform(rows)
    vocabulary_ids = featurizer.users.ids(["lonely", "u1"])
    assert (vocabulary_ids > UNKNOWN).all() and encoded.user[0] == vocabulary_ids[0]
    batch = featurizer.batch(encoded)
    assert batch.user_id.tolist() == [UNKNOWN, UNKNOWN, vocabulary_ids[1], vocabulary_ids[1]]
    expected_paths = torch.from_numpy(featurizer.user_neighbours)[torch.from_numpy(encoded.user)]
    assert torch.equal(batch.user_paths, expected_paths.long())
    assert batch.user_paths_mask[0].any()  # lonely's friend u1 is its user-friend-user path
    # A catalog item never shown nor clicked in training is unknown too, in history as well,
    # where its category still comes from the catalog.
    items = featurizer.transform(rows.assign(item_id=["i-new", "i0", "i-new", "i0"]))
    item_batch = featurizer.batch(items)
    assert item_batch.item_id.tolist()[:2] == [UNKNOWN, featurizer.items.ids(["i0"])[0]]
    history = featurizer.batch(
        featurizer.transform(rows.assign(seq_item_ids=[["i-new"]] * 4, seq_ts=[[0]] * 4))
    )
    assert (history.long_item_id[:, 0] == UNKNOWN).all() and history.long_mask[:, 0].all()
    assert (history.long_category_id[:, 0] == featurizer.categories.ids(["tech"])[0]).all()
    # A featurizer saved before the masks existed keeps every id.
    meta, arrays = featurizer.state()
    assert {"user_trained", "item_trained"} <= set(arrays)
    old = Featurizer.from_state(
        meta, {k: v for k, v in arrays.items() if k not in ("user_trained", "item_trained")}
    )
    assert old.batch(encoded).user_id.tolist() == encoded.user.tolist()
    restored = Featurizer.from_state(meta, arrays)
    assert torch.equal(restored.batch(encoded).user_id, batch.user_id)


def test_id_dropout_replaces_only_ids_and_is_seeded(data):
    _, train, _, featurizer = data
    batch = featurizer.batch(featurizer.transform(train))
    dropped = drop_ids(batch, 0.3, torch.Generator().manual_seed(5))
    again = drop_ids(batch, 0.3, torch.Generator().manual_seed(5))
    assert torch.equal(dropped.user_id, again.user_id) and torch.equal(
        dropped.item_id, again.item_id
    )
    for name, original in (("user_id", batch.user_id), ("item_id", batch.item_id)):
        changed = getattr(dropped, name) != original
        assert 0.2 < float(changed.float().mean()) < 0.4
        assert (getattr(dropped, name)[changed] == UNKNOWN).all()
    # Users and items are dropped independently; everything else is untouched.
    assert not torch.equal(dropped.user_id == UNKNOWN, dropped.item_id == UNKNOWN)
    assert torch.equal(dropped.category_id, batch.category_id)
    assert torch.equal(dropped.user_paths, batch.user_paths)
    assert torch.equal(drop_ids(batch, 0.0, torch.Generator()).user_id, batch.user_id)


@pytest.mark.parametrize(("model", "floor"), [("muma", 0.75), ("din", 0.75), ("fm", 0.0)])
def test_fit_learns_the_planted_rule_and_bundle_round_trips(data, tmp_path, model, floor):
    """Sequence models learn the rule; FM sees no history, so it only has to round-trip."""
    _, train, valid, featurizer = data
    params = TrainParams(
        model=model, epochs=6, batch_size=128, lr=5e-3, threads=1, early_stopping_patience=3
    )
    config = model_config(params, featurizer)
    torch.manual_seed(0)
    module = build_model(params.model, config)
    result = fit(
        module,
        featurizer,
        featurizer.transform(train),
        featurizer.transform(valid),
        params,
        0,
        progress=False,
    )
    assert result.history[result.best_epoch - 1].valid_auc > floor
    bundle = ModelBundle(model, model, config, module, featurizer, result.temperature, {"seed": 0})
    path = bundle.save(tmp_path / model)
    loaded = ModelBundle.load(path)
    assert loaded.version == bundle.version
    np.testing.assert_allclose(loaded.predict(valid), bundle.predict(valid), rtol=1e-5)
    evaluation = evaluate_bundle(loaded, valid, EvaluateParams())
    assert evaluation.overall.auc > floor and set(evaluation.per_domain) == set(CATEGORIES)


def test_training_is_deterministic(data):
    _, train, valid, featurizer = data
    params = TrainParams(epochs=1, batch_size=256, threads=1)
    weights = []
    for _ in range(2):
        torch.manual_seed(3)
        module = build_model("muma", model_config(params, featurizer))
        fit(
            module,
            featurizer,
            featurizer.transform(train),
            featurizer.transform(valid),
            params,
            3,
            progress=False,
        )
        weights.append(torch.cat([p.detach().flatten() for p in module.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_the_dwell_head_starts_at_the_mean_observed_dwell(data):
    _, train, _, featurizer = data
    encoded = featurizer.transform(train)
    assert encoded.dwell_mask.any()
    params = TrainParams(threads=1)
    module = build_model("muma", model_config(params, featurizer))
    mean = start_dwell_at_mean(module, encoded)
    assert mean == pytest.approx(float(encoded.dwell[encoded.dwell_mask].mean()))
    assert float(module.head.dwell.bias) == pytest.approx(mean) and mean > 0
    no_dwell = dataclasses.replace(encoded, dwell_mask=np.zeros_like(encoded.dwell_mask))
    assert (
        start_dwell_at_mean(build_model("muma", model_config(params, featurizer)), no_dwell) is None
    )
    din = build_model("din", model_config(params.model_copy(update={"model": "din"}), featurizer))
    assert start_dwell_at_mean(din, encoded) is None


def test_fit_refuses_empty_and_single_class_windows(data):
    _, train, valid, featurizer = data
    params = TrainParams(epochs=1, threads=1)
    module = build_model("fm", model_config(params.model_copy(update={"model": "fm"}), featurizer))
    empty = featurizer.transform(train.head(0))
    with pytest.raises(TrainingError, match="no impressions"):
        fit(module, featurizer, empty, featurizer.transform(valid), params, 0, progress=False)
    one_class = featurizer.transform(train.assign(clicked=False))
    with pytest.raises(TrainingError, match="both clicks and non-clicks"):
        fit(module, featurizer, one_class, featurizer.transform(valid), params, 0, progress=False)


def _bundle(featurizer, seed: int) -> ModelBundle:
    params = TrainParams(model="fm")
    config = model_config(params, featurizer)
    torch.manual_seed(seed)
    return ModelBundle("fm", "fm", config, build_model("fm", config), featurizer)


def test_tampered_or_corrupt_bundles_are_refused(data, tmp_path):
    _, _, _, featurizer = data
    path = _bundle(featurizer, 0).save(tmp_path / "b")
    weights = path / "model.pt"
    raw = bytearray(weights.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="corrupt or was modified"):
        ModelBundle.load(path)
    (path / "model.pt").unlink()
    with pytest.raises(BundleError, match="missing"):
        ModelBundle.load(path)
    with pytest.raises(BundleError, match="no model bundle"):
        ModelBundle.load(tmp_path / "nowhere")


def test_a_worse_challenger_is_never_promoted(data):
    _, _, valid, featurizer = data
    params = EvaluateParams(max_ece=1.0)
    good, bad = _bundle(featurizer, 0), _bundle(featurizer, 1)
    good.version, bad.version = "good", "bad"
    good_eval = evaluate_bundle(good, valid, params)
    bad_eval = evaluate_bundle(bad, valid, params)
    if bad_eval.overall.auc > good_eval.overall.auc:
        good, bad, good_eval, bad_eval = bad, good, bad_eval, good_eval
    assert not decide(bad, bad_eval, good, good_eval, params).promote
    assert decide(good, good_eval, bad, bad_eval, params).promote
    assert decide(bad, bad_eval, None, None, params).promote
    strict = EvaluateParams(max_ece=1e-9)
    assert not decide(good, good_eval, None, None, strict).promote


def _affinity_featurizer(
    train: pd.DataFrame,
    catalog: pd.DataFrame,
    user_features: tuple[str, ...] = ("news_clicks_24h", "news_category_interest"),
) -> Featurizer:
    return Featurizer.fit(
        train,
        catalog,
        pd.DataFrame({"user_id": ["u1"], "friend_id": ["u2"]}),
        user_feature_names=list(user_features),
        item_feature_names=["ctr_24h"],
        graph=GraphConfig(neighbours=4),
        long_length=6,
        recent_length=3,
        seed=0,
        category_vectors=CATEGORIES,
    )


def test_affinity_index_points_at_the_candidates_category_entry(data):
    """Entry [news][sports] is the user_dense column of news_category_interest[1]; domains
    without a vector column, padding and unknown categories have none (-1)."""
    catalog, train, _, _ = data
    featurizer = _affinity_featurizer(train, catalog)
    space = featurizer.feature_space()
    table = np.asarray(space.category_affinity)
    assert table.shape == (4, len(featurizer.categories) + 1, 1)
    news, video = 1, 2
    known = 0
    for position, name in enumerate(CATEGORIES["news"]):
        category_id = int(featurizer.categories.ids([name])[0])
        if category_id > UNKNOWN:  # the catalog fixture has only some categories
            assert table[news, category_id, 0] == 1 + position  # after news_clicks_24h
            known += 1
    assert known >= 1
    assert (table[video] == -1).all() and (table[:, :2] == -1).all()
    encoded = featurizer.transform(train)
    batch = featurizer.batch(encoded)
    from training.model.graph import CategoryAffinity

    values = CategoryAffinity(space.category_affinity)(
        batch.user_dense, batch.domain_id, batch.category_id
    )
    assert values.shape == (len(train), 2)
    is_news = (train["domain"] == "news").to_numpy()
    rows = np.flatnonzero(is_news)
    for row in rows[:20]:
        slot = CATEGORIES["news"].index(train["category"].iat[row])  # the vector's entry
        assert values[row, 0].item() == pytest.approx(batch.user_dense[row, 1 + slot].item())
    assert values[~is_news].abs().sum().item() == 0.0  # no weight outside news: value 0, flag 0
    assert bool((values[rows, 1] == 1.0).all())
    # The layout survives a save and load.
    meta, arrays = featurizer.state()
    assert Featurizer.from_state(meta, arrays).feature_space() == space


def test_affinity_is_empty_without_category_vectors(data):
    catalog, train, _, featurizer = data
    assert featurizer.feature_space().category_affinity == ()
    other = _affinity_featurizer(train, catalog, user_features=("news_clicks_24h",))
    assert other.feature_space().category_affinity == ()  # no vector column to read


def test_feature_space_refuses_a_malformed_affinity_table():
    from training.model.config import FeatureSpace

    with pytest.raises(ValueError, match="domains \\+ 1"):
        FeatureSpace(
            users=3, items=3, categories=2, creators=1, user_dense=4, category_affinity=(((0,),),)
        )
    good = tuple(tuple((-1,) for _ in range(3)) for _ in range(4))
    bad = (*good[:3], ((-1,), (-1,), (9,)))
    with pytest.raises(ValueError, match="outside user_dense"):
        FeatureSpace(
            users=3, items=3, categories=2, creators=1, user_dense=4, category_affinity=bad
        )
    assert (
        FeatureSpace(
            users=3, items=3, categories=2, creators=1, user_dense=4, category_affinity=good
        ).category_affinity
        == good
    )


def test_muma_feeds_the_affinity_to_its_towers_and_no_graph_drops_it(data):
    catalog, train, _, _ = data
    featurizer = _affinity_featurizer(train, catalog)
    config = model_config(TrainParams(epochs=1), featurizer)
    model = build_model("muma", config)
    assert model.affinity is not None and model.affinity.width == 2
    without = config | {"features": config["features"] | {"category_affinity": ()}}
    plain = build_model("muma", without)
    assert plain.affinity is None
    width = next(model.towers.parameters()).shape[1]
    assert width == next(plain.towers.parameters()).shape[1] + 2  # value and presence flag
    batch = featurizer.batch(featurizer.transform(train.head(40)))
    with torch.inference_mode():
        assert model(batch).click_logit.shape == (40,)
    ablated = build_model("muma", config | {"no_graph": True})
    assert ablated.affinity is None


def test_din_reads_the_affinity_only_when_asked(data):
    """The control: DIN with MUMA's category affinity; off by default."""
    catalog, train, _, _ = data
    featurizer = _affinity_featurizer(train, catalog)
    params = TrainParams(model="din", epochs=1)
    plain = build_model("din", model_config(params, featurizer))
    assert plain.affinity is None
    asked = params.model_copy(
        update={"baseline": params.baseline.model_copy(update={"category_affinity": True})}
    )
    control = build_model("din", model_config(asked, featurizer))
    assert control.affinity is not None
    batch = featurizer.batch(featurizer.transform(train.head(30)))
    with torch.inference_mode():
        assert control(batch).click_logit.shape == (30,)
