"""Ranker comparison (issue 5, items 4, 9, 10): MUMA vs baselines vs ablations vs DeepCTR-Torch DIN.

Every model of one dataset trains on the same time split, the same fitted
:class:`~training.featurize.Featurizer` (vocabularies, dense features, behaviour sequences of
length 50, graph neighbours), batch 1,024, embedding 16 and 2 torch threads, with the project's
training loop (:func:`training.train.fit`: AdamW, early stopping on validation AUC, temperature
calibration). DeepCTR-Torch's DIN gets the same encoded arrays (user, item, category, creator,
domain, position, the dense features, and the item + category history) and trains with its own
``fit`` one epoch at a time, early-stopped on the same validation AUC and temperature-calibrated
on the same validation rows. Test metrics come from :func:`training.metrics.evaluate`.

Datasets:

* ``sim``: the point-in-time training set that ``muma training-set`` wrote (Spark features,
  Feast join; the test window carries the simulator's true click probability).
* ``mind`` / ``ciao``: imported with :mod:`ingest.importers` into a scratch landing zone and turned
  into frames by :mod:`training.realdata` (pandas/NumPy, not Feast; see its docstring for the
  exact features). Their propensities are placeholders, so no model weights its loss by them on
  real data and the no-propensity ablation is skipped there.

Figures per model: test AUC, GAUC, log loss, ECE, NDCG@10, HR@10, per-domain AUC, Pearson (and
Spearman) with the true click probability (sim only), training samples/s (median over epochs;
pure training time, validation scoring excluded) and the process's peak RSS while the model
trained. ``--scale-rows`` adds a throughput run at that many training rows (the sim training set
tiled) in a fresh interpreter, so its peak RSS is its own.

DeepCTR-Torch is a benchmark-only peer, imported lazily; install it with
``pip install deepctr-torch==0.3.0 --no-deps`` (it needs only torch, tqdm, scikit-learn and
requests, already present). Its import-time version check calls PyPI; it is silenced here.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.common import conditions, med, save

if TYPE_CHECKING:
    import pandas as pd

    from training.config import TrainParams
    from training.featurize import Encoded, Featurizer

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out" / "ranker"
SHARED_DATA = ROOT.parent / "shared" / "data"
DATASETS = ("sim", "mind", "ciao")
MODELS = (
    "muma",
    "fm",
    "deepfm",
    "din",
    "din+affinity",
    "gru4rec",
    "bst",
    "muma-no_time_decay",
    "muma-no_lstm",
    "muma-no_transformer",
    "muma-no_graph",
    "muma-no_propensity",
    "deepctr_din",
    "deepctr_din-no_position",
)
QUICK = {"train_rows": 20_000, "valid_rows": 8_000, "test_rows": 10_000, "epochs": 2}
FULL = {"train_rows": None, "valid_rows": None, "test_rows": None, "epochs": 6}


class BenchError(RuntimeError):
    """The benchmark cannot run (missing data, missing optional package); says what to do."""


# ------------------------------------------------------------------------------ datasets
@dataclass
class Prepared:
    """One dataset, encoded once and shared by every model."""

    name: str
    featurizer: Featurizer
    frames: dict[str, pd.DataFrame]
    encoded: dict[str, Encoded]
    truth: np.ndarray | None
    propensity_logged: bool
    weighting: bool
    split: dict[str, Any]
    prepare_seconds: float


def _params() -> tuple[TrainParams, Any, Any]:
    """``train``, ``features`` and ``evaluate`` sections of params.yaml."""
    from feature_repo.config import FeaturesParams
    from muma.params import load_section
    from training.config import EvaluateParams, TrainParams

    path = Path(os.environ.get("MUMA_PARAMS_PATH", ROOT / "params.yaml"))
    return (
        load_section(path, "train", TrainParams),
        load_section(path, "features", FeaturesParams),
        load_section(path, "evaluate", EvaluateParams),
    )


def default_sim_dir() -> Path:
    return Path(os.environ.get("MUMA_DATA_ROOT", "data")) / "training"


def _cap(frame: pd.DataFrame, rows: int | None, newest: bool) -> pd.DataFrame:
    if rows is None or len(frame) <= rows:
        return frame.reset_index(drop=True)
    part = frame.iloc[-rows:] if newest else frame.iloc[:rows]
    return part.reset_index(drop=True)


def prepare_sim(
    sim_dir: Path, curated_dir: Path, params: TrainParams, features: Any, caps: dict, seed: int
) -> Prepared:
    """The written simulated training set, capped and featurized once."""
    from training.pipeline import TRUE_P_CLICK, fit_featurizer, read_window

    split_path = sim_dir / "split.json"
    if not split_path.is_file():
        raise BenchError(
            f"no simulated training set at {sim_dir} (split.json missing): run `make demo` or "
            "`muma training-set` first, or pass --sim-dir"
        )
    if not curated_dir.is_dir():
        raise BenchError(f"no curated tables at {curated_dir}: pass --curated-dir")
    started = time.perf_counter()
    split = json.loads(split_path.read_text())["split"]
    frames = {name: read_window(sim_dir, name) for name in ("train", "valid", "test")}
    frames["train"] = _cap(frames["train"], caps["train_rows"], newest=True)
    frames["valid"] = _cap(frames["valid"], caps["valid_rows"], newest=True)
    frames["test"] = _cap(frames["test"], caps["test_rows"], newest=False)
    train_end = datetime.fromisoformat(split["train"]["end"])
    featurizer = fit_featurizer(frames["train"], params, features, curated_dir, train_end, seed)
    encoded = {name: featurizer.transform(frame) for name, frame in frames.items()}
    test = frames["test"]
    truth = None
    if TRUE_P_CLICK in test and test[TRUE_P_CLICK].notna().all():
        truth = test[TRUE_P_CLICK].to_numpy(dtype=np.float64)
    return Prepared(
        "sim", featurizer, frames, encoded, truth, True, True, split, time.perf_counter() - started
    )


def prepare_real(name: str, work_dir: Path, params: TrainParams, caps: dict, seed: int) -> Prepared:
    """Import ``name`` from ../shared/data into a scratch landing zone, build frames, featurize."""
    from training.featurize import Featurizer
    from training.realdata import load_dataset

    started = time.perf_counter()
    landing = work_dir / name / "landing"
    if not (landing / "v1" / "impressions").is_dir():
        _import(name, landing)
    dataset = load_dataset(name, landing, sequence_length=params.long_length)
    frames = {
        "train": _cap(dataset.train, caps["train_rows"], newest=True),
        "valid": _cap(dataset.valid, caps["valid_rows"], newest=True),
        "test": _cap(dataset.test, caps["test_rows"], newest=False),
    }
    featurizer = Featurizer.fit(
        frames["train"],
        dataset.catalog,
        dataset.friendships,
        user_feature_names=dataset.user_features,
        item_feature_names=dataset.item_features,
        graph=params.muma.graph,
        long_length=params.long_length,
        recent_length=min(params.muma.encoder.recent_length, params.long_length),
        seed=seed,
        category_vectors=dataset.category_vectors,
    )
    encoded = {window: featurizer.transform(frame) for window, frame in frames.items()}
    split = {
        "train_end": dataset.valid_start.isoformat(),
        "valid": [dataset.valid_start.isoformat(), dataset.test_start.isoformat()],
        "test_start": dataset.test_start.isoformat(),
        "rows_before_caps": dataset.rows(),
        "clicks_before_caps": dataset.clicks(),
        "friendships": len(dataset.friendships),
        "catalog_items": len(dataset.catalog),
        "built_with": "training/realdata.py: pandas/NumPy from landing records, not Feast",
    }
    return Prepared(
        name, featurizer, frames, encoded, None, False, False, split, time.perf_counter() - started
    )


def _import(name: str, landing: Path) -> None:
    if name == "mind":
        from ingest.importers.mind import import_mind

        source = SHARED_DATA / "mind_small_subset"
        runner = import_mind
    else:
        from ingest.importers.ciao import import_ciao

        source = SHARED_DATA / "ciao_social"
        runner = import_ciao
    if not source.is_dir():
        raise BenchError(f"{source} is missing (see ../shared/data/README.md)")
    summary = runner(source, landing)
    if not summary.reconciles():
        raise BenchError(f"the {name} import does not reconcile: {summary}")


# -------------------------------------------------------------------------------- models
class PeakRss:
    """Peak resident memory of this process while the block runs (sampled every 50 ms)."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(0.05)

    def __enter__(self) -> PeakRss:
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def mb(self) -> float:
        return round(self.peak / 2**20, 1)


