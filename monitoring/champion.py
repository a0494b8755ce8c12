"""The champion ranker's view of a monitoring window: predicted CTR per impression and a learned
representation per user.

Both come from the same point-in-time features the model was trained on (the ``muma_v1``
service joined as of each impression), scored at the logged positions:

* ``prediction``: the calibrated click probability of every impression, so Evidently measures
  prediction drift and the calibration check compares it with the observed CTR;
* user representations: the mean of the ranker's last hidden layer over the user's
  impressions in the window (MUMA only), so ``representation_drift`` sees how the model's
  picture of each user moved between the windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from feature_repo.config import FeaturesParams
    from feature_repo.store import FeastParams
    from muma.settings import Settings
    from training.bundle import ModelBundle


@dataclass(frozen=True, slots=True)
class ChampionView:
    """Per-impression predictions (aligned with the window's rows) and per-user vectors."""

    prediction: np.ndarray
    representations: pd.DataFrame | None
    version: str


def champion_view(
    settings: Settings,
    bundle: ModelBundle,
    rows: pd.DataFrame,
    features: FeaturesParams,
    feast: FeastParams,
    chunk: int = 8192,
) -> ChampionView:
    """Score curated interaction ``rows`` (in order) with ``bundle``.

    Raises:
        ValueError: A row lacks a column the features need.
    """
    import pandas as pd
    import torch

    from training.data import with_features

    frame = rows.loc[:, ["event_id", "ts", "request_id", "user_id", "item_id", "domain"]].copy()
    frame["position"] = rows["position"].to_numpy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    service = bundle.info.get("feature_service", "muma_v1")
    featured = with_features(settings, frame, service, features, feast)
    featurizer = bundle.featurizer
    encoded = featurizer.transform(featured)
    batch = featurizer.batch(encoded)
    probabilities = torch.sigmoid(bundle.logits(batch, chunk)).numpy()
    representations = None
    if hasattr(bundle.model, "hidden"):
        hidden = []
        for start in range(0, len(batch), chunk):
            part = batch.select(torch.arange(start, min(start + chunk, len(batch))))
            hidden.append(bundle.hidden(part))
        vectors = torch.cat(hidden).numpy() if hidden else np.zeros((0, 1))
        representations = (
            pd.DataFrame(vectors, index=featured["user_id"].to_numpy()).groupby(level=0).mean()
        )
        representations.index.name = "user_id"
    return ChampionView(probabilities, representations, bundle.version)


def window_views(
    settings: Settings,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: FeaturesParams,
    feast: FeastParams,
) -> tuple[ChampionView, ChampionView] | None:
    """Both windows through the current champion, or None when there is no champion yet."""
    from training.registry import load_champion

    bundle = load_champion(settings)
    if bundle is None:
        return None
    return (
        champion_view(settings, bundle, reference, features, feast),
        champion_view(settings, bundle, current, features, feast),
    )


@dataclass(frozen=True, slots=True)
class ScoredWindows:
    """Both windows for :func:`monitoring.report.monitor`, scored by the champion if it can.

    Attributes:
        reference: The reference rows, with a ``prediction`` column when scored.
        current: The current rows, likewise.
        embeddings: ``reference_embeddings`` and ``current_embeddings`` for ``monitor``, or empty.
        version: The champion's version, or ``None`` when it was not used.
        note: What happened, for a log line (scored, none promoted yet, or why not used).
        warning: The champion exists or was expected but could not be used.
    """

    reference: pd.DataFrame
    current: pd.DataFrame
    embeddings: dict[str, pd.DataFrame | None]
    version: str | None
    note: str
    warning: bool = False


def score_windows(
    settings: Settings, reference: pd.DataFrame, current: pd.DataFrame
) -> ScoredWindows:
    """Both windows with the champion's predictions and user representations, when it can.

    Reads the ``features`` and ``feast`` sections of the settings' params.yaml. Without a
    promoted champion, or when its inputs cannot be built (missing features, a refused
    bundle), the windows come back unchanged and ``note`` says why; nothing raises.
    """
    from feature_repo.config import FeaturesParams
    from feature_repo.store import FeastParams
    from muma.params import ParamsError, load_section
    from training.bundle import BundleError
    from training.featurize import FeatureError

    try:
        features = load_section(settings.params_path, "features", FeaturesParams)
        feast = load_section(settings.params_path, "feast", FeastParams)
        views = window_views(settings, reference, current, features, feast)
    except (BundleError, FeatureError, ParamsError, ValueError) as error:
        note = f"champion not used for drift: {error}"
        return ScoredWindows(reference, current, {}, None, note, warning=True)
    if views is None:
        note = "no champion promoted yet: prediction and representation drift skipped"
        return ScoredWindows(reference, current, {}, None, note)
    reference_view, current_view = views
    return ScoredWindows(
        reference.assign(prediction=reference_view.prediction),
        current.assign(prediction=current_view.prediction),
        {
            "reference_embeddings": reference_view.representations,
            "current_embeddings": current_view.representations,
        },
        current_view.version,
        f"scored both windows with champion {current_view.version}",
    )
