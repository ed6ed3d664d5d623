"""Two MultiWorkerMirroredStrategy workers on localhost train as one process does on the same
global batch: each worker reads half of every batch of 32 windows, the gradients are
all-reduced, so both workers must end with the weights of a single-process run."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.conftest import ROOT, run_cli

# 2561 tokens are 128 windows of 20: four full global batches of 32, 16 per worker (a
# smaller last batch would split unevenly and weigh its halves differently).
FLAGS = ["--max-train-tokens", "2561", "--units", "8", "--embedding-dim", "8",
         "--max-vocab", "300", "--batch-size", "32", "--bptt", "20", "--no-keyboard-metrics"]


@pytest.mark.slow
def test_two_workers_end_with_the_weights_of_one_process_on_the_same_global_batch(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        ["bash", "scripts/multiworker_localhost.sh", str(out), *FLAGS],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Epoch 2/2" in proc.stdout + proc.stderr
    # The same flags as the script's, in one process with the default strategy.
    single = tmp_path / "single"
    run_cli("training.cli", "--no-carry-state", "--corpus", "default", "--epochs", "2",
            "--num-layers", "1", *FLAGS, "--verbose", "0", "--output", single)
    import zoo  # noqa: F401  (registers the classes)

    first = keras.saving.load_model(out / "model.keras").get_weights()
    second = keras.saving.load_model(str(out) + ".worker1/model.keras").get_weights()
    alone = keras.saving.load_model(single / "model.keras").get_weights()
    assert len(first) == len(second) == len(alone) > 0
    for a, b, c in zip(first, second, alone):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5)
    # the runs learned something: equal untrained models would prove nothing
    history = json.loads((single / "history.json").read_text())
    assert history["loss"][1] < history["loss"][0]
