"""Gradient-flow probe against the Jacobian product worked out by hand."""

import numpy as np
import pytest

from training.diagnostics import hidden_state_gradient_norms, plot, write_csv
from zoo import get_model


def _linear_rnn(gain):
    model = get_model("rnn", 9, units=4, embedding_dim=3, num_layers=1, activation="linear")
    model.build((None, 1))
    model.rnn_layers[0].cell.recurrent_kernel.assign(gain * np.eye(4, dtype="float32"))
    return model


@pytest.mark.parametrize("gain", [0.5, 1.0])
def test_linear_rnn_gradient_shrinks_by_the_recurrent_gain_per_step(gain):
    """h_t = x_t W + gain * h_{t-1}: dL_T/dh_k = gain^(T-k) dL_T/dh_T exactly."""
    ids = np.random.default_rng(0).integers(1, 9, size=(3, 8))
    norms = hidden_state_gradient_norms(_linear_rnn(gain), ids, ids)
    np.testing.assert_allclose(norms, norms[-1] * gain ** np.arange(7, -1, -1), rtol=1e-5)


def test_lstm_keeps_more_gradient_than_a_saturated_tanh_rnn():
    ids = np.random.default_rng(1).integers(1, 9, size=(4, 30))
    rnn = get_model("rnn", 9, units=8, embedding_dim=8, num_layers=1)
    rnn.build((None, 1))
    lstm = get_model("lstm", 9, units=8, embedding_dim=8, num_layers=1)
    lstm.build((None, 1))
    rnn.rnn_layers[0].cell.recurrent_kernel.assign(0.3 * np.eye(8, dtype="float32"))
    g_rnn = hidden_state_gradient_norms(rnn, ids, ids)
    g_lstm = hidden_state_gradient_norms(lstm, ids, ids)
    assert g_rnn[0] / g_rnn[-1] < 1e-10 < g_lstm[0] / g_lstm[-1]


def test_outputs_are_written(tmp_path):
    curves = {"a": np.array([0.1, 0.5, 1.0]), "b": np.array([1.0, 1.0, 1.0])}
    write_csv(tmp_path / "g.csv", curves)
    lines = (tmp_path / "g.csv").read_text().strip().split("\n")
    assert lines[0].startswith("model,k,distance") and len(lines) == 7
    assert lines[1].split(",")[:3] == ["a", "1", "2"] and float(lines[1].split(",")[4]) == 0.1
    plot(tmp_path / "g.png", curves, "t")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_models_without_recurrence_are_refused():
    model = get_model("transformer", 9, model_dim=8, num_heads=2, ffn_dim=8, max_length=8)
    with pytest.raises(ValueError, match="no recurrent hidden state"):
        hidden_state_gradient_norms(model, np.ones((1, 3)), np.ones((1, 3)))


@pytest.mark.slow
def test_the_command_reports_each_model_and_keeps_tensorflow_quiet(tmp_path):
    """A line per model before its training and after its probe; TensorFlow's C++ log
    (warnings and errors such as a CPU machine's failed cuInit) stays out of the output."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "training.diagnostics", "--corpus", "default", "--train-steps",
         "2", "--steps", "4", "--units", "4", "--probe-batch", "2", "--output",
         str(tmp_path / "g")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    starts = [line.split(":")[0] for line in lines if line.startswith("[")]
    assert starts == ["[1/4] tanh RNN", "[2/4] IRNN", "[3/4] LSTM", "[4/4] LSTM + attention"]
    assert sum("probed in" in line for line in lines) == 4
    assert not [line for line in proc.stderr.splitlines() if line[:5] in ("W0000", "E0000")]
