"""A small synthetic world for the serving tests: a MUMA bundle in a registry, online rows
in a private Redis, and settings pointing at both.

The bundle is fitted on synthetic feature-store rows (no Spark, no training: the weights are
the seeded initial ones), as in ``tests/model/test_featurize_bundle.py``; two seeds give two
versions for hot-reload tests. Redis is a private ``redis-server`` on a free port, started
by the fixture so a test can kill and restart it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import SecretStr

from feature_repo.config import FeaturesParams
from feature_repo.store import FeastParams
from feature_repo.tables import ITEM_STATS, USER_SEQUENCE, USER_SOCIAL, USER_STATS, feature_tables
from muma.settings import Settings
from muma.testing.redis_server import PrivateRedisServer
from serving.config import CandidateParams, ServeParams
from training.bundle import ModelBundle, build_model
from training.config import TrainParams
from training.featurize import Featurizer
from training.model.config import GraphConfig
from training.pipeline import model_config
from training.registry import write_json_atomic

TOKEN = "serving-test-token"
T0 = datetime(2026, 11, 1, tzinfo=UTC)
CATEGORIES = FeaturesParams().categories
DOMAINS = ("news", "video", "ad")
USER_FEATURES = [
    "news_clicks_24h",
    "video_clicks_24h",
    "news_hours_since_click",
    "news_category_interest",
    "friend_count",
]
ITEM_FEATURES = ["ctr_24h", "clicks_24h", "age_hours"]
USERS, ITEMS = 60, 240


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@dataclass
class World:
    """The synthetic catalog, users and their features, and the fitted featurizer."""

    catalog: pd.DataFrame
    users: pd.DataFrame
    friends: pd.DataFrame
    featurizer: Featurizer


def _catalog() -> pd.DataFrame:
    rows = []
    for index in range(ITEMS):
        domain = DOMAINS[index % 3]
        categories = CATEGORIES[domain]
        rows.append(
            {
                "item_id": f"i{index}",
                "domain": domain,
                "category": categories[index % len(categories)],
                "creator_id": f"c{index % 11}",
                "ctr_24h": 0.01 + (index % 17) / 100,
                "clicks_24h": float((index * 7) % 50),
                "age_hours": float(index % 72),
            }
        )
    return pd.DataFrame(rows)


def _users(catalog: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    items = catalog["item_id"].to_numpy()
    rows = []
    for index in range(USERS):
        history = [str(v) for v in rng.choice(items, size=int(rng.integers(1, 8)), replace=False)]
        stamps = sorted(
            (
                int((T0 - timedelta(hours=float(h))).timestamp())
                for h in rng.uniform(0.1, 40, len(history))
            ),
            reverse=True,
        )
        rows.append(
            {
                "user_id": f"u{index}",
                "news_clicks_24h": float(rng.poisson(2)),
                "video_clicks_24h": float(rng.poisson(1)),
                "news_hours_since_click": float(rng.uniform(0, 50)),
                "news_category_interest": list(rng.dirichlet(np.ones(12)).astype(np.float32)),
                "friend_count": int(rng.integers(0, 5)),
                "seq_item_ids": history,
                "seq_ts": stamps,
            }
        )
    return pd.DataFrame(rows)


def _training_rows(
    catalog: pd.DataFrame, users: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    rows = []
    for request in range(300):
        user = users.iloc[int(rng.integers(len(users)))]
        for position, item in enumerate(rng.choice(len(catalog), size=4, replace=False), start=1):
            entry = catalog.iloc[int(item)]
            rows.append(
                {
                    "request_id": f"r{request}",
                    "user_id": user["user_id"],
                    "item_id": entry["item_id"],
                    "domain": entry["domain"],
                    "category": entry["category"],
                    "creator_id": entry["creator_id"],
                    "ts": T0,
                    "position": position,
                    "clicked": bool(rng.random() < 0.3),
                    **{name: user[name] for name in USER_FEATURES},
                    **{name: entry[name] for name in ITEM_FEATURES},
                    "seq_item_ids": user["seq_item_ids"],
                    "seq_ts": user["seq_ts"],
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def world() -> World:
    rng = np.random.default_rng(7)
    catalog = _catalog()
    users = _users(catalog, rng)
    friends = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(0, USERS, 2)],
            "friend_id": [f"u{i + 1}" for i in range(0, USERS, 2)],
        }
    )
    featurizer = Featurizer.fit(
        _training_rows(catalog, users, rng),
        catalog[["item_id", "domain", "category", "creator_id"]],
        friends,
        user_feature_names=USER_FEATURES,
        item_feature_names=ITEM_FEATURES,
        graph=GraphConfig(neighbours=4),
        long_length=6,
        recent_length=3,
        seed=0,
    )
    return World(catalog, users, friends, featurizer)


def save_bundle(world: World, directory: Path, seed: int, model: str = "muma") -> ModelBundle:
    params = TrainParams(model=model)
    config = model_config(params, world.featurizer)
    torch.manual_seed(seed)
    bundle = ModelBundle(
        model,
        model,
        config,
        build_model(model, config),
        world.featurizer,
        1.0,
        {"serving_position": 1, "seed": seed},
    )
    bundle.save(directory)
    return bundle


@pytest.fixture(scope="session")
def bundles(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two MUMA bundles (seeds 0 and 1), saved once."""
    root = tmp_path_factory.mktemp("bundles")
    for name, seed in (("first", 0), ("second", 1)):
        save_bundle(world, root / name, seed)
    return {"first": root / "first", "second": root / "second"}


