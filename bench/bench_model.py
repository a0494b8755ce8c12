"""Training throughput (samples/s) of MUMA, its ablations and the baselines on synthetic batches.

Target (issue 5): at least 10,000 samples/s for forward + backward + Adam step on 2 CPU cores
at history length 50, embedding size 16, batch 1,024 (DeepCTR-Torch's DIN measured about
8,000 samples/s on this machine with 2 threads). Each model trains on the same pre-built
batches; the figure is the median over repeats of ``steps x batch / seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import torch

from bench.common import conditions, med, save
from training.batch import Batch, synthetic_batch
from training.losses import LossConfig, ranker_loss
from training.model.baselines import build_baseline
from training.model.config import (
    BaselineConfig,
    EmbeddingConfig,
    EncoderConfig,
    FeatureSpace,
    GraphConfig,
    MumaConfig,
)
from training.model.muma import MumaRanker, count_parameters

_AFFINITY_KINDS = 3
FEATURES = FeatureSpace(
    users=20_000,
    items=50_000,
    categories=100,
    creators=2_000,
    user_dense=8,
    item_dense=8,
    # MUMA's category affinity reads 3 columns per candidate (own, friends', gaze); which
    # columns does not change its cost, so category c of every domain points at column c % 8.
    category_affinity=tuple(
        ((-1,) * _AFFINITY_KINDS,) * 101
        if domain == 0
        else tuple(
            ((c % 8,) * _AFFINITY_KINDS if c > 1 else (-1,) * _AFFINITY_KINDS) for c in range(101)
        )
        for domain in range(4)
    ),
)
MODELS = (
    "muma",
    "muma_no_time_decay",
    "muma_no_lstm",
    "muma_no_transformer",
    "muma_no_graph",
    "fm",
    "deepfm",
    "din",
    "gru4rec",
    "bst",
)


def build(name: str, dim: int, recent_length: int, neighbours: int) -> torch.nn.Module:
    """A model by benchmark name (``muma``, ``muma_<ablation>`` or a baseline kind)."""
    embedding = EmbeddingConfig(dim=dim)
    if name.startswith("muma"):
        ablation = name.removeprefix("muma").removeprefix("_")
        config = MumaConfig(
            features=FEATURES,
            embedding=embedding,
            encoder=EncoderConfig(recent_length=recent_length),
            graph=GraphConfig(neighbours=neighbours),
            **({ablation: True} if ablation else {}),
        )
        return MumaRanker(config)
    return build_baseline(
        BaselineConfig(
            kind=name, features=FEATURES, embedding=embedding, recent_length=recent_length
        )
    )


def throughput(
    model: torch.nn.Module, batches: list[Batch], steps: int, repeats: int, warmup: int = 3
) -> list[float]:
    """Samples/s of ``repeats`` timed runs of ``steps`` training steps each."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    config = LossConfig()
    model.train()

    def step(index: int) -> None:
        batch = batches[index % len(batches)]
        loss = ranker_loss(model(batch), batch, config).total
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    for index in range(warmup):
        step(index)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(steps):
            step(index)
        runs.append(steps * len(batches[0]) / (time.perf_counter() - start))
    return runs


def measure(
    models: tuple[str, ...],
    *,
    batch_size: int = 1024,
    long_length: int = 50,
    recent_length: int = 20,
    dim: int = 16,
    neighbours: int = 10,
    threads: int = 2,
    steps: int = 10,
    repeats: int = 3,
    seed: int = 42,
) -> dict:
    """Throughput of each model in ``models`` under identical conditions."""
    torch.set_num_threads(threads)
    graph = GraphConfig(neighbours=neighbours)
    batches = [
        synthetic_batch(
            FEATURES,
            batch_size,
            long_length=long_length,
            recent_length=recent_length,
            graph=graph,
            seed=seed + index,
        )
        for index in range(4)
    ]
    rows = {}
    for name in models:
        torch.manual_seed(seed)
        model = build(name, dim, recent_length, neighbours)
        runs = throughput(model, batches, steps, repeats)
        rows[name] = {
            "samples_per_second_median": round(med(runs)),
            "samples_per_second_runs": [round(run) for run in runs],
            "parameters": count_parameters(model),
        }
    return {
        "batch_size": batch_size,
        "long_length": long_length,
        "recent_length": recent_length,
        "embedding_dim": dim,
        "neighbours": neighbours,
        "threads": threads,
        "steps": steps,
        "repeats": repeats,
        "load_average_1m": round(os.getloadavg()[0], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "models": rows,
    }


def table(result: dict) -> str:
    """A plain-text table of samples/s per model."""
    lines = [f"{'model':<22}{'samples/s':>12}  runs{'':<22}{'params':>10}"]
    for name, row in result["models"].items():
        lines.append(
            f"{name:<22}{row['samples_per_second_median']:>12,}  "
            f"{row['samples_per_second_runs']!s:<26}{row['parameters']:>10,}"
        )
    return "\n".join(lines)


def main(
    quick: bool = False, threads: int = 2, models: tuple[str, ...] = MODELS, write: bool = False
) -> dict:
    """Run the benchmark, print its table and return the result (saved when ``write``)."""
    steps, repeats = (4, 3) if quick else (10, 5)
    result = {
        **conditions(),
        **measure(models, threads=threads, steps=steps, repeats=repeats),
        "target_samples_per_second": 10_000,
    }
    print(table(result))
    if write:
        save("model", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 steps x 3 repeats per model")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS), help="models to time"
    )
    parser.add_argument("--save", action="store_true", help="merge into bench/results.json")
    args = parser.parse_args()
    print(json.dumps(main(args.quick, args.threads, tuple(args.models), args.save), indent=2))
