"""Typed model configurations (pydantic, ``extra="forbid"``): MUMA, its ablations, baselines.

:class:`FeatureSpace` comes from the data (vocabulary sizes, dense widths); the rest are
hyperparameters from the ``train`` section of params.yaml. A misspelt key fails at start.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from muma.contract import MAX_POSITION, Domain

from .metapaths import DEFAULT_ITEM_METAPATHS, DEFAULT_USER_METAPATHS, resolve


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureSpace(_Strict):
    """Vocabulary sizes and dense widths of the training data.

    Ids run from 1 to the count given; 0 is padding, so each table has ``count + 1`` rows.
    """

    users: int = Field(ge=1)
    items: int = Field(ge=1)
    categories: int = Field(ge=1)
    creators: int = Field(ge=1)
    domains: int = Field(default=len(Domain), ge=1)
    max_position: int = Field(default=MAX_POSITION, ge=1)
    user_dense: int = Field(default=0, ge=0, description="dense user features per row (F_u)")
    item_dense: int = Field(default=0, ge=0, description="dense item features per row (F_i)")
    category_affinity: tuple[tuple[tuple[int, ...], ...], ...] = Field(
        default=(),
        description="(domains + 1) x (categories + 1) x A: the user_dense column holding the "
        "user's weight on that category per kind, -1 where none; empty: no such vectors "
        "(see Featurizer.affinity_index)",
    )

    @model_validator(mode="after")
    def _affinity_shape(self) -> FeatureSpace:
        table = self.category_affinity
        if not table:
            return self
        widths = {len(row) for plane in table for row in plane}
        if (
            len(table) != self.domains + 1
            or any(len(plane) != self.categories + 1 for plane in table)
            or len(widths) != 1
            or widths == {0}
        ):
            raise ValueError(
                "category_affinity must be (domains + 1) x (categories + 1) x A with A >= 1"
            )
        if any(not -1 <= v < self.user_dense for plane in table for row in plane for v in row):
            raise ValueError("category_affinity holds a column outside user_dense")
        return self


class EmbeddingConfig(_Strict):
    """Embedding tables and how the item side is combined."""

    dim: int = Field(default=16, ge=1)
    item_combine: Literal["sum", "concat"] = Field(
        default="sum",
        description="item-side vector: sum of item, category, creator, domain (dim) or concat (4x)",
    )


class EncoderConfig(_Strict):
    """The behaviour encoder: LSTM over the long history, Transformer over the recent window."""

    lstm_layers: int = Field(default=1, ge=1)
    transformer_layers: int = Field(default=1, ge=1)
    transformer_heads: int = Field(
        default=1, ge=1, description="1 head: at width 16 a second head costs ~40% more time"
    )
    transformer_ff: int = Field(default=32, ge=1)
    recent_length: int = Field(default=20, ge=1, description="max recent window (positions)")
    attention_hidden: tuple[int, ...] = Field(default=(32,), description="DIN scoring MLP")
    decay_init_per_hour: float = Field(
        default=0.01, gt=0, description="initial learned decay rate per domain (1/hours)"
    )
    dropout: float = Field(default=0.0, ge=0, lt=1)


class GraphConfig(_Strict):
    """Metapaths sampled for the request's user and the candidate item (in batch order)."""

    user_metapaths: tuple[str, ...] = DEFAULT_USER_METAPATHS
    item_metapaths: tuple[str, ...] = DEFAULT_ITEM_METAPATHS
    neighbours: int = Field(default=10, ge=1, description="K neighbours sampled per metapath")
    semantic_hidden: int = Field(default=16, ge=1, description="metapath attention width")

    @field_validator("user_metapaths")
    @classmethod
    def _user_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        resolve(value, "user")
        return value

    @field_validator("item_metapaths")
    @classmethod
    def _item_paths(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        resolve(value, "item")
        return value


class TowerConfig(_Strict):
    """Shared bottom MLP and the per-domain towers on top of it."""

    bottom: tuple[int, ...] = Field(default=(128, 64), min_length=1)
    tower: tuple[int, ...] = Field(default=(32,), min_length=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)


class MumaConfig(_Strict):
    """The MUMA ranker and its ablation switches.

    Attributes:
        no_time_decay: Drop the learned time decay (behaviour age is ignored).
        no_lstm: Attend over the raw long-history embeddings (no LSTM).
        no_transformer: Attend over the raw recent-window embeddings (no Transformer).
        no_graph: Drop the metapath aggregation (neighbour ids are ignored).
        dwell_head: Train the auxiliary dwell head (multi-task).
    """

    features: FeatureSpace
    embedding: EmbeddingConfig = EmbeddingConfig()
    encoder: EncoderConfig = EncoderConfig()
    graph: GraphConfig = GraphConfig()
    towers: TowerConfig = TowerConfig()
    dwell_head: bool = True
    no_time_decay: bool = False
    no_lstm: bool = False
    no_transformer: bool = False
    no_graph: bool = False

    @model_validator(mode="after")
    def _heads_divide(self) -> MumaConfig:
        width = item_side_dim(self.embedding)
        if not self.no_transformer and width % self.encoder.transformer_heads:
            raise ValueError(
                f"transformer_heads ({self.encoder.transformer_heads}) must divide the "
                f"item-side width ({width})"
            )
        return self


BaselineKind = Literal["fm", "deepfm", "din", "gru4rec", "bst"]


class BaselineConfig(_Strict):
    """One baseline ranker, in the same harness and on the same batches as MUMA.

    Attributes:
        kind: ``fm`` (logistic regression plus pairwise factorisation machine), ``deepfm``,
            ``din`` (target attention over the long history), ``gru4rec`` (GRU over the long
            history) or ``bst`` (Transformer over the recent window plus the candidate).
        hidden: Widths of the MLP on top (unused by ``fm``).
    """

    kind: BaselineKind
    features: FeatureSpace
    embedding: EmbeddingConfig = EmbeddingConfig()
    hidden: tuple[int, ...] = Field(default=(128, 64), min_length=1)
    attention_hidden: tuple[int, ...] = Field(default=(32,))
    attention_softmax: bool = Field(
        default=False, description="DIN: softmax-normalise weights (the DIN paper does not)"
    )
    transformer_heads: int = Field(default=2, ge=1)
    transformer_ff: int = Field(default=32, ge=1)
    recent_length: int = Field(default=20, ge=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    category_affinity: bool = Field(
        default=False,
        description="din, gru4rec, bst: also read MUMA's category affinity (CategoryAffinity) "
        "when the feature space has the table; a control that isolates what that lookup adds",
    )


def item_side_dim(embedding: EmbeddingConfig) -> int:
    """Width of the shared item-side vector for ``embedding``."""
    return embedding.dim * (4 if embedding.item_combine == "concat" else 1)
