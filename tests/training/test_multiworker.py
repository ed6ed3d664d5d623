"""Two MultiWorkerMirroredStrategy workers on localhost train to the same weights."""

import subprocess
import sys

import keras
import numpy as np

from tests.conftest import ROOT


def test_two_workers_on_localhost_end_with_the_same_weights(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        ["bash", "scripts/multiworker_localhost.sh", str(out), "--max-train-tokens", "3000",
         "--units", "8", "--embedding-dim", "8", "--max-vocab", "300"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    import zoo  # noqa: F401  (registers the classes)

    first = keras.saving.load_model(out / "model.keras")
    second = keras.saving.load_model(str(out) + ".worker1/model.keras")
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert "Epoch 2/2" in proc.stdout + proc.stderr
