"""zoo.LSTMCell against keras.layers.LSTMCell and against the LSTM equations in NumPy."""

import keras
import numpy as np
import pytest

from zoo import LSTMCell

B, T, D, U = 3, 12, 5, 7


def _rnn(cell):
    return keras.layers.RNN(cell, return_sequences=True, return_state=True)


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype("float32")
    h0 = rng.normal(size=(B, U)).astype("float32")
    c0 = rng.normal(size=(B, U)).astype("float32")
    return x, h0, c0


def _randomize(layer, seed):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype("float32")
                       for w in layer.get_weights()])


@pytest.mark.parametrize("direction", ["builtin_to_zoo", "zoo_to_builtin"])
def test_equals_keras_lstm_cell_on_identical_weights(direction):
    x, h0, c0 = _inputs()
    ours, theirs = _rnn(LSTMCell(U)), _rnn(keras.layers.LSTMCell(U))
    ours(x, initial_state=[h0, c0])
    theirs(x, initial_state=[h0, c0])
    source, target = (theirs, ours) if direction == "builtin_to_zoo" else (ours, theirs)
    _randomize(source, seed=1)
    target.set_weights(source.get_weights())
    assert [w.shape for w in ours.get_weights()] == [(D, 4 * U), (U, 4 * U), (4 * U,)]

    seq_a, h_a, c_a = ours(x, initial_state=[h0, c0])
    seq_b, h_b, c_b = theirs(x, initial_state=[h0, c0])
    np.testing.assert_allclose(seq_a, seq_b, atol=1e-5)
    np.testing.assert_allclose(h_a, h_b, atol=1e-5)
    np.testing.assert_allclose(c_a, c_b, atol=1e-5)
    assert np.abs(np.asarray(seq_a)).max() > 1e-2  # not trivially zero


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def test_matches_numpy_equations():
    x, h, c = _inputs(seed=3)
    layer = _rnn(LSTMCell(U))
    layer(x, initial_state=[h, c])
    _randomize(layer, seed=4)
    W, R, b = (w.astype("float64") for w in layer.get_weights())
    seq, h_out, c_out = layer(x, initial_state=[h, c])
    h, c = h.astype("float64"), c.astype("float64")
    for t in range(T):
        z = x[:, t] @ W + h @ R + b
        i, f, g, o = (z[:, k * U:(k + 1) * U] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        np.testing.assert_allclose(seq[:, t], h, atol=1e-5)
    np.testing.assert_allclose(h_out, h, atol=1e-5)
    np.testing.assert_allclose(c_out, c, atol=1e-5)


def test_forget_gate_bias_starts_at_one():
    cell = LSTMCell(4)
    cell.build((None, 3))
    expected = np.concatenate([np.zeros(4), np.ones(4), np.zeros(8)])
    np.testing.assert_array_equal(cell.bias.numpy(), expected)
    plain = LSTMCell(4, unit_forget_bias=False)
    plain.build((None, 3))
    np.testing.assert_array_equal(plain.bias.numpy(), np.zeros(16))


def test_config_round_trip_keeps_every_argument():
    cell = LSTMCell(6, kernel_initializer="zeros", recurrent_initializer="identity",
                    bias_initializer="ones", unit_forget_bias=False, name="c")
    clone = LSTMCell.from_config(cell.get_config())
    for key in ("units", "unit_forget_bias", "name"):
        assert getattr(clone, key) == getattr(cell, key)
    assert clone.get_config() == cell.get_config()


def test_initial_state_is_zeros_of_the_right_shape():
    h, c = LSTMCell(5).get_initial_state(batch_size=3)
    assert h.shape == (3, 5) and c.shape == (3, 5)
    assert not np.any(np.asarray(h)) and not np.any(np.asarray(c))


@pytest.mark.parametrize("units", [0, -3, 2.5, None])
def test_bad_units(units):
    with pytest.raises(ValueError, match="units"):
        LSTMCell(units)


def test_wrong_input_rank_names_the_expected_shape():
    cell = LSTMCell(4)
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        cell(np.zeros((2, 3, 5), "float32"), [np.zeros((2, 4), "float32")] * 2)
