"""The ``train`` section of ``params.yaml``: data split, model choice, optimiser and loss.

Every key is validated (unknown keys are errors), so a typo in ``dvc exp run -S train.lr=...``
fails at once instead of training the default model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from training.losses import LossConfig
from training.model.config import (
    BaselineKind,
    EmbeddingConfig,
    EncoderConfig,
    GraphConfig,
    TowerConfig,
)

ModelKind = Literal["muma", "fm", "deepfm", "din", "gru4rec", "bst"]
Ablation = Literal["none", "no_time_decay", "no_lstm", "no_transformer", "no_graph"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitParams(_Strict):
    """A split by time, never at random: the last hours of the window are validation, then test.

    Attributes:
        start: First hour of the window (ISO-8601), or ``None`` for the first curated hour.
        end: End of the window, exclusive, or ``None`` for the end of the last curated hour.
        valid_hours: Hours right before the test window, for early stopping and calibration.
        test_hours: The last hours of the window; never seen in training.
    """

    start: str | None = None
    end: str | None = None
    valid_hours: int = Field(default=6, ge=1)
    test_hours: int = Field(default=6, ge=1)


class MumaParams(_Strict):
    """The MUMA ranker's architecture (vocabulary sizes come from the data)."""

    embedding: EmbeddingConfig = EmbeddingConfig()
    encoder: EncoderConfig = EncoderConfig()
    graph: GraphConfig = GraphConfig()
    towers: TowerConfig = TowerConfig()
    dwell_head: bool = True


class BaselineParams(_Strict):
    """Shared knobs of the baselines (kind comes from ``train.model``)."""

    hidden: tuple[int, ...] = (128, 64)
    attention_hidden: tuple[int, ...] = (32,)
    transformer_heads: int = Field(default=2, ge=1)
    transformer_ff: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    category_affinity: bool = Field(
        default=False,
        description="also feed the sequence baselines MUMA's category affinity (a control)",
    )


class TrainParams(_Strict):
    """How ``muma train`` builds its data and fits a model.

    Attributes:
        model: ``muma`` or a baseline kind.
        ablation: A MUMA ablation (``none`` for the full model).
        feature_service: Feast feature service of the training set (batch views only).
        pit_engine: Point-in-time join engine: ``polars`` over the offline files (fast) or
            ``feast`` (``get_historical_features``); tested to give identical rows.
        split: The time split.
        long_length: Behaviour history per row (at most ``features.sequence_length``).
        batch_size, epochs, lr, weight_decay: The optimiser (AdamW).
        id_dropout: In training only, the share of rows whose user id and (independently)
            candidate item id are replaced by the unknown id, so the unknown embedding is
            trained and the model learns to score a new user or item from what else it knows
            (category, creator, dense features, history, graph neighbours).
        early_stopping_patience: Epochs without a better validation AUC before stopping.
        threads: torch intra-op threads.
        max_train_rows: Keep only the newest rows of the training window (``None``: all).
        serving_position: The slot every candidate is scored at in evaluation and serving.
        eval_batch_size: Rows per forward pass when scoring.
    """

    model: ModelKind = "muma"
    ablation: Ablation = "none"
    feature_service: str = "muma_v1"
    pit_engine: Literal["polars", "feast"] = "polars"
    split: SplitParams = SplitParams()
    long_length: int = Field(default=50, ge=1)
    batch_size: int = Field(default=1024, ge=1)
    epochs: int = Field(default=10, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    id_dropout: float = Field(default=0.0, ge=0, lt=1)
    early_stopping_patience: int = Field(default=2, ge=1)
    threads: int = Field(default=2, ge=1)
    max_train_rows: int | None = Field(default=None, ge=1)
    serving_position: int = Field(default=1, ge=1)
    eval_batch_size: int = Field(default=8192, ge=1)
    muma: MumaParams = MumaParams()
    baseline: BaselineParams = BaselineParams()
    loss: LossConfig = LossConfig()

    @model_validator(mode="after")
    def _ablation_needs_muma(self) -> TrainParams:
        if self.ablation != "none" and self.model != "muma":
            raise ValueError(f"ablation {self.ablation!r} applies to model 'muma' only")
        return self

    @property
    def name(self) -> str:
        """A short name: ``muma``, ``muma-no_graph``, ``din``..."""
        return self.model if self.ablation == "none" else f"{self.model}-{self.ablation}"

    @property
    def baseline_kind(self) -> BaselineKind:
        if self.model == "muma":
            raise ValueError("model 'muma' is not a baseline")
        return self.model


class EvaluateParams(_Strict):
    """How ``muma evaluate`` scores and decides promotion.

    Attributes:
        k: NDCG/HR cut-off.
        calibration_bins: ECE bins.
        promotion_metric: Overall metric the challenger must not lose on.
        min_improvement: The challenger must beat the champion by at least this much.
        max_ece: A challenger worse calibrated than this is never promoted.
    """

    k: int = Field(default=10, ge=1)
    calibration_bins: int = Field(default=10, ge=2)
    promotion_metric: Literal["auc", "gauc", "ndcg_at_k"] = "auc"
    min_improvement: float = Field(default=0.0, ge=0)
    max_ece: float = Field(default=0.1, gt=0)
