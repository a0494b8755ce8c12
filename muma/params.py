"""Reading ``params.yaml``, the one file of pipeline hyperparameters that DVC tracks.

Each pipeline step reads its own section (named like the step) into a typed model, so an
unknown or misspelt key fails at start instead of being silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

ModelT = TypeVar("ModelT", bound=BaseModel)


class ParamsError(ValueError):
    """params.yaml is missing, unreadable, or a section does not validate."""


def load_params(path: Path) -> dict[str, Any]:
    """The whole params file as a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ParamsError(f"params file not found: {path}") from None
    except yaml.YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path} must hold a mapping of sections")
    return data


def load_section(path: Path, name: str, model: type[ModelT]) -> ModelT:
    """Validate section ``name`` of the params file into ``model``."""
    params = load_params(path)
    if name not in params:
        raise ParamsError(f"{path} has no {name!r} section")
    try:
        return model.model_validate(params[name])
    except ValidationError as error:
        raise ParamsError(f"{path} section {name!r} is invalid:\n{error}") from None
