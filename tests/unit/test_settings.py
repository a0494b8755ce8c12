"""Unit tests of ``muma.settings.load_settings``: defaults, overrides and readable failures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from muma.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Run in an empty directory (no stray ``.env``) with no ``MUMA_*`` variables set."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("MUMA_"):
            monkeypatch.delenv(name)
    return tmp_path


def test_defaults() -> None:
    settings = load_settings()

    assert settings.spark_master == "local[*]"
    assert settings.redis_url is None
    assert settings.api_token is None
    assert settings.data_root == Path("data")
    assert settings.landing_root == Path("data") / "landing"


def test_environment_variable_overrides_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUMA_SPARK_MASTER", "spark://spark-master:7077")
    monkeypatch.setenv("MUMA_REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("MUMA_SEED", "7")

    settings = load_settings()

    assert settings.spark_master == "spark://spark-master:7077"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.seed == 7


def test_empty_redis_url_means_no_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUMA_REDIS_URL", "")

    assert load_settings().redis_url is None


def test_dotenv_file_is_read_and_environment_wins_over_it(
    monkeypatch: pytest.MonkeyPatch, isolated_environment: Path
) -> None:
    (isolated_environment / ".env").write_text(
        "MUMA_SPARK_MASTER=yarn\nMUMA_DATA_ROOT=/srv/muma\n", encoding="utf-8"
    )
    from_file = load_settings()
    monkeypatch.setenv("MUMA_SPARK_MASTER", "local[2]")

    from_env = load_settings()

    assert from_file.spark_master == "yarn"
    assert from_file.data_root == Path("/srv/muma")
    assert from_env.spark_master == "local[2]"
    assert from_env.data_root == Path("/srv/muma")


def test_explicit_overrides_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUMA_SPARK_MASTER", "yarn")

    assert load_settings(spark_master="local[4]").spark_master == "local[4]"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MUMA_SEED", "-1"),
        ("MUMA_SEED", "many"),
        ("MUMA_SEED", str(2**32)),
        ("MUMA_SPARK_MASTER", "bogus"),
        ("MUMA_REDIS_URL", "http://x"),
    ],
)
def test_invalid_value_raises_settings_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError) as raised:
        load_settings()

    message = str(raised.value)
    assert variable in message
    assert repr(value) in message
    assert isinstance(raised.value, ValueError)


def test_invalid_value_in_dotenv_names_the_variable(isolated_environment: Path) -> None:
    (isolated_environment / ".env").write_text("MUMA_SPARK_MASTER=bogus\n", encoding="utf-8")

    with pytest.raises(SettingsError, match="MUMA_SPARK_MASTER"):
        load_settings()


def test_unknown_muma_key_in_dotenv_is_rejected_by_its_exact_name(
    isolated_environment: Path,
) -> None:
    (isolated_environment / ".env").write_text(
        "MUMA_SPARK_MASTER=local[*]\nMUMA_SPARK_MASTR=yarn\n", encoding="utf-8"
    )

    with pytest.raises(SettingsError) as raised:
        load_settings()

    assert "unknown setting MUMA_SPARK_MASTR" in str(raised.value)
    assert "MUMA_MUMA_" not in str(raised.value)


def test_unknown_muma_variable_in_process_environment_is_rejected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A misspelt variable would otherwise be ignored and the default silently used.
    monkeypatch.setenv("MUMA_SPARK_MASTR", "yarn")

    with pytest.raises(SettingsError, match="unknown setting MUMA_SPARK_MASTR"):
        load_settings()


def test_foreign_keys_in_a_shared_dotenv_are_left_alone(isolated_environment: Path) -> None:
    (isolated_environment / ".env").write_text(
        "AIRFLOW_UID=50000\nMUMA_SPARK_MASTER=yarn\n", encoding="utf-8"
    )

    assert load_settings().spark_master == "yarn"


def test_settings_are_frozen() -> None:
    settings = load_settings()

    with pytest.raises(ValidationError):
        settings.spark_master = "yarn"  # type: ignore[misc]


def test_api_token_is_not_revealed_by_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUMA_API_TOKEN", "s3cret-token")

    settings = load_settings()

    assert settings.api_token is not None
    assert settings.api_token.get_secret_value() == "s3cret-token"
    assert "s3cret-token" not in repr(settings)
    assert "s3cret-token" not in str(settings)