def model_params(base: TrainParams, name: str, epochs: int, propensity: bool) -> TrainParams:
    """TrainParams of a benchmark model name (``muma``, ``muma-<ablation>``, a baseline, or
    ``<baseline>+affinity``: the baseline also reading MUMA's category affinity)."""
    name, affinity, _ = name.partition("+affinity")
    model, _, ablation = name.partition("-")
    loss = base.loss.model_copy(
        update={"propensity_weighting": propensity and ablation != "no_propensity"}
    )
    return base.model_copy(
        update={
            "model": model,
            "ablation": "none" if ablation in ("", "no_propensity") else ablation,
            "epochs": epochs,
            "loss": loss,
            "baseline": base.baseline.model_copy(update={"category_affinity": bool(affinity)}),
        }
    )


def train_ours(
    prepared: Prepared, base: TrainParams, name: str, epochs: int, seed: int
) -> tuple[np.ndarray, dict]:
    """Fit one project model; return calibrated test probabilities and fit figures."""
    import torch

    from training.bundle import build_model
    from training.pipeline import model_config
    from training.train import fit, score

    params = model_params(base, name, epochs, prepared.weighting)
    torch.manual_seed(seed)
    model = build_model(params.model, model_config(params, prepared.featurizer))
    result = fit(
        model,
        prepared.featurizer,
        prepared.encoded["train"],
        prepared.encoded["valid"],
        params,
        seed,
        progress=False,
    )
    logits = score(model, prepared.featurizer, prepared.encoded["test"], params.eval_batch_size)
    probabilities = torch.sigmoid(logits / result.temperature).numpy()
    runs = [entry.samples_per_second for entry in result.history]
    return probabilities, {
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "valid_auc": [entry.valid_auc for entry in result.history],
        "samples_per_second_runs": runs,
        "samples_per_second_median": round(med(runs)),
        "train_seconds": round(result.train_seconds, 2),
        "temperature": round(result.temperature, 4),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "propensity_weighting": params.loss.propensity_weighting,
    }


