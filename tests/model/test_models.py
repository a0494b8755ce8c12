"""Behaviour of the full MUMA ranker, its ablations and the baselines on synthetic batches."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from pydantic import ValidationError

from training.batch import SERVING_POSITION, Batch, synthetic_batch
from training.losses import LossConfig, ranker_loss
from training.metrics import auc
from training.model.baselines import BASELINES, build_baseline
from training.model.config import (
    BaselineConfig,
    EmbeddingConfig,
    EncoderConfig,
    FeatureSpace,
    GraphConfig,
    MumaConfig,
    TowerConfig,
)
from training.model.muma import MumaRanker, count_parameters

SMALL = {
    "embedding": EmbeddingConfig(dim=8),
    "encoder": EncoderConfig(recent_length=6, attention_hidden=(8,), transformer_ff=16),
    "graph": GraphConfig(neighbours=4, semantic_hidden=8),
    "towers": TowerConfig(bottom=(32, 16), tower=(8,)),
}


def _muma(features: FeatureSpace, seed: int = 0, **changes: object) -> MumaRanker:
    torch.manual_seed(seed)
    return MumaRanker(MumaConfig(features=features, **{**SMALL, **changes})).eval()


def _baseline(kind: str, features: FeatureSpace) -> torch.nn.Module:
    torch.manual_seed(0)
    config = BaselineConfig(
        kind=kind,
        features=features,
        embedding=EmbeddingConfig(dim=8),
        hidden=(16,),
        attention_hidden=(8,),
        transformer_ff=16,
        recent_length=6,
    )
    return build_baseline(config).eval()


def _pad_with_noise(batch: Batch) -> Batch:
    """The same batch with junk ids and gaps wherever a mask says padding."""
    changes = {}
    for prefix in ("long", "recent"):
        pad = ~getattr(batch, f"{prefix}_mask")
        for name in ("item_id", "category_id", "domain_id"):
            values = getattr(batch, f"{prefix}_{name}").clone()
            values[pad] = 1
            changes[f"{prefix}_{name}"] = values
        gaps = getattr(batch, f"{prefix}_gap_hours").clone()
        gaps[pad] = 999.0
        changes[f"{prefix}_gap_hours"] = gaps
    for prefix in ("user_paths", "item_paths"):
        values = getattr(batch, prefix).clone()
        values[~getattr(batch, f"{prefix}_mask")] = 1
        changes[prefix] = values
    return dataclasses.replace(batch, **changes)


def test_muma_output_shapes_at_b2(features: FeatureSpace, batch2: Batch) -> None:
    output = _muma(features)(batch2)
    assert output.click_logit.shape == (2,)
    assert output.dwell is not None and output.dwell.shape == (2,)
    assert _muma(features, dwell_head=False)(batch2).dwell is None


def test_muma_rejects_a_batch_built_for_another_config(
    features: FeatureSpace, batch2: Batch
) -> None:
    model = _muma(features, graph=GraphConfig(user_metapaths=("user_friend_user",), neighbours=4))
    with pytest.raises(ValueError, match="user metapaths"):
        model(batch2)
    narrow = dataclasses.replace(batch2, user_dense=batch2.user_dense[:, :1])
    with pytest.raises(ValueError, match="user_dense"):
        _muma(features)(narrow)


def test_rows_sharing_a_history_score_as_if_each_were_alone(
    features: FeatureSpace, batch64: Batch
) -> None:
    # Serving scores one user's candidates together (one history, encoded once); training
    # batches mix histories, some repeated. Both must equal scoring each row by itself.
    model = _muma(features)
    history = [
        name for name in batch64.__dataclass_fields__ if name.startswith(("long_", "recent_"))
    ]
    one_user = dataclasses.replace(
        batch64,
        **{name: getattr(batch64, name)[:1].expand_as(getattr(batch64, name)) for name in history},
    )
    pick = torch.tensor([0, 1, 0, 2, 1, 0, 3, 3])
    mixed = dataclasses.replace(
        batch64.select(torch.arange(8)),
        **{name: getattr(batch64, name)[pick] for name in history},
    )
    with torch.inference_mode():
        for batch in (one_user, mixed):
            together = model(batch).click_logit
            alone = torch.cat(
                [model(batch.select(torch.tensor([i]))).click_logit for i in range(len(batch))]
            )
            torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_muma_ignores_padded_inputs(features: FeatureSpace, batch64: Batch) -> None:
    model = _muma(features)
    with torch.no_grad():
        reference = model(batch64).click_logit
        noisy = model(_pad_with_noise(batch64)).click_logit
    assert torch.allclose(reference, noisy, atol=1e-5)


def test_muma_uses_gaps_and_graph_neighbours(features: FeatureSpace, batch64: Batch) -> None:
    model = _muma(features)
    with torch.no_grad():
        reference = model(batch64).click_logit
        older = dataclasses.replace(batch64, long_gap_hours=batch64.long_gap_hours * 10)
        other_paths = dataclasses.replace(batch64, user_paths=batch64.user_paths.flip(0))
        assert not torch.allclose(model(older).click_logit, reference)
        assert not torch.allclose(model(other_paths).click_logit, reference)


@pytest.mark.parametrize(
    ("switch", "absent"),
    [
        ("no_time_decay", "encoder.decay."),
        ("no_lstm", "encoder.lstm."),
        ("no_transformer", "encoder.transformer."),
        ("no_graph", "user_graph."),
    ],
)
def test_ablations_remove_their_component(
    features: FeatureSpace, batch64: Batch, switch: str, absent: str
) -> None:
    full, ablated = _muma(features), _muma(features, **{switch: True})
    assert any(name.startswith(absent) for name, _ in full.named_parameters())
    assert not any(name.startswith(absent) for name, _ in ablated.named_parameters())
    assert count_parameters(ablated) < count_parameters(full)
    assert torch.isfinite(ablated(batch64).click_logit).all()


def test_ablated_inputs_are_unused(features: FeatureSpace, batch64: Batch) -> None:
    no_decay, no_graph = _muma(features, no_time_decay=True), _muma(features, no_graph=True)
    older = dataclasses.replace(
        batch64,
        long_gap_hours=batch64.long_gap_hours * 10,
        recent_gap_hours=batch64.recent_gap_hours * 10,
    )
    other_paths = dataclasses.replace(
        batch64, user_paths=batch64.user_paths.flip(0), item_paths=batch64.item_paths.flip(0)
    )
    with torch.no_grad():
        assert torch.equal(no_decay(older).click_logit, no_decay(batch64).click_logit)
        assert torch.equal(no_graph(other_paths).click_logit, no_graph(batch64).click_logit)


def test_position_is_an_input_in_training_and_fixed_at_serving(
    features: FeatureSpace, batch64: Batch
) -> None:
    model = _muma(features)
    with torch.no_grad():
        model.position_bias.project.weight.normal_()
        logged = model(batch64).click_logit
        moved = dataclasses.replace(batch64, position=batch64.position % 10 + 1)
        assert not torch.allclose(model(moved).click_logit, logged), "training sees position"
        serving = model(batch64.at_serving_position()).click_logit
        serving_moved = model(moved.at_serving_position()).click_logit
    assert torch.equal(batch64.at_serving_position().position.unique(), torch.tensor([1]))
    assert SERVING_POSITION == 1
    assert torch.equal(serving, serving_moved), "serving scores do not depend on the logged slot"


def test_state_dict_round_trips_with_weights_only(features: FeatureSpace, batch2: Batch) -> None:
    model = _muma(features)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    restored = _muma(features, seed=99)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(restored(batch2).click_logit, model(batch2).click_logit)


@pytest.mark.parametrize("kind", sorted(BASELINES))
def test_baselines_shapes_gradients_and_padding(
    features: FeatureSpace, batch2: Batch, batch64: Batch, kind: str
) -> None:
    model = _baseline(kind, features)
    output = model(batch2)
    assert output.click_logit.shape == (2,) and output.dwell is None
    model.train()
    loss = ranker_loss(model(batch64), batch64, LossConfig()).total
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and any(bool(g.abs().sum() > 0) for g in grads)
    model.eval()
    with torch.no_grad():
        reference = model(batch64).click_logit
        assert torch.allclose(model(_pad_with_noise(batch64)).click_logit, reference, atol=1e-5)


def test_fm_pairwise_term_matches_explicit_pairs(features: FeatureSpace, batch2: Batch) -> None:
    model = _baseline("fm", features)
    fields = model.fields(batch2)  # B x 5 x D
    explicit = sum((fields[:, i] * fields[:, j]).sum(-1) for i in range(5) for j in range(i + 1, 5))
    first_order = model.fm_logit(batch2, torch.zeros_like(fields))
    assert torch.allclose(model.fm_logit(batch2, fields) - first_order, explicit, atol=1e-6)


def test_configs_reject_unknown_keys_and_bad_combinations(features: FeatureSpace) -> None:
    with pytest.raises(ValidationError, match="extra"):
        MumaConfig(features=features, no_lstms=True)
    with pytest.raises(ValidationError, match="transformer_heads"):
        MumaConfig(features=features, encoder=EncoderConfig(transformer_heads=3))
    with pytest.raises(ValidationError, match="unknown metapath"):
        GraphConfig(user_metapaths=("user_bogus_user",))
    with pytest.raises(ValidationError, match="starts at"):
        GraphConfig(user_metapaths=("item_category_item",))


def _train(model: torch.nn.Module, batch: Batch, steps: int, lr: float) -> list[float]:
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    config = LossConfig(propensity_weighting=False)
    losses = []
    model.train()
    for _ in range(steps):
        loss = ranker_loss(model(batch), batch, config)
        optimiser.zero_grad()
        loss.total.backward()
        optimiser.step()
        losses.append(float(loss.click.detach()))
    return losses


@pytest.mark.parametrize("variant", ["muma", "din"])
def test_a_tiny_model_overfits_a_separable_problem(features: FeatureSpace, variant: str) -> None:
    batch = synthetic_batch(
        features, 128, long_length=12, recent_length=6, graph=GraphConfig(neighbours=4), seed=5
    )
    assert 0.2 < float(batch.clicked.mean()) < 0.85, "both classes well represented"
    model = _muma(features) if variant == "muma" else _baseline("din", features)
    losses = _train(model, batch, steps=60, lr=0.03)
    model.eval()
    with torch.no_grad():
        scores = model(batch).click_logit
    assert losses[-1] < 0.5 * losses[0]
    assert auc(batch.clicked.numpy(), scores.numpy()) > 0.9