def promote_dir(data_root: Path, bundle_dir: Path) -> str:
    """Copy a bundle into ``models/registry/<version>`` and point ``champion.json`` at it."""
    version = ModelBundle.load(bundle_dir).version
    target = data_root / "models" / "registry" / version
    if not target.exists():
        shutil.copytree(bundle_dir, target)
    write_json_atomic(
        data_root / "models" / "champion.json",
        {"version": version, "name": "muma", "path": f"registry/{version}"},
    )
    return version


# --------------------------------------------------------------------------------- Redis
@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedisServer]:
    """A private ``redis-server`` (no persistence) that a test may kill and start again."""
    with PrivateRedisServer(tmp_path) as server:
        yield server


FEAST = FeastParams(project="serving_test")


def fill_online(client, world: World, project: str = FEAST.project, items: bool = True) -> None:
    """The world's users and items as Feast-layout rows (batch views only)."""
    from serving.online_rows import write_rows

    tables = feature_tables(FeaturesParams())
    users = world.users
    write_rows(client, project, tables[USER_STATS], users, T0)
    write_rows(client, project, tables[USER_SOCIAL], users, T0)
    write_rows(client, project, tables[USER_SEQUENCE], users, T0)
    if items:
        write_rows(client, project, tables[ITEM_STATS], world.catalog, T0)


def serve_params(**overrides) -> ServeParams:
    """Fast timings for tests: short flushes, polls and back-off."""
    values = {
        "candidates": CandidateParams(per_domain=30, max_per_domain=80, popular=20, fresh=10),
        "flush_seconds": 0.2,
        "reload_poll_seconds": 0.2,
        "redis_retry_seconds": 0.2,
        "redis_timeout_ms": 200.0,
        "default_k": 5,
    }
    values.update(overrides)
    return ServeParams(**values)


def settings_for(
    data_root: Path, redis_url: str | None = None, token: str | None = TOKEN
) -> Settings:
    return Settings(
        data_root=data_root,
        redis_url=redis_url,
        api_token=SecretStr(token) if token else None,
        params_path=data_root / "no-params.yaml",
        spark_master="local[1]",
        airflow_home=data_root / ".airflow",
        seed=0,
    )


def service_on(data_root: Path, redis_url: str, world: World, bundle_dir: Path, **params):
    """A (not started) service on a private Redis filled with ``world``'s rows and
    ``bundle_dir`` promoted to champion under ``data_root``; ``params`` override
    :func:`serve_params`."""
    import redis

    from serving.service import Service

    fill_online(redis.Redis.from_url(redis_url), world)
    promote_dir(data_root, bundle_dir)
    return Service(settings_for(data_root, redis_url), serve_params(**params), feast=FEAST)


@pytest.fixture
def helpers():
    """Module-level helpers for test files (importlib mode cannot import conftest)."""
    import types

    return types.SimpleNamespace(
        promote_dir=promote_dir,
        save_bundle=save_bundle,
        fill_online=fill_online,
        serve_params=serve_params,
        settings_for=settings_for,
        service_on=service_on,
        feast=FEAST,
        token=TOKEN,
        auth={"Authorization": f"Bearer {TOKEN}"},
        t0=T0,
    )
