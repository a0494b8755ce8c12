"""Training SIGKILLed mid-epoch: the champion's files and pointer are untouched and still
load, no half-written challenger is left to promote, and a rerun completes.

The training process is the real loop (:func:`training.train.fit` on a MUMA model and the
featurizer, saving the challenger bundle as ``muma train`` does) on synthetic
``muma_v1``-shaped rows from :mod:`bench.bench_serving`; it runs in its own process so it can
be killed. The kill lands in epoch 2 (after epoch 1 has been reported).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

CHILD = """
import sys
from pathlib import Path
import torch
from bench.bench_serving import build_world, synthetic_training
from training.bundle import ModelBundle, build_model
from training.config import TrainParams
from training.pipeline import model_config
from training.train import fit

epochs, out = int(sys.argv[1]), Path(sys.argv[2])
users, catalog, _ = build_world(1500, 600, seed=1)
rows, featurizer = synthetic_training(users, catalog, seed=1, rows_per_user=8)
train, valid = rows.iloc[: len(rows) * 4 // 5], rows.iloc[len(rows) * 4 // 5 :]
params = TrainParams(epochs=epochs, batch_size=256, threads=1, early_stopping_patience=epochs)
config = model_config(params, featurizer)
torch.manual_seed(1)
model = build_model("muma", config)
result = fit(
    model, featurizer, featurizer.transform(train), featurizer.transform(valid), params, 1,
    on_epoch=lambda entry: print(f"epoch {entry.epoch} done", flush=True), progress=False,
)
ModelBundle("muma", "muma", config, model, featurizer, result.temperature, {"seed": 1}).save(out)
print("saved", flush=True)
"""


def _digests(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _champion(tmp_path: Path) -> Path:
    """``models/`` with a promoted champion bundle (registry copy + pointer)."""
    from bench.bench_serving import build_world, write_bundle
    from training.registry import write_json_atomic

    users, catalog, _ = build_world(300, 300)
    models = tmp_path / "data" / "models"
    version = write_bundle(tmp_path / "bundle", users, catalog)
    shutil.copytree(tmp_path / "bundle", models / "registry" / version)
    write_json_atomic(
        models / "champion.json",
        {"version": version, "name": "muma", "path": f"registry/{version}"},
    )
    return models


def _train(epochs: int, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(epochs), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )


def test_training_killed_mid_epoch_leaves_the_champion_untouched(tmp_path: Path, reliability):
    from muma.settings import Settings
    from training.bundle import ModelBundle
    from training.registry import challenger_dir, load_champion

    models = _champion(tmp_path)
    settings = Settings(data_root=tmp_path / "data", params_path=tmp_path / "none.yaml")
    before = _digests(models)
    challenger = challenger_dir(settings)

    child = _train(1000, challenger)
    try:
        first = child.stdout.readline()
        assert first.startswith("epoch 1 done"), first + child.stderr.read()
        time.sleep(0.3)  # into epoch 2
        assert child.poll() is None
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    assert _digests(models) == before, "the killed training changed the models directory"
    assert not challenger.exists(), "a half-trained challenger was written"
    champion = load_champion(settings)  # verifies the digests
    pointer = json.loads((models / "champion.json").read_text())
    assert champion is not None and champion.version == pointer["version"]

    rerun = _train(1, challenger)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0 and "saved" in out, err[-2000:]
    ModelBundle.load(challenger)
    assert {k: v for k, v in _digests(models).items() if not k.startswith("challenger")} == before
    reliability.record(
        "fault_training_killed",
        {"killed_in_epoch": 2, "champion_untouched": True, "rerun_completed": True},
    )
