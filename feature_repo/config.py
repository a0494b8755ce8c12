"""Typed ``features`` section of params.yaml: the Spark feature build's hyperparameters."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from muma.contract import Domain

DEFAULT_CATEGORIES: dict[Domain, tuple[str, ...]] = {
    Domain.NEWS: (
        "politics",
        "world",
        "business",
        "tech",
        "science",
        "health",
        "sports",
        "entertainment",
        "lifestyle",
        "travel",
        "autos",
        "weather",
    ),
    Domain.VIDEO: (
        "music",
        "gaming",
        "comedy",
        "documentary",
        "cooking",
        "fitness",
        "movies",
        "kids",
        "diy",
        "esports",
    ),
    Domain.AD: (
        "retail",
        "finance",
        "auto_ads",
        "travel_ads",
        "food",
        "apps",
        "fashion",
        "telecom",
    ),
}
"""The editorial category vocabulary per domain, in vector order (the catalog's categories)."""


class FeaturesParams(BaseModel):
    """Parameters of the Spark feature build.

    Attributes:
        half_lives_hours: Half-lives of the decayed counters; each gives its own columns
            (suffix ``_<h>h``), so changing the list changes the tables' schemas.
        interest_half_life_hours: Half-life of the category-interest, gaze-share and
            friends'-interest vectors.
        ctr_prior_strength: Pseudo-impressions of the Bayesian CTR smoothing:
            ``(clicks + m * domain_ctr) / (impressions + m)``.
        sequence_length: ``N``, the number of most recent clicked items in a sequence row.
        snapshot_grain_hours: Hours between snapshots (a divisor of 24); rows are stamped at
            the end of each grain.
        categories: Category vocabulary per domain; its order is the order of every
            category vector. A catalog category outside it is an error.
        features_dir: Offline feature tables' directory, relative to ``Settings.data_root``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    half_lives_hours: tuple[PositiveInt, ...] = (1, 24, 168)
    interest_half_life_hours: float = Field(default=168.0, gt=0)
    ctr_prior_strength: float = Field(default=20.0, ge=0)
    sequence_length: PositiveInt = 50
    snapshot_grain_hours: PositiveInt = 1
    categories: dict[Domain, tuple[str, ...]] = Field(default=DEFAULT_CATEGORIES)
    features_dir: Path = Path("features")

    @field_validator("half_lives_hours")
    @classmethod
    def _distinct_half_lives(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("give at least one half-life")
        if len(set(value)) != len(value):
            raise ValueError("half-lives must be distinct")
        return tuple(sorted(value))

    @field_validator("snapshot_grain_hours")
    @classmethod
    def _grain_divides_day(cls, value: int) -> int:
        if 24 % value:
            raise ValueError("snapshot_grain_hours must divide 24 (1, 2, 3, 4, 6, 8, 12 or 24)")
        return value

    @model_validator(mode="after")
    def _vocabulary(self) -> FeaturesParams:
        missing = set(Domain) - set(self.categories)
        if missing:
            raise ValueError(f"categories needs every domain; missing {sorted(missing)}")
        for domain, names in self.categories.items():
            if not names or len(set(names)) != len(names):
                raise ValueError(f"categories[{domain}] must be non-empty and distinct")
        return self

    def vocabulary(self, domain: Domain | str) -> tuple[str, ...]:
        """Category names of ``domain`` in vector order."""
        return self.categories[Domain(domain)]