def _import_deepctr() -> Any:
    """``deepctr_torch`` without its import-time PyPI version check."""
    try:
        import requests
    except ImportError:  # pragma: no cover - deepctr_torch itself needs requests
        requests = None
    original = getattr(requests, "get", None)

    def offline(*args: object, **kwargs: object) -> None:
        raise ConnectionError("version check disabled by the benchmark")

    try:
        if requests is not None:
            requests.get = offline
        with contextlib.redirect_stdout(io.StringIO()):
            import deepctr_torch
            from deepctr_torch import inputs, models
    except ImportError:
        raise BenchError(
            "deepctr-torch is not installed: .venv/bin/pip install deepctr-torch==0.3.0 --no-deps"
        ) from None
    finally:
        if requests is not None:
            time.sleep(0.2)  # let the check's thread hit the stub before restoring
            requests.get = original
    return deepctr_torch, inputs, models


def deepctr_inputs(
    featurizer: Featurizer, encoded: Encoded, position: bool = True
) -> dict[str, np.ndarray]:
    """DeepCTR's input dict from our encoded rows (the same ids and features).

    With ``position=False`` every row gets slot 1: DeepCTR's DIN feeds the logged slot into its
    DNN like any other field, where our models keep it an additive bias (``PositionBias``).
    """
    long_item = encoded.long_item
    return {
        "user": encoded.user,
        "item": encoded.item,
        "category": encoded.category,
        "creator": encoded.creator,
        "domain": encoded.domain,
        "position": encoded.position if position else np.ones_like(encoded.position),
        "user_dense": encoded.user_dense,
        "item_dense": encoded.item_dense,
        "hist_item": long_item,
        "hist_category": featurizer.item_category[long_item],
        "seq_length": (long_item > 0).sum(axis=1),
    }


