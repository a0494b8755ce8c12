"""Behaviour of MUMA's blocks, each built at B=2 (shapes) and probed for what it promises:
padding is ignored, older behaviours weigh less, towers route by domain, graph sampling is
deterministic and follows the metapath, calibration recovers a temperature."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from training.batch import Batch
from training.model.attention import TargetAttention
from training.model.config import EmbeddingConfig, EncoderConfig, FeatureSpace
from training.model.embeddings import FeatureEmbeddings
from training.model.encoder import BehaviourEncoder, TimeDecay
from training.model.graph import Csr, HeteroGraph, MetapathAggregator, path_summaries
from training.model.heads import Calibrator, ClickDwellHead, PositionBias
from training.model.metapaths import METAPATHS, resolve
from training.model.towers import DomainTowers

D = 8


def _encoder(**switches: bool) -> BehaviourEncoder:
    torch.manual_seed(0)
    config = EncoderConfig(recent_length=6, attention_hidden=(8,), transformer_ff=16)
    return BehaviourEncoder(D, 3, config, **switches).eval()


def _encoder_inputs(batch: Batch, features: FeatureSpace) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    tables = FeatureEmbeddings(features, EmbeddingConfig(dim=D))
    with torch.no_grad():
        return {
            "candidate": tables.item_side(
                batch.item_id, batch.category_id, batch.domain_id, batch.creator_id
            ),
            "long_behaviours": tables.item_side(
                batch.long_item_id, batch.long_category_id, batch.long_domain_id
            ),
            "long_domain_id": batch.long_domain_id,
            "long_gap_hours": batch.long_gap_hours,
            "long_mask": batch.long_mask,
            "recent_behaviours": tables.item_side(
                batch.recent_item_id, batch.recent_category_id, batch.recent_domain_id
            ),
            "recent_domain_id": batch.recent_domain_id,
            "recent_gap_hours": batch.recent_gap_hours,
            "recent_mask": batch.recent_mask,
        }


# ---------------------------------------------------------------- embeddings


@pytest.mark.parametrize(("combine", "width"), [("sum", D), ("concat", 4 * D)])
def test_item_side_shapes_and_padding(features: FeatureSpace, combine: str, width: int) -> None:
    tables = FeatureEmbeddings(features, EmbeddingConfig(dim=D, item_combine=combine))
    ids = torch.tensor([[3, 0], [5, 7]])
    vectors = tables.item_side(ids, ids, torch.tensor([[1, 0], [2, 3]]), ids)
    assert vectors.shape == (2, 2, width)
    assert torch.all(vectors[0, 1] == 0), "padding ids embed to zero"
    without_creator = tables.item_side(ids, ids, torch.tensor([[1, 0], [2, 3]]))
    assert without_creator.shape == (2, 2, width)
    assert not torch.equal(without_creator, vectors), "the creator contributes when given"


# ---------------------------------------------------------------- target attention


def test_target_attention_shapes_and_masking() -> None:
    torch.manual_seed(0)
    attention = TargetAttention(D, (8,))
    query, keys = torch.randn(2, D), torch.randn(2, 5, D)
    mask = torch.tensor([[True, True, True, False, False], [True, False, False, False, False]])
    weights = attention.weights(query, keys, mask)
    assert weights.shape == (2, 5)
    assert torch.all(weights[~mask] == 0)
    assert torch.allclose(weights.sum(1), torch.ones(2))
    pooled = attention(query, keys, mask)
    assert pooled.shape == (2, D)
    changed = keys.clone()
    changed[~mask] = torch.randn(int((~mask).sum()), D) * 100
    assert torch.allclose(attention(query, changed, mask), pooled)
    assert torch.allclose(pooled[1], keys[1, 0]), "one behaviour takes all the weight"


@pytest.mark.parametrize("hidden", [(8,), (8, 4), ()])
def test_fast_scores_equal_fuxictr_arithmetic(hidden: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    attention = TargetAttention(D, hidden)
    query, keys = torch.randn(2, D), torch.randn(2, 5, D)
    assert torch.allclose(
        attention.scores(query, keys), attention.reference_scores(query, keys), atol=1e-5
    )


def test_target_attention_on_empty_history_is_zero_and_finite() -> None:
    attention = TargetAttention(D, (8,))
    pooled = attention(torch.randn(2, D), torch.randn(2, 4, D), torch.zeros(2, 4, dtype=torch.bool))
    assert torch.equal(pooled, torch.zeros(2, D))


def test_din_without_softmax_keeps_raw_masked_scores() -> None:
    torch.manual_seed(0)
    attention = TargetAttention(D, (8,), softmax=False)
    mask = torch.tensor([[True, False, True]])
    weights = attention.weights(torch.randn(1, D), torch.randn(1, 3, D), mask)
    assert weights[0, 1] == 0
    assert not torch.isclose(weights.sum(), torch.tensor(1.0))


# ---------------------------------------------------------------- time decay


def test_time_decay_starts_at_configured_rate_and_is_per_domain() -> None:
    decay = TimeDecay(3, init_per_hour=0.05)
    assert torch.allclose(decay.rate(), torch.full((4,), 0.05))
    with torch.no_grad():
        decay.theta[2] = 2.0
    bias = decay(torch.tensor([[1, 2]]), torch.tensor([[10.0, 10.0]]))
    assert bias.shape == (1, 2)
    assert bias[0, 1] < bias[0, 0] < 0, "domain 2 now decays faster"


def test_older_copy_of_the_same_behaviour_gets_less_weight() -> None:
    torch.manual_seed(0)
    attention, decay = TargetAttention(D, (8,)), TimeDecay(3, init_per_hour=0.05)
    behaviour = torch.randn(D)
    keys = behaviour.expand(1, 2, D)  # the same behaviour twice
    gaps = torch.tensor([[48.0, 1.0]])  # 2 days ago, 1 hour ago
    mask = torch.ones(1, 2, dtype=torch.bool)
    domains = torch.tensor([[1, 1]])
    weights = attention.weights(torch.randn(1, D), keys, mask, decay(domains, gaps))
    assert weights[0, 0] < weights[0, 1]
    # The ratio is exactly the decay factor exp(-rate * (48 - 1)).
    assert torch.isclose(weights[0, 0] / weights[0, 1], torch.exp(torch.tensor(-0.05 * 47)))
    equal = attention.weights(torch.randn(1, D), keys, mask, None)
    assert torch.isclose(equal[0, 0], equal[0, 1])


# ---------------------------------------------------------------- behaviour encoder


def test_encoder_shapes_at_b2(batch2: Batch, features: FeatureSpace) -> None:
    encoded = _encoder()(**_encoder_inputs(batch2, features))
    assert encoded.interest.shape == (2, D)
    assert encoded.long_weights.shape == batch2.long_mask.shape
    assert encoded.recent_weights.shape == batch2.recent_mask.shape
    assert encoded.gate.shape == (2, D)
    assert torch.all((encoded.gate > 0) & (encoded.gate < 1))


def test_encoder_ignores_padding(batch_factory, features: FeatureSpace) -> None:
    batch = batch_factory(features, 8, seed=3)
    assert not batch.long_mask.all(), "the batch must contain padding"
    encoder = _encoder()
    inputs = _encoder_inputs(batch, features)
    reference = encoder(**inputs)
    noisy = dict(inputs)
    for prefix in ("long", "recent"):
        pad = ~inputs[f"{prefix}_mask"]
        behaviours = inputs[f"{prefix}_behaviours"].clone()
        behaviours[pad] = torch.randn(int(pad.sum()), D) * 10
        gaps = inputs[f"{prefix}_gap_hours"].clone()
        gaps[pad] = 1e4
        noisy[f"{prefix}_behaviours"], noisy[f"{prefix}_gap_hours"] = behaviours, gaps
    changed = encoder(**noisy)
    assert torch.allclose(changed.interest, reference.interest, atol=1e-6)
    assert torch.all(reference.long_weights[~inputs["long_mask"]] == 0)
    assert torch.all(reference.recent_weights[~inputs["recent_mask"]] == 0)


def test_encoder_down_weights_a_behaviour_when_it_gets_older(
    batch2: Batch, features: FeatureSpace
) -> None:
    inputs = _encoder_inputs(batch2, features)
    encoder = _encoder()
    before = encoder(**inputs)
    older = inputs["long_gap_hours"].clone()
    older[:, 0] += 500.0  # the oldest behaviour of each row, 500 hours older still
    after = encoder(**{**inputs, "long_gap_hours": older})
    assert torch.all(after.long_weights[:, 0] < before.long_weights[:, 0])
    assert not torch.allclose(after.interest, before.interest)


def test_encoder_without_decay_ignores_time(batch2: Batch, features: FeatureSpace) -> None:
    encoder = _encoder(use_time_decay=False)
    assert encoder.decay is None
    inputs = _encoder_inputs(batch2, features)
    shifted = {
        **inputs,
        "long_gap_hours": inputs["long_gap_hours"] * 7 + 3,
        "recent_gap_hours": inputs["recent_gap_hours"] * 7 + 3,
    }
    assert torch.equal(encoder(**inputs).interest, encoder(**shifted).interest)


@pytest.mark.parametrize(
    ("switch", "absent"),
    [("use_lstm", "lstm."), ("use_transformer", "transformer."), ("use_time_decay", "decay.")],
)
def test_encoder_switches_remove_their_parameters(switch: str, absent: str) -> None:
    full = {name for name, _ in _encoder().named_parameters()}
    reduced = {name for name, _ in _encoder(**{switch: False}).named_parameters()}
    assert any(name.startswith(absent) for name in full)
    assert not any(name.startswith(absent) for name in reduced)


def test_encoder_survives_an_empty_recent_window(batch2: Batch, features: FeatureSpace) -> None:
    inputs = _encoder_inputs(batch2, features)
    inputs["recent_mask"] = torch.zeros_like(inputs["recent_mask"])
    encoded = _encoder()(**inputs)
    assert torch.isfinite(encoded.interest).all()
    assert torch.all(encoded.recent_weights == 0)


def test_encoder_rejects_a_window_longer_than_configured(
    batch2: Batch, features: FeatureSpace
) -> None:
    inputs = _encoder_inputs(batch2, features)
    with pytest.raises(ValueError, match="recent_length"):
        _encoder().encode_recent(torch.zeros(2, 7, D), torch.ones(2, 7, dtype=torch.bool))
    assert inputs["recent_mask"].shape[1] == 6


# ---------------------------------------------------------------- graph


def _toy_graph() -> HeteroGraph:
    # users 1-4, items 1-6 (1-2 news, 3-4 video, 5-6 ad), categories 1-2, creators 1-2
    users = torch.tensor([1, 1, 2, 2, 2, 3, 3])
    items = torch.tensor([1, 3, 1, 4, 5, 2, 6])
    domains = torch.tensor([1, 2, 1, 2, 3, 1, 3])
    return HeteroGraph.from_edges(
        users=4,
        items=6,
        categories=2,
        creators=2,
        interactions=(users, items, domains),
        item_category=(torch.arange(1, 7), torch.tensor([1, 1, 2, 2, 1, 2])),
        item_creator=(torch.arange(1, 7), torch.tensor([1, 2, 1, 2, 1, 2])),
        friendships=(torch.tensor([1, 2]), torch.tensor([2, 3])),
    )


def test_csr_from_edges_groups_targets_by_source() -> None:
    csr = Csr.from_edges(torch.tensor([2, 1, 2, 3]), torch.tensor([9, 4, 5, 6]), source_count=4)
    assert csr.indptr.tolist() == [0, 0, 1, 3, 4, 4]
    assert csr.neighbours(2).tolist() == [5, 9]
    assert csr.neighbours(4).tolist() == []


def test_hetero_graph_relations() -> None:
    graph = _toy_graph()
    assert graph.relations["user_friend"].neighbours(2).tolist() == [1, 3], "friends are mutual"
    assert graph.relations["user_item_news"].neighbours(2).tolist() == [1]
    assert graph.relations["user_item_video"].neighbours(1).tolist() == [3]
    assert graph.relations["item_user"].neighbours(1).tolist() == [1, 2]
    assert graph.relations["category_item"].neighbours(2).tolist() == [3, 4, 6]


def test_hetero_graph_rejects_ids_out_of_range() -> None:
    with pytest.raises(ValueError, match="interaction item"):
        HeteroGraph.from_edges(
            users=2,
            items=2,
            categories=1,
            creators=1,
            interactions=(torch.tensor([1]), torch.tensor([3]), torch.tensor([1])),
            item_category=(torch.tensor([1]), torch.tensor([1])),
            item_creator=(torch.tensor([1]), torch.tensor([1])),
            friendships=(torch.tensor([1]), torch.tensor([2])),
        )


def test_metapath_sampling_is_deterministic_and_follows_the_path() -> None:
    graph = _toy_graph()
    paths = resolve(("user_friend_user", "user_news_video", "user_item_user"), "user")
    anchors = torch.tensor([1, 2, 4, 0])
    ids, mask = graph.sample(paths, anchors, 16, torch.Generator().manual_seed(7))
    again, _ = graph.sample(paths, anchors, 16, torch.Generator().manual_seed(7))
    assert ids.shape == mask.shape == (4, 3, 16)
    assert torch.equal(ids, again)
    assert set(ids[1, 0].tolist()) == {1, 3}, "user 2's friends, both reached in 16 draws"
    # user 1 read news item 1, also read by users 1 and 2, who watched videos 3 and 4
    assert set(ids[0, 1].tolist()) <= {3, 4} and mask[0, 1].all()
    assert not mask[2].any(), "user 4 has no edges: every walk dead-ends"
    assert not mask[3].any(), "padding anchors walk nowhere"
    assert torch.equal(mask, ids > 0)


def test_sampling_rejects_mixed_anchors_and_unknown_ids() -> None:
    graph = _toy_graph()
    generator = torch.Generator().manual_seed(0)
    mixed = (METAPATHS["user_friend_user"], METAPATHS["item_category_item"])
    with pytest.raises(ValueError, match="anchor"):
        graph.sample(mixed, torch.tensor([1]), 2, generator)
    with pytest.raises(ValueError, match="user ids"):
        graph.sample(resolve(("user_friend_user",), "user"), torch.tensor([9]), 2, generator)


def test_path_summaries_average_real_neighbours_from_each_targets_table() -> None:
    torch.manual_seed(0)
    users, items = torch.nn.Embedding(5, D), torch.nn.Embedding(7, D)
    paths = resolve(("user_friend_user", "user_news_video", "user_item_user"), "user")
    ids = torch.tensor([[[1, 2], [6, 5], [3, 4]], [[4, 4], [2, 1], [0, 0]]])  # B=2, P=3, K=2
    mask = ids > 0
    mask[0, 1, 1] = False  # item 5 is not a real neighbour
    summaries = path_summaries(ids, mask, paths, users, items)
    assert summaries.shape == (2, 3, D)
    assert torch.allclose(summaries[0, 0], users(ids[0, 0]).mean(0))
    assert torch.allclose(summaries[0, 1], items(torch.tensor(6)))
    assert torch.allclose(summaries[0, 2], users(ids[0, 2]).mean(0))
    assert torch.allclose(summaries[1, 1], items(ids[1, 1]).mean(0))
    assert torch.equal(summaries[1, 2], torch.zeros(D))
    junk = ids.clone()
    junk[~mask] = 3
    assert torch.allclose(path_summaries(junk, mask, paths, users, items), summaries)


def test_metapath_aggregator_weights_only_paths_with_neighbours() -> None:
    torch.manual_seed(0)
    aggregator = MetapathAggregator(D, 8)
    summaries = torch.randn(2, 3, D)
    has_neighbours = torch.tensor([[True, True, False], [False, False, False]])
    output = aggregator(summaries, has_neighbours)
    assert output.shape == (2, D)
    weights = aggregator.path_weights(summaries, has_neighbours)
    assert weights.shape == (2, 3)
    assert weights[0, 2] == 0 and torch.isclose(weights[0].sum(), torch.tensor(1.0))
    assert torch.equal(output[1], torch.zeros(D)), "an anchor without neighbours gets zeros"
    noisy = summaries.clone()
    noisy[0, 2] = 1e3
    assert torch.allclose(aggregator(noisy, has_neighbours), output)


# ---------------------------------------------------------------- towers and heads


def test_domain_towers_route_by_domain() -> None:
    torch.manual_seed(0)
    towers = DomainTowers(6, (16,), (4,), domains=3)
    features = torch.randn(6, 6)
    domains = torch.tensor([1, 2, 3, 1, 2, 3])
    before = towers(features, domains)
    assert before.shape == (6, 4)
    with torch.no_grad():
        for parameter in towers.towers[1].parameters():  # domain 2's tower
            parameter.add_(0.5)
    after = towers(features, domains)
    video = domains == 2
    assert torch.equal(after[~video], before[~video])
    assert not torch.allclose(after[video], before[video])
    with pytest.raises(ValueError, match="domain"):
        towers(features, torch.tensor([0, 1, 2, 3, 1, 2]))


def test_heads_shapes_at_b2() -> None:
    hidden, position = torch.randn(2, 4), torch.randn(2, D)
    bias = PositionBias(D)(position)
    assert bias.shape == (2,)
    output = ClickDwellHead(4)(hidden, bias)
    assert output.click_logit.shape == (2,) and output.dwell.shape == (2,)
    assert ClickDwellHead(4, dwell=False)(hidden, bias).dwell is None


def test_calibrator_recovers_an_overconfidence_temperature() -> None:
    generator = torch.Generator().manual_seed(0)
    true_logits = torch.randn(20_000, generator=generator) * 1.5
    labels = torch.bernoulli(torch.sigmoid(true_logits), generator=generator)
    overconfident = true_logits * 3.0
    calibrator = Calibrator().fit(overconfident, labels)
    assert calibrator.temperature == pytest.approx(3.0, rel=0.08)
    assert torch.allclose(calibrator(overconfident), overconfident / calibrator.temperature)
    state = calibrator.state_dict()
    restored = Calibrator()
    restored.load_state_dict(state)
    assert restored.temperature == pytest.approx(calibrator.temperature)


def test_calibrator_rejects_one_class() -> None:
    with pytest.raises(ValueError, match="both"):
        Calibrator().fit(torch.randn(5), torch.ones(5))


def test_batch_validate_names_the_bad_field(batch2: Batch) -> None:
    broken = dataclasses.replace(batch2, long_gap_hours=batch2.long_gap_hours.double())
    with pytest.raises(ValueError, match="long_gap_hours"):
        broken.validate()
    broken = dataclasses.replace(batch2, user_paths=batch2.user_paths[:, :2])
    with pytest.raises(ValueError, match="user_paths"):
        broken.validate()
    broken = dataclasses.replace(batch2, propensity=torch.tensor([0.5, 0.0]))
    with pytest.raises(ValueError, match="propensity"):
        broken.validate()


def test_lstm_stops_at_the_longest_history_without_changing_results() -> None:
    encoder = _encoder()
    behaviours = torch.randn(2, 7, D)
    mask = torch.tensor([[True] * 3 + [False] * 4, [True] * 2 + [False] * 5])
    keys = encoder.encode_long(behaviours, mask)
    full, _ = encoder.lstm(behaviours * mask.unsqueeze(-1))
    assert keys.shape == (2, 7, D)
    assert torch.allclose(keys[:, :3], full[:, :3], atol=1e-6)
    assert torch.equal(keys[:, 3:], torch.zeros(2, 4, D))
    assert torch.equal(
        encoder.encode_long(behaviours, torch.zeros_like(mask)), torch.zeros(2, 7, D)
    )
