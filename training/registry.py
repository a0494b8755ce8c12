"""Champion and challenger: a promotion decision on the same test window, and a small registry.

Layout under ``<data_root>/models/``::

    challenger/            the bundle ``muma train`` wrote (a DVC output)
    registry/<version>/    every promoted bundle, kept (so a rollback is a pointer change)
    champion.json          {"version", "path", "name", "metrics", "promoted_at_window"}
    decision.json          the last promotion decision of ``muma evaluate``

A challenger is promoted only when the decision says so: it must beat the champion's overall
metric on the same test window by ``min_improvement`` (any margin when there is no champion)
and be calibrated within ``max_ece``. ``champion.json`` is replaced atomically (write then
rename), so a serving process polling it never reads half a file; serving reloads when its
``version`` changes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.bundle import BundleError, ModelBundle
from training.config import EvaluateParams

if TYPE_CHECKING:
    from muma.settings import Settings
    from training.metrics import Evaluation


def models_root(settings: Settings) -> Path:
    return Path(settings.data_root) / "models"


def challenger_dir(settings: Settings) -> Path:
    return models_root(settings) / "challenger"


def champion_file(settings: Settings) -> Path:
    return models_root(settings) / "champion.json"


def decision_file(settings: Settings) -> Path:
    return models_root(settings) / "decision.json"


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether the challenger replaces the champion, and why."""

    promote: bool
    reason: str
    metric: str
    challenger_version: str
    challenger_value: float | None
    champion_version: str | None
    champion_value: float | None
    challenger_ece: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    challenger: ModelBundle,
    challenger_eval: Evaluation,
    champion: ModelBundle | None,
    champion_eval: Evaluation | None,
    params: EvaluateParams,
) -> Decision:
    """Compare both models on the same test window; a worse model is never promoted."""
    metric = params.promotion_metric
    new = getattr(challenger_eval.overall, metric)
    old = None if champion_eval is None else getattr(champion_eval.overall, metric)
    ece = challenger_eval.overall.ece
    common = {
        "metric": metric,
        "challenger_version": challenger.version,
        "challenger_value": new,
        "champion_version": None if champion is None else champion.version,
        "champion_value": old,
        "challenger_ece": ece,
    }
    if new is None:
        return Decision(
            False, f"the challenger's {metric} is undefined on the test window", **common
        )
    if ece > params.max_ece:
        return Decision(
            False, f"challenger ECE {ece:.4f} exceeds max_ece {params.max_ece}", **common
        )
    if champion is not None and champion.version == challenger.version:
        return Decision(False, "the challenger is the champion (same weights)", **common)
    if old is None:
        return Decision(True, "no champion yet", **common)
    if new >= old + params.min_improvement and new > old:
        return Decision(True, f"{metric} {new:.4f} beats the champion's {old:.4f}", **common)
    return Decision(
        False,
        f"{metric} {new:.4f} does not beat the champion's {old:.4f} by {params.min_improvement}",
        **common,
    )


def load_champion(settings: Settings) -> ModelBundle | None:
    """The current champion bundle, or None when nothing was promoted yet.

    Raises:
        BundleError: champion.json points at a missing, corrupt or tampered bundle.
    """
    pointer = read_champion(settings)
    if pointer is None:
        return None
    return ModelBundle.load(models_root(settings) / pointer["path"])


def read_champion(settings: Settings) -> dict[str, Any] | None:
    path = champion_file(settings)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BundleError(f"{path} is not valid JSON: {error}") from None


def promote(settings: Settings) -> dict[str, Any]:
    """Promote the challenger if the last ``muma evaluate`` decided so.

    Copies ``challenger/`` to ``registry/<version>/`` (verified by loading it) and atomically
    rewrites ``champion.json``.

    Returns:
        ``{"promoted": bool, "version": ..., "reason": ...}``.

    Raises:
        BundleError: No decision yet, or a challenger that changed since it was evaluated.
    """
    path = decision_file(settings)
    if not path.is_file():
        raise BundleError(f"{path} is missing: run `muma evaluate` first")
    decision = json.loads(path.read_text())
    if not decision["promote"]:
        return {
            "promoted": False,
            "version": decision["champion_version"],
            "reason": decision["reason"],
        }
    challenger = ModelBundle.load(challenger_dir(settings))
    if challenger.version != decision["challenger_version"]:
        raise BundleError(
            f"the challenger is version {challenger.version} but the decision was about "
            f"{decision['challenger_version']}: run `muma evaluate` again"
        )
    target = models_root(settings) / "registry" / challenger.version
    if not target.exists():
        staging = target.with_name(f".{target.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(challenger_dir(settings), staging)
        ModelBundle.load(staging)
        os.replace(staging, target)
    pointer = {
        "version": challenger.version,
        "name": challenger.name,
        "path": str(target.relative_to(models_root(settings))),
        "metric": decision["metric"],
        "value": decision["challenger_value"],
        "previous": decision["champion_version"],
        "reason": decision["reason"],
    }
    write_json_atomic(champion_file(settings), pointer)
    return {"promoted": True, "version": challenger.version, "reason": decision["reason"]}


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(temporary, path)