def _deepctr_model(
    prepared: Prepared,
    base: TrainParams,
    seed: int,
    inputs: Any,
    models: Any,
    position: bool = True,
) -> tuple[Any, dict[str, dict[str, np.ndarray]]]:
    """A compiled DeepCTR-Torch DIN over our vocabularies, and its input dicts per window.

    Sparse fields: user, item, category, creator, domain, position (embedding
    ``train.muma.embedding.dim``); dense: the user and item feature vectors; behaviours: the
    item and category history (length ``train.long_length``), attended by the candidate's
    item and category. ``position=False`` withholds the logged slot (see :func:`deepctr_inputs`).
    """
    import torch

    torch.set_num_threads(base.threads)
    torch.manual_seed(seed)
    featurizer = prepared.featurizer
    space = featurizer.feature_space()
    dim = base.muma.embedding.dim
    positions = max(int(e.position.max()) for e in prepared.encoded.values()) + 1
    sparse = inputs.SparseFeat
    columns = [
        sparse("user", space.users + 1, embedding_dim=dim),
        sparse("item", space.items + 1, embedding_dim=dim),
        sparse("category", space.categories + 1, embedding_dim=dim),
        sparse("creator", space.creators + 1, embedding_dim=dim),
        sparse("domain", space.domains + 1, embedding_dim=dim),
        sparse("position", positions, embedding_dim=dim),
    ]
    if space.user_dense:
        columns.append(inputs.DenseFeat("user_dense", space.user_dense))
    if space.item_dense:
        columns.append(inputs.DenseFeat("item_dense", space.item_dense))
    for field, size in (("item", space.items + 1), ("category", space.categories + 1)):
        columns.append(
            inputs.VarLenSparseFeat(
                sparse(f"hist_{field}", size, embedding_dim=dim, embedding_name=field),
                maxlen=featurizer.long_length,
                length_name="seq_length",
            )
        )
    names = set(inputs.get_feature_names(columns))
    data = {
        window: {
            k: v for k, v in deepctr_inputs(featurizer, encoded, position).items() if k in names
        }
        for window, encoded in prepared.encoded.items()
    }
    model = models.DIN(columns, ["item", "category"], device="cpu", seed=seed)
    model.compile(torch.optim.Adam(model.parameters(), lr=base.lr), "binary_crossentropy")
    return model, data


def train_deepctr_din(
    prepared: Prepared, base: TrainParams, epochs: int, seed: int, position: bool = True
) -> tuple[np.ndarray, dict]:
    """DeepCTR-Torch DIN on the identical split and features; our early stopping and calibration.

    ``position=False``: the ``deepctr_din-no_position`` row, every slot logged as 1.
    """
    import torch

    from training.metrics import auc
    from training.model.heads import Calibrator

    _, inputs, models = _import_deepctr()
    model, data = _deepctr_model(prepared, base, seed, inputs, models, position)
    labels = {window: encoded.clicked for window, encoded in prepared.encoded.items()}
    runs, valid_aucs, best, best_state, waited, seconds = [], [], -math.inf, None, 0, 0.0
    for _ in range(epochs):
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            model.fit(
                data["train"], labels["train"], batch_size=base.batch_size, epochs=1, verbose=0
            )
        elapsed = time.perf_counter() - started
        seconds += elapsed
        runs.append(round(len(labels["train"]) / elapsed, 1))
        valid = model.predict(data["valid"], batch_size=base.eval_batch_size).reshape(-1)
        current = auc(labels["valid"], valid)
        valid_aucs.append(current)
        if current is not None and current > best:
            best, best_state, waited = current, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= base.early_stopping_patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)

    def logits(window: str) -> torch.Tensor:
        p = model.predict(data[window], batch_size=base.eval_batch_size).reshape(-1)
        p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
        return torch.from_numpy(np.log(p / (1 - p))).float()

    calibrator = Calibrator().fit(logits("valid"), torch.from_numpy(labels["valid"]))
    probabilities = torch.sigmoid(logits("test") / calibrator.temperature).numpy()
    return probabilities, {
        "epochs_run": len(runs),
        "best_epoch": int(np.nanargmax([v or -1 for v in valid_aucs])) + 1,
        "valid_auc": valid_aucs,
        "samples_per_second_runs": runs,
        "samples_per_second_median": round(med(runs)),
        "train_seconds": round(seconds, 2),
        "temperature": round(calibrator.temperature, 4),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "propensity_weighting": False,
        "note": "deepctr_torch 0.3.0 DIN defaults (Dice, attention 64-16, DNN 256-128), Adam "
        "at train.lr, its own fit loop"
        + ("" if position else "; the logged slot withheld (every row at slot 1)"),
    }


