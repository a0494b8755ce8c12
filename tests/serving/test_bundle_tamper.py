"""A tampered model bundle is refused with a clear error and never unpickled, even when the
attacker also rewrites the digests in ``bundle.json`` so that they match.

The payloads are real pickles whose unpickling would create a marker file; the test checks
the marker never appears.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from training.bundle import ARRAYS_FILE, META_FILE, MODEL_FILE, BundleError, ModelBundle

pytestmark = [pytest.mark.reliability, pytest.mark.filterwarnings("ignore::UserWarning")]


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _rewrite_digest(bundle: Path, name: str) -> None:
    meta = json.loads((bundle / META_FILE).read_text())
    meta["sha256"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / META_FILE).write_text(json.dumps(meta))


def test_malicious_weights_are_refused_without_unpickling(bundles, tmp_path: Path, reliability):
    marker = tmp_path / "pwned"
    refused = []
    # 1. A torch checkpoint holding an arbitrary object, digest rewritten to match.
    bundle = tmp_path / "weights"
    shutil.copytree(bundles["first"], bundle)
    torch.save({"weight": _Payload(marker)}, bundle / MODEL_FILE)
    _rewrite_digest(bundle, MODEL_FILE)
    with pytest.raises(BundleError, match="cannot read the bundle"):
        ModelBundle.load(bundle)
    refused.append("torch checkpoint with a pickled object, digest rewritten")
    # 2. A raw pickle in place of the weights.
    (bundle / MODEL_FILE).write_bytes(pickle.dumps(_Payload(marker)))
    _rewrite_digest(bundle, MODEL_FILE)
    with pytest.raises(BundleError, match="cannot read the bundle"):
        ModelBundle.load(bundle)
    refused.append("raw pickle as weights, digest rewritten")
    # 3. Featurizer arrays holding a pickled object array.
    arrays = tmp_path / "arrays"
    shutil.copytree(bundles["first"], arrays)
    with (arrays / ARRAYS_FILE).open("wb") as handle:
        np.savez(handle, evil=np.array([_Payload(marker)], dtype=object))
    _rewrite_digest(arrays, ARRAYS_FILE)
    with pytest.raises(BundleError, match="cannot read the bundle"):
        ModelBundle.load(arrays)
    refused.append("object array in the featurizer arrays, digest rewritten")
    # 4. A flipped byte with the digest left alone: corrupt.
    corrupt = tmp_path / "corrupt"
    shutil.copytree(bundles["first"], corrupt)
    raw = bytearray((corrupt / MODEL_FILE).read_bytes())
    raw[len(raw) // 3] ^= 0x01
    (corrupt / MODEL_FILE).write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="corrupt or was modified"):
        ModelBundle.load(corrupt)
    refused.append("one flipped byte")
    # 5. Truncated weights.
    (corrupt / MODEL_FILE).write_bytes(raw[:100])
    with pytest.raises(BundleError, match="corrupt or was modified"):
        ModelBundle.load(corrupt)
    refused.append("truncated weights")
    assert not marker.exists(), "a payload was unpickled"
    ModelBundle.load(bundles["first"])  # the untouched bundle still loads
    reliability.record("fault_tampered_model", {"refused": refused, "unpickled": 0})
