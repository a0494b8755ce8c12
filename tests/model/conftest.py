"""Small feature spaces and synthetic batches shared by the model tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from training.batch import Batch, synthetic_batch
from training.model.config import FeatureSpace, GraphConfig


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """Tiny tensors run fastest on one thread, and the machine's cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def features() -> FeatureSpace:
    return FeatureSpace(users=30, items=120, categories=12, creators=9, user_dense=3, item_dense=2)


@pytest.fixture
def graph() -> GraphConfig:
    return GraphConfig(neighbours=4)


def make_batch(features: FeatureSpace, size: int, seed: int = 0, **kwargs: Any) -> Batch:
    """A validated synthetic batch with short sequences (long 12, recent 6)."""
    kwargs.setdefault("graph", GraphConfig(neighbours=4))
    return synthetic_batch(
        features, size, long_length=12, recent_length=6, seed=seed, **kwargs
    ).validate()


@pytest.fixture
def batch_factory() -> Callable[..., Batch]:
    """:func:`make_batch`, for tests that need their own sizes or seeds."""
    return make_batch


@pytest.fixture
def batch2(features: FeatureSpace) -> Batch:
    return make_batch(features, 2, seed=1)


@pytest.fixture
def batch64(features: FeatureSpace) -> Batch:
    return make_batch(features, 64, seed=2)