def evaluate_test(prepared: Prepared, probabilities: np.ndarray, evaluate_params: Any) -> dict:
    from training.metrics import evaluate

    test = prepared.frames["test"]
    evaluation = evaluate(
        probabilities,
        test["clicked"].to_numpy(dtype=np.float64),
        test["user_id"].to_numpy(),
        test["request_id"].to_numpy(),
        test["domain"].to_numpy(),
        prepared.truth,
        k=evaluate_params.k,
        bins=evaluate_params.calibration_bins,
    )
    overall = evaluation.as_dict()["overall"]
    return {
        **{key: _round(value) for key, value in overall.items()},
        "per_domain_auc": {
            domain: _round(metrics.auc) for domain, metrics in evaluation.per_domain.items()
        },
        "per_domain_rows": {
            domain: metrics.rows for domain, metrics in evaluation.per_domain.items()
        },
    }


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def run_dataset(
    prepared: Prepared,
    base: TrainParams,
    evaluate_params: Any,
    models: tuple[str, ...],
    epochs: int,
    repeats: int,
    seed: int,
) -> dict:
    """Train and evaluate every model on one prepared dataset."""
    _warm_up(prepared, base, seed)
    rows = {}
    for name in models:
        if name == "muma-no_propensity" and not prepared.weighting:
            why = "--unweighted" if prepared.propensity_logged else "no logged propensity"
            rows[name] = {"skipped": f"{why}: every model trains unweighted here"}
            continue
        repeats_out = []
        for repeat in range(repeats):
            with PeakRss() as memory:
                if name.startswith("deepctr_din"):
                    probabilities, info = train_deepctr_din(
                        prepared, base, epochs, seed + repeat, position=name == "deepctr_din"
                    )
                else:
                    probabilities, info = train_ours(prepared, base, name, epochs, seed + repeat)
            repeats_out.append(
                {
                    **evaluate_test(prepared, probabilities, evaluate_params),
                    **info,
                    "peak_rss_mb": memory.mb,
                }
            )
        row = _median_row(repeats_out)
        rows[name] = row
        print(
            f"  {prepared.name:<5} {name:<24} AUC {row['auc']}  GAUC {row['gauc']}  "
            f"logloss {row['log_loss']}  {row['samples_per_second_median']:,} samples/s  "
            f"epochs {row['epochs_run']}  RSS {row['peak_rss_mb']} MB",
            flush=True,
        )
    return rows


