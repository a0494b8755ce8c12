"""The three steps behind ``muma training-set``, ``muma train`` and ``muma evaluate``.

1. :func:`build_training_set` splits the curated interactions by time and writes, per window,
   the labelled impressions with their point-in-time features (Feast) as Parquet, plus the
   simulator's true click probability on the test window when the data is simulated.
2. :func:`train_model` fits the featurizer and the model on the training window, early-stops and
   calibrates on the validation window, and saves a :class:`~training.bundle.ModelBundle`.
3. :func:`evaluate_models` scores the challenger, and the current champion, on the same test
   window and decides promotion (see :mod:`training.registry`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from muma.contract import Domain
from training.bundle import ModelBundle, build_model
from training.config import EvaluateParams, TrainParams
from training.data import (
    TimeSplit,
    TrainingDataError,
    Window,
    friendships,
    item_catalog,
    labelled_impressions,
    time_split,
    with_features,
)
from training.featurize import Featurizer
from training.metrics import Evaluation, evaluate
from training.train import EpochLog, FitResult, fit

if TYPE_CHECKING:
    import pandas as pd

    from feature_repo.config import FeaturesParams
    from feature_repo.store import FeastParams
    from muma.settings import Settings

WINDOWS = ("train", "valid", "test")
TRUE_P_CLICK = "true_p_click"


@dataclass(frozen=True, slots=True)
class TrainingSetSummary:
    """Rows, clicks and window per split, and where the files are."""

    directory: Path
    split: TimeSplit
    rows: dict[str, int]
    clicks: dict[str, int]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "split": self.split.as_dict(),
            "rows": self.rows,
            "clicks": self.clicks,
            "seconds": round(self.seconds, 2),
        }


def build_training_set(
    settings: Settings,
    params: TrainParams,
    curated_root: Path,
    out_dir: Path,
    features: FeaturesParams,
    feast: FeastParams,
    truth_root: Path | None = None,
) -> TrainingSetSummary:
    """Write ``train.parquet``, ``valid.parquet``, ``test.parquet`` and ``split.json``.

    Raises:
        TrainingDataError: Too few hours, an empty window, or a missing column.
    """
    started = time.perf_counter()
    split = time_split(curated_root, params.split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, clicks = {}, {}
    for name in WINDOWS:
        window: Window = getattr(split, name)
        impressions = labelled_impressions(curated_root, window)
        if name == "train" and params.max_train_rows and len(impressions) > params.max_train_rows:
            impressions = impressions.iloc[-params.max_train_rows :].reset_index(drop=True)
        frame = with_features(
            settings, impressions, params.feature_service, features, feast, params.pit_engine
        )
        if truth_root is not None:
            frame = _with_truth(frame, Path(truth_root), window)
        frame.to_parquet(out_dir / f"{name}.parquet", index=False)
        rows[name], clicks[name] = len(frame), int(frame["clicked"].sum())
    summary = TrainingSetSummary(out_dir, split, rows, clicks, time.perf_counter() - started)
    (out_dir / "split.json").write_text(json.dumps(summary.as_dict(), indent=2) + "\n")
    return summary


def _with_truth(frame: pd.DataFrame, truth_root: Path, window: Window) -> pd.DataFrame:
    """Join the simulator's ``p_click`` by event id (real data has no truth: column stays null)."""
    import pandas as pd

    from muma.landing import partition_hour

    paths = [
        path
        for path in sorted(truth_root.glob("v1/impressions/date=*/hour=*/truth.parquet"))
        if window.start <= partition_hour(path) < window.end
    ]
    if not paths:
        return frame.assign(**{TRUE_P_CLICK: np.nan})
    truth = pd.concat([pd.read_parquet(p, columns=["event_id", "p_click"]) for p in paths])
    truth = truth.rename(columns={"p_click": TRUE_P_CLICK}).drop_duplicates("event_id")
    return frame.merge(truth, on="event_id", how="left")


def read_window(directory: Path, name: str) -> pd.DataFrame:
    """One window of a training set written by :func:`build_training_set`.

    Raises:
        TrainingDataError: The file is missing (run ``muma training-set``) or empty.
    """
    import pandas as pd

    path = Path(directory) / f"{name}.parquet"
    if not path.is_file():
        raise TrainingDataError(f"{path} is missing: run `muma training-set` first")
    frame = pd.read_parquet(path)
    if frame.empty:
        raise TrainingDataError(f"{path} holds no rows")
    return frame


def feature_names(features: FeaturesParams, feature_service: str) -> tuple[list[str], list[str]]:
    """User-side and item-side dense feature columns of the service's batch views."""
    from feature_repo.pit import service_tables
    from feature_repo.tables import ITEM_ID, USER_SEQUENCE, feature_tables

    try:
        tables = service_tables(feature_service, feature_tables(features))
    except ValueError as error:
        raise TrainingDataError(str(error)) from None
    user, item = [], []
    for table in tables:
        if table.name != USER_SEQUENCE:
            (item if table.entity_key == ITEM_ID else user).extend(table.feature_names)
    return user, item


@dataclass
class TrainedModel:
    """A fitted bundle with its fit history and the test window's evaluation."""

    bundle: ModelBundle
    fit: FitResult
    test: Evaluation
    rows: dict[str, int]


