"""Runtime settings, read once at the edge from ``MUMA_*`` environment variables and ``.env``.

Every runnable entry point (CLI command, DAG task, API start-up) calls :func:`load_settings`
once and passes the resulting :class:`Settings` object down; library code never reads the
environment itself.
"""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MUMA_"


class SettingsError(ValueError):
    """An environment variable holds a value MUMA cannot use; the message names it."""


class Settings(BaseSettings):
    """Typed runtime settings.

    Attributes:
        data_root: Root of the landing zone, curated tables, features and models.
        spark_master: Spark master URL; ``local[*]`` runs in-process, a cluster URL scales out.
        redis_url: Redis URL for Feast's online store; unset means Feast's embedded SQLite store.
        airflow_home: AIRFLOW_HOME used by the DAG wrappers and ``make demo``.
        seed: Random seed overriding ``base.seed`` of params.yaml (unset: params.yaml decides,
            which keeps ``dvc repro`` reproducible).
        api_token: Bearer token required by the API's write endpoints (never committed).
        params_path: The ``params.yaml`` holding the pipeline's hyperparameters.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        # Foreign keys in a shared .env (AIRFLOW_UID, ...) are not ours to judge; misspelt
        # MUMA_ keys are caught by load_settings instead.
        extra="ignore",
        frozen=True,
    )

    data_root: Path = Field(default=Path("data"))
    spark_master: str = Field(default="local[*]")
    redis_url: str | None = Field(default=None)
    airflow_home: Path = Field(default=Path(".airflow"))
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    api_token: SecretStr | None = Field(default=None)
    params_path: Path = Field(default=Path("params.yaml"))
    serving_url: str | None = Field(
        default=None, description="base URL of a running `muma serve`, asked to reload models"
    )

    @field_validator("spark_master")
    @classmethod
    def _spark_master_scheme(cls, value: str) -> str:
        allowed = ("local", "spark://", "yarn", "k8s://", "mesos://", "sc://")
        if not value.startswith(allowed):
            raise ValueError(f"must start with one of {', '.join(allowed)}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url_scheme(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://host:port[/db] URL")
        return value

    @property
    def landing_root(self) -> Path:
        """Where the log shipper (or the simulator) writes gzip JSON Lines partitions."""
        return self.data_root / "landing"


def load_settings(**overrides: object) -> Settings:
    """Build the settings once, turning validation failures into a message naming the variable.

    Args:
        **overrides: Explicit values that win over the environment (used by tests and CLIs).

    Raises:
        SettingsError: When a variable is set to an invalid value, or a ``MUMA_*`` variable
            (in the environment or ``.env``) is not a setting, which is most likely a typo.
    """
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    names = {name.upper() for name in os.environ}
    env_file = Path(str(Settings.model_config.get("env_file") or ".env"))
    if env_file.is_file():
        names |= {name.upper() for name in dotenv_values(env_file)}
    unknown = sorted(name for name in names if name.startswith(ENV_PREFIX) and name not in known)
    if unknown:
        raise SettingsError(
            f"unknown setting {', '.join(unknown)}; known settings: {', '.join(sorted(known))}"
        )
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            field = ".".join(str(part) for part in item["loc"]) or "?"
            variable = f"{ENV_PREFIX}{field.upper()}"
            problems.append(f"{variable}: {item['msg']} (got {item.get('input')!r})")
        raise SettingsError("invalid MUMA settings: " + "; ".join(problems)) from None