def _warm_up(prepared: Prepared, base: TrainParams, seed: int, steps: int = 3) -> None:
    """A few untimed MUMA steps, so one-time costs (thread pools, kernel selection, allocator
    growth) do not land in the first model's samples/s."""
    step = _our_steps(prepared, base, "muma", seed)
    for index in range(min(steps, max(len(prepared.encoded["train"]) // base.batch_size, 1))):
        step(index)


def _median_row(repeats: list[dict]) -> dict:
    """Medians over repeats for the headline numbers; the first repeat's details."""
    row = dict(repeats[0])
    if len(repeats) > 1:
        for key in ("auc", "gauc", "log_loss", "ece", "ndcg_at_k", "hr_at_k", "pearson"):
            values = [r[key] for r in repeats if r.get(key) is not None]
            row[key] = round(med(values), 4) if values else None
        row["samples_per_second_median"] = round(
            med([r["samples_per_second_median"] for r in repeats])
        )
        row["auc_runs"] = [r["auc"] for r in repeats]
        row["peak_rss_mb"] = max(r["peak_rss_mb"] for r in repeats)
    row["repeats"] = len(repeats)
    return row


# ---------------------------------------------------------------------- 1M-row throughput
def _our_steps(prepared: Prepared, base: TrainParams, name: str, seed: int) -> Any:
    """A function running training step ``i`` of a project model (the body of ``fit``)."""
    import torch

    from training.bundle import build_model
    from training.losses import ranker_loss
    from training.pipeline import model_config

    params = model_params(base, name, 1, prepared.weighting)
    torch.manual_seed(seed)
    model = build_model(params.model, model_config(params, prepared.featurizer))
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=params.lr, weight_decay=params.weight_decay
    )
    train = prepared.encoded["train"]
    order = np.random.default_rng(seed).permutation(len(train))
    model.train()

    def step(index: int) -> None:
        rows = order[index * params.batch_size : (index + 1) * params.batch_size]
        batch = prepared.featurizer.batch(train, np.sort(rows))
        loss = ranker_loss(model(batch), batch, params.loss).total
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step


def _deepctr_steps(prepared: Prepared, base: TrainParams, seed: int) -> Any:
    """The body of DeepCTR-Torch's ``fit`` loop over its own DataLoader, one step per call."""
    import torch
    from torch.nn import functional

    _, inputs, models = _import_deepctr()
    model, data = _deepctr_model(prepared, base, seed, inputs, models)
    arrays = [data["train"][name] for name in model.feature_index]
    arrays = [a[:, None] if a.ndim == 1 else a for a in arrays]
    tensors = torch.utils.data.TensorDataset(
        torch.from_numpy(np.concatenate(arrays, axis=-1)),
        torch.from_numpy(prepared.encoded["train"].clicked),
    )
    del arrays
    loader = iter(torch.utils.data.DataLoader(tensors, shuffle=True, batch_size=base.batch_size))
    optimiser = model.optim
    model.train()

    def step(index: int) -> None:
        x, y = next(loader)
        predicted = model(x.float()).squeeze(-1)
        loss = functional.binary_cross_entropy(predicted, y.float(), reduction="sum")
        total = loss + model.get_regularization_loss() + model.aux_loss
        optimiser.zero_grad()
        total.backward()
        optimiser.step()

    return step


def scale_child(
    sim_dir: Path, curated_dir: Path, rows: int, name: str, steps: int, seed: int
) -> dict:
    """In this (fresh) process: tile the sim training set to ``rows`` encoded rows, then time
    ``steps`` training steps of ``name`` drawn from all of them (after 3 warm-up steps)."""
    import torch

    from training.featurize import Encoded

    started = time.perf_counter()
    base, features, _ = _params()
    torch.set_num_threads(base.threads)
    caps = {"train_rows": None, "valid_rows": 2_000, "test_rows": 1_000}
    prepared = prepare_sim(sim_dir, curated_dir, base, features, caps, seed)
    train = prepared.encoded["train"]
    reps = -(-rows // len(train))
    fields = {
        field: np.concatenate([getattr(train, field)] * reps)[:rows]
        for field in Encoded.__dataclass_fields__
    }
    prepared.encoded["train"] = Encoded(**fields)
    del train, fields
    prepared.frames = {}
    build_seconds = time.perf_counter() - started
    if name == "deepctr_din":
        step = _deepctr_steps(prepared, base, seed)
    else:
        step = _our_steps(prepared, base, name, seed)
    for index in range(3):
        step(index)
    started = time.perf_counter()
    for index in range(3, 3 + steps):
        step(index)
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "steps": steps,
        "samples_per_second": round(steps * base.batch_size / seconds),
        "build_seconds": round(build_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def scale_run(
    sim_dir: Path, curated_dir: Path, rows: int, models: list[str], steps: int, seed: int
) -> dict:
    """:func:`scale_child` in a fresh interpreter per model (each peak RSS is its own)."""
    result: dict[str, Any] = {"rows": rows, "steps": steps, "models": {}}
    for name in models:
        command = [
            sys.executable,
            "-m",
            "bench.bench_ranker",
            "--scale-child",
            "--scale-rows",
            str(rows),
            "--scale-steps",
            str(steps),
            "--models",
            name,
            "--sim-dir",
            str(sim_dir),
            "--curated-dir",
            str(curated_dir),
            "--seed",
            str(seed),
        ]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            result["models"][name] = {"error": done.stderr.strip().splitlines()[-3:]}
        else:
            result["models"][name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {rows:,} rows {name:<12} {result['models'][name]}", flush=True)
    return result


# ---------------------------------------------------------------------------------- main
def table(results: dict) -> str:
    """Plain-text table: one line per dataset and model."""
    head = (
        f"{'data':<5} {'model':<24} {'AUC':>7} {'GAUC':>7} {'logloss':>8} {'ECE':>7} "
        f"{'NDCG@10':>8} {'HR@10':>7} {'pearson':>8} {'samples/s':>10} {'RSS MB':>8}  "
        "per-domain AUC"
    )
    lines = [head]
    for dataset, block in results["datasets"].items():
        for name, row in block["models"].items():
            if "skipped" in row:
                lines.append(f"{dataset:<5} {name:<24} skipped: {row['skipped']}")
                continue
            domains = ", ".join(f"{k} {v}" for k, v in row["per_domain_auc"].items())
            lines.append(
                f"{dataset:<5} {name:<24} {_f(row['auc']):>7} {_f(row['gauc']):>7} "
                f"{_f(row['log_loss']):>8} {_f(row['ece']):>7} {_f(row['ndcg_at_k']):>8} "
                f"{_f(row['hr_at_k']):>7} {_f(row.get('pearson')):>8} "
                f"{row['samples_per_second_median']:>10,} {row['peak_rss_mb']:>8}  {domains}"
            )
    return "\n".join(lines)


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def targets(results: dict) -> dict:
    """Issue 5's targets against the measured figures.

    Gaps are in AUC points between medians over repeats; with the same number of repeats (the
    same seeds) on both sides, also the median of the per-seed gaps.
    """
    verdicts = {}
    peers = (
        ("din", "DIN", " (target >= 1.0)"),
        ("deepctr_din", "DeepCTR DIN", ""),
        ("deepctr_din-no_position", "DeepCTR DIN without the logged slot", ""),
    )
    for dataset, block in results["datasets"].items():
        rows = block["models"]
        muma = rows.get("muma", {})
        for peer, label, target in peers:
            other = rows.get(peer, {})
            if not muma.get("auc") or not other.get("auc"):
                continue
            key = f"{dataset}: MUMA - {label} AUC points{target}"
            verdicts[key] = round(100 * (muma["auc"] - other["auc"]), 2)
            ours, theirs = muma.get("auc_runs", []), other.get("auc_runs", [])
            if len(ours) > 1 and len(ours) == len(theirs):
                paired = [100 * (a - b) for a, b in zip(ours, theirs, strict=True)]
                verdicts[f"{key}, median of per-seed gaps"] = round(med(paired), 2)
        if "samples_per_second_median" in muma:
            verdicts[f"{dataset}: MUMA samples/s (target >= 10,000)"] = muma[
                "samples_per_second_median"
            ]
    return verdicts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="20k/8k/10k train/valid/test rows, 2 epochs"
    )
    parser.add_argument(
        "--datasets", default=",".join(DATASETS), help="comma-separated: sim, mind, ciao"
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}"
    )
    parser.add_argument(
        "--sim-dir",
        type=Path,
        default=None,
        help="written simulated training set (default <MUMA_DATA_ROOT or data>/training)",
    )
    parser.add_argument(
        "--curated-dir",
        type=Path,
        default=None,
        help="curated tables of the sim data (catalog, friendships; default <sim-dir>/../curated)",
    )
    parser.add_argument("--work-dir", type=Path, default=OUT, help="scratch: real-data imports")
    parser.add_argument("--epochs", type=int, default=None, help="override the mode's epochs")
    parser.add_argument(
        "--lr", type=float, default=None, help="override train.lr for every model of the run"
    )
    parser.add_argument("--train-rows", type=int, default=None, help="override the train cap")
    parser.add_argument("--repeats", type=int, default=1, help="trainings per model (median)")
    parser.add_argument("--seed", type=int, default=42, help="seed of the first repeat")
    parser.add_argument(
        "--scale-rows",
        type=int,
        default=0,
        help="also time --scale-steps steps over this many training rows (sim tiled), e.g. 1000000",
    )
    parser.add_argument(
        "--scale-models", default="muma,din,deepctr_din", help="models of the scale run"
    )
    parser.add_argument("--scale-steps", type=int, default=60, help="timed steps of the scale run")
    parser.add_argument("--scale-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--unweighted",
        action="store_true",
        help="no inverse-propensity loss weighting for any model (like DeepCTR's fit)",
    )
    parser.add_argument("--out", type=Path, default=None, help="result JSON path")
    parser.add_argument(
        "--save", action="store_true", help="also merge into bench/results.json as 'ranker'"
    )
    args = parser.parse_args(argv)

    import torch

    sim_dir = args.sim_dir or default_sim_dir()
    curated_dir = args.curated_dir or sim_dir.parent / "curated"
    models = tuple(m for m in args.models.split(",") if m)
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown models {unknown}")
    if args.scale_child:
        child = scale_child(
            sim_dir, curated_dir, args.scale_rows, models[0], args.scale_steps, args.seed
        )
        print(json.dumps(child))
        return {}
    base, features, evaluate_params = _params()
    if args.lr:
        base = base.model_copy(update={"lr": args.lr})
    torch.set_num_threads(base.threads)
    caps = dict(QUICK if args.quick else FULL)
    if args.train_rows:
        caps["train_rows"] = args.train_rows
    epochs = args.epochs or caps["epochs"]
    results: dict[str, Any] = {
        **conditions(),
        "mode": "quick" if args.quick else "full",
        "epochs_max": epochs,
        "caps": caps,
        "batch_size": base.batch_size,
        "lr": base.lr,
        "long_length": base.long_length,
        "embedding_dim": base.muma.embedding.dim,
        "threads": base.threads,
        "repeats": args.repeats,
        "seed": args.seed,
        "load_average_1m_start": round(os.getloadavg()[0], 2),
        "datasets": {},
    }
    for dataset in [d for d in args.datasets.split(",") if d]:
        if dataset not in DATASETS:
            parser.error(f"unknown dataset {dataset!r}")
        print(f"preparing {dataset} ...", flush=True)
        if dataset == "sim":
            prepared = prepare_sim(sim_dir, curated_dir, base, features, caps, args.seed)
        else:
            prepared = prepare_real(dataset, args.work_dir, base, caps, args.seed)
        prepared.weighting = prepared.weighting and not args.unweighted
        load = round(os.getloadavg()[0], 2)
        block = {
            "propensity_weighting": prepared.weighting,
            "rows": {k: len(v) for k, v in prepared.frames.items()},
            "clicks": {k: int(v["clicked"].sum()) for k, v in prepared.frames.items()},
            "split": prepared.split,
            "feature_space": prepared.featurizer.feature_space().model_dump(),
            "prepare_seconds": round(prepared.prepare_seconds, 1),
            "load_average_1m_start": load,
        }
        print(f"  rows {block['rows']}, clicks {block['clicks']}, load {load}", flush=True)
        block["models"] = run_dataset(
            prepared, base, evaluate_params, models, epochs, args.repeats, args.seed
        )
        block["load_average_1m_end"] = round(os.getloadavg()[0], 2)
        results["datasets"][dataset] = block
        del prepared
    if args.scale_rows:
        print(f"throughput at {args.scale_rows:,} training rows ...", flush=True)
        results["scale"] = scale_run(
            sim_dir,
            curated_dir,
            args.scale_rows,
            args.scale_models.split(","),
            args.scale_steps,
            args.seed,
        )
    results["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    results["targets"] = targets(results)
    out = args.out or args.work_dir / f"results-{results['mode']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(json.dumps(results["targets"], indent=2))
    if args.save:
        save("ranker", results)
    print(f"written {out}")
    return results


if __name__ == "__main__":
    try:
        main()
    except BenchError as error:
        sys.exit(f"error: {error}")
