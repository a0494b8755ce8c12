"""Spark feature pipelines: curated tables in, the offline feature tables of
:mod:`feature_repo.tables` out. :func:`build_features` is the entry point."""

from .build import FeatureBuildResult, TableBuild, build_features

__all__ = ["FeatureBuildResult", "TableBuild", "build_features"]
