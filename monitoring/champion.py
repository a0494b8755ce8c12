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