def model_config(params: TrainParams, featurizer: Featurizer) -> dict[str, Any]:
    """The model config dict for ``params`` on the featurizer's feature space."""
    from training.model.config import BaselineConfig, EncoderConfig, MumaConfig

    space = featurizer.feature_space()
    if params.model == "muma":
        muma = params.muma
        encoder = EncoderConfig.model_validate(
            {**muma.encoder.model_dump(), "recent_length": featurizer.recent_length}
        )
        switches = {} if params.ablation == "none" else {params.ablation: True}
        config = MumaConfig(
            features=space,
            embedding=muma.embedding,
            encoder=encoder,
            graph=featurizer.graph,
            towers=muma.towers,
            dwell_head=muma.dwell_head,
            **switches,
        )
    else:
        base = params.baseline
        config = BaselineConfig(
            kind=params.baseline_kind,
            features=space,
            embedding=params.muma.embedding,
            hidden=base.hidden,
            attention_hidden=base.attention_hidden,
            transformer_heads=base.transformer_heads,
            transformer_ff=base.transformer_ff,
            recent_length=featurizer.recent_length,
            dropout=base.dropout,
            category_affinity=base.category_affinity,
        )
    return config.model_dump(mode="json")


def fit_featurizer(
    train: pd.DataFrame,
    params: TrainParams,
    features: FeaturesParams,
    curated_root: Path,
    train_end: datetime,
    seed: int,
) -> Featurizer:
    """Vocabularies, statistics and graph from the training window (catalog up to its end)."""
    if params.long_length > features.sequence_length:
        raise TrainingDataError(
            f"train.long_length ({params.long_length}) exceeds features.sequence_length "
            f"({features.sequence_length}): the feature store keeps only that many behaviours"
        )
    user_names, item_names = feature_names(features, params.feature_service)
    return Featurizer.fit(
        train,
        item_catalog(curated_root, train_end),
        friendships(curated_root, train_end),
        user_feature_names=user_names,
        item_feature_names=item_names,
        graph=params.muma.graph,
        long_length=params.long_length,
        recent_length=min(params.muma.encoder.recent_length, params.long_length),
        seed=seed,
        category_vectors={Domain(d).value: names for d, names in features.categories.items()},
    )


def train_model(
    params: TrainParams,
    features: FeaturesParams,
    evaluate_params: EvaluateParams,
    data_dir: Path,
    curated_root: Path,
    seed: int,
    progress: bool = True,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainedModel:
    """Fit the featurizer and the model of ``params`` on a written training set."""
    split_path = Path(data_dir) / "split.json"
    if not split_path.is_file():
        raise TrainingDataError(f"{split_path} is missing: run `muma training-set` first")
    split = json.loads(split_path.read_text())["split"]
    train_end = datetime.fromisoformat(split["train"]["end"])
    frames = {name: read_window(data_dir, name) for name in WINDOWS}
    featurizer = fit_featurizer(frames["train"], params, features, curated_root, train_end, seed)
    encoded = {name: featurizer.transform(frame) for name, frame in frames.items()}
    config = model_config(params, featurizer)
    torch.manual_seed(seed)
    model = build_model(params.model, config)
    result = fit(
        model,
        featurizer,
        encoded["train"],
        encoded["valid"],
        params,
        seed,
        on_epoch=on_epoch,
        progress=progress,
    )
    bundle = ModelBundle(
        name=params.name,
        kind=params.model,
        config=config,
        model=model,
        featurizer=featurizer,
        temperature=result.temperature,
        info={
            "feature_service": params.feature_service,
            "split": split,
            "seed": seed,
            "serving_position": params.serving_position,
            "params": params.model_dump(mode="json"),
        },
    )
    test = evaluate_bundle(bundle, frames["test"], evaluate_params)
    return TrainedModel(bundle, result, test, {k: len(v) for k, v in frames.items()})


def evaluate_bundle(bundle: ModelBundle, frame: pd.DataFrame, params: EvaluateParams) -> Evaluation:
    """Metrics of ``bundle`` on labelled rows (at their logged positions), overall and per domain.

    Rows carrying the simulator's ``true_p_click`` also get its correlation with the prediction.
    """
    probabilities = bundle.predict(frame)
    truth = None
    if TRUE_P_CLICK in frame and frame[TRUE_P_CLICK].notna().all():
        truth = frame[TRUE_P_CLICK].to_numpy(dtype=np.float64)
    return evaluate(
        probabilities,
        frame["clicked"].to_numpy(dtype=np.float64),
        frame["user_id"].to_numpy(),
        frame["request_id"].to_numpy(),
        frame["domain"].to_numpy(),
        truth,
        k=params.k,
        bins=params.calibration_bins,
    )


def calibration_curve(
    bundle: ModelBundle, frame: pd.DataFrame, bins: int
) -> list[dict[str, float]]:
    """Mean predicted vs observed CTR per equal-width probability bin (a ``dvc plots`` table)."""
    probabilities = bundle.predict(frame)
    labels = frame["clicked"].to_numpy(dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probabilities, edges) - 1, 0, bins - 1)
    curve = []
    for b in range(bins):
        rows = index == b
        if rows.any():
            curve.append(
                {
                    "bin": b,
                    "predicted": round(float(probabilities[rows].mean()), 5),
                    "observed": round(float(labels[rows].mean()), 5),
                    "rows": int(rows.sum()),
                }
            )
    return curve
