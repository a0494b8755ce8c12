"""A trained model on disk: weights, featurizer and metadata, verified before loading.

A bundle is a directory::

    model.pt      the state dict (torch.save of tensors only; loaded with weights_only=True)
    arrays.npz    the featurizer's vocabularies, statistics and graph neighbours (no pickles)
    bundle.json   model kind and config, featurizer metadata, calibration, training window,
                  metrics, and the SHA-256 of the two files above

:meth:`ModelBundle.load` recomputes both digests first and refuses a bundle whose files do
not match (:class:`BundleError`), so a corrupt or tampered model is never deserialised. The
version of a bundle is the first 12 hex digits of the weights' digest: the same seed and data
give the same version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from training.batch import Batch
from training.featurize import Featurizer
from training.model.config import BaselineConfig, MumaConfig

if TYPE_CHECKING:
    import pandas as pd

FORMAT_VERSION = 1
MODEL_FILE, ARRAYS_FILE, META_FILE = "model.pt", "arrays.npz", "bundle.json"


class BundleError(RuntimeError):
    """A bundle that is missing, incomplete, corrupt or tampered with; the message says which."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_model(kind: str, config: dict[str, Any]) -> nn.Module:
    """The untrained module of ``kind`` (``muma`` or a baseline) for a config dict."""
    if kind == "muma":
        from training.model.muma import MumaRanker

        return MumaRanker(MumaConfig.model_validate(config))
    from training.model.baselines import build_baseline

    return build_baseline(BaselineConfig.model_validate(config))


@dataclass
class ModelBundle:
    """A model with everything needed to score feature-store rows.

    Attributes:
        name: Model name (``muma``, ``muma-no_graph``, ``din``...).
        kind: ``muma`` or a baseline kind.
        config: The model config as a dict (MumaConfig or BaselineConfig).
        model: The module, in eval mode.
        featurizer: The fitted featurizer.
        temperature: Calibration temperature (logit / T).
        info: Training window, feature service, seed, metrics... (JSON-ready).
    """

    name: str
    kind: str
    config: dict[str, Any]
    model: nn.Module
    featurizer: Featurizer
    temperature: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)
    version: str = ""

    # ---------------------------------------------------------------------------- scoring
    def logits(self, batch: Batch, chunk: int = 8192) -> torch.Tensor:
        """Calibrated click logits ``B`` (inference mode, in chunks of ``chunk`` rows)."""
        if self.model.training:
            self.model.eval()
        outputs = []
        with torch.inference_mode():
            if 0 < len(batch) <= chunk:  # one chunk: no copy of every field (serving's case)
                return self.model(batch).click_logit / self.temperature
            for start in range(0, len(batch), chunk):
                part = batch.select(torch.arange(start, min(start + chunk, len(batch))))
                outputs.append(self.model(part).click_logit / self.temperature)
        return torch.cat(outputs) if outputs else torch.zeros(0)

    def hidden(self, batch: Batch) -> torch.Tensor:
        """The ranker's last hidden layer ``B x H`` (MUMA only; for the neural-linear bandit).

        Raises:
            BundleError: The model has no hidden representation (a baseline).
        """
        represent = getattr(self.model, "hidden", None)
        if represent is None:
            raise BundleError(f"model {self.name!r} exposes no hidden layer")
        if self.model.training:
            self.model.eval()
        with torch.inference_mode():
            return represent(batch)

    def predict(self, frame: pd.DataFrame, position: int | None = None) -> np.ndarray:
        """Calibrated click probabilities of feature-store rows (see Featurizer.transform)."""
        encoded = self.featurizer.transform(frame, position=position)
        return torch.sigmoid(self.logits(self.featurizer.batch(encoded))).numpy()

    # ------------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> Path:
        """Write the bundle into ``directory`` (created; existing bundle files replaced)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {key: value.detach().cpu() for key, value in self.model.state_dict().items()}
        torch.save(state, directory / MODEL_FILE)
        meta, arrays = self.featurizer.state()
        with (directory / ARRAYS_FILE).open("wb") as handle:
            np.savez(handle, **arrays)
        digests = {MODEL_FILE: sha256(directory / MODEL_FILE)}
        digests[ARRAYS_FILE] = sha256(directory / ARRAYS_FILE)
        self.version = digests[MODEL_FILE][:12]
        document = {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "config": self.config,
            "featurizer": meta,
            "temperature": self.temperature,
            "info": self.info,
            "sha256": digests,
        }
        (directory / META_FILE).write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return directory

    @classmethod
    def load(cls, directory: Path) -> ModelBundle:
        """Verify and load a bundle.

        Raises:
            BundleError: A missing file, a digest mismatch (corrupt or tampered), or weights
                that do not fit the recorded config.
        """
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise BundleError(f"no model bundle at {directory} ({META_FILE} missing)")
        try:
            document = json.loads(meta_path.read_text())
        except json.JSONDecodeError as error:
            raise BundleError(f"{meta_path} is not valid JSON: {error}") from None
        if document.get("format_version") != FORMAT_VERSION:
            raise BundleError(
                f"{meta_path} has format {document.get('format_version')!r}, "
                f"this MUMA reads {FORMAT_VERSION}"
            )
        for name in (MODEL_FILE, ARRAYS_FILE):
            path = directory / name
            if not path.is_file():
                raise BundleError(f"{path} is missing")
            if sha256(path) != document["sha256"].get(name):
                raise BundleError(
                    f"{path} does not match the digest in {META_FILE}: the file is corrupt or "
                    "was modified after training; refusing to load it"
                )
        try:
            state = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
            with np.load(directory / ARRAYS_FILE, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except Exception as error:  # a digest-valid but unreadable file
            raise BundleError(f"cannot read the bundle at {directory}: {error}") from None
        model = build_model(document["kind"], document["config"])
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise BundleError(f"weights at {directory} do not fit the config: {error}") from None
        model.eval()
        return cls(
            name=document["name"],
            kind=document["kind"],
            config=document["config"],
            model=model,
            featurizer=Featurizer.from_state(document["featurizer"], arrays),
            temperature=float(document["temperature"]),
            info=document["info"],
            version=document["version"],
        )
