"""The zoo's cells against Keras's built-in cells and against their equations in NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import CIFGCell, GRUCell, LSTMCell, RNNCell

B, T, D, U = 3, 50, 5, 7
# Every test runs with keras.layers.RNN and with zoo.cells.FusedRNN (tests/zoo/conftest.py).
pytestmark = pytest.mark.usefixtures("rnn_layer")

PAIRS = {
    "rnn_tanh": (lambda: RNNCell(U), lambda: keras.layers.SimpleRNNCell(U), 1),
    "rnn_relu": (lambda: RNNCell(U, activation="relu"),
                 lambda: keras.layers.SimpleRNNCell(U, activation="relu"), 1),
    "lstm": (lambda: LSTMCell(U), lambda: keras.layers.LSTMCell(U), 2),
    "gru": (lambda: GRUCell(U), lambda: keras.layers.GRUCell(U, reset_after=True), 1),
}


def _rnn(cell):
    return keras.layers.RNN(cell, return_sequences=True, return_state=True)


def _inputs(n_states, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, T, D)).astype("float32")
    states = [rng.normal(scale=0.5, size=(B, U)).astype("float32") for _ in range(n_states)]
    return x, states


def _randomize(layer, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(scale=scale, size=w.shape).astype("float32")
                       for w in layer.get_weights()])


def _pair(name, direction="builtin_to_zoo"):
    make_ours, make_theirs, n_states = PAIRS[name]
    x, states = _inputs(n_states)
    ours, theirs = _rnn(make_ours()), _rnn(make_theirs())
    ours(x, initial_state=states)
    theirs(x, initial_state=states)
    source, target = (theirs, ours) if direction == "builtin_to_zoo" else (ours, theirs)
    _randomize(source, seed=1)
    target.set_weights(source.get_weights())
    return ours, theirs, x, states


@pytest.mark.parametrize("direction", ["builtin_to_zoo", "zoo_to_builtin"])
@pytest.mark.parametrize("name", sorted(PAIRS))
def test_equals_the_keras_cell_on_identical_weights(name, direction):
    ours, theirs, x, states = _pair(name, direction)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    out_a = ours(x, initial_state=states)
    out_b = theirs(x, initial_state=states)
    for a, b in zip(out_a, out_b):  # per-step outputs, then every final state
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(np.asarray(out_a[0])).max() > 1e-2  # not trivially zero


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_equals_the_keras_cell_with_a_right_padded_mask(name):
    ours, theirs, x, states = _pair(name)
    mask = np.ones((B, T), bool)
    mask[0, 30:] = False
    mask[1, 45:] = False
    out_a = ours(x, initial_state=states, mask=mask)
    out_b = theirs(x, initial_state=states, mask=mask)
    for a, b in zip(out_a, out_b):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # The state is held on masked steps: row 0's final h is its output at step 29.
    np.testing.assert_allclose(out_a[1][0], out_a[0][0, 29], atol=1e-6)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_gradients_equal_the_keras_cell(name):
    ours, theirs, x, states = _pair(name)
    x = tf.constant(x)
    rng = np.random.default_rng(5)
    targets = tf.constant(rng.normal(size=(B, T, U)).astype("float32"))

    def grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            seq = layer(x, initial_state=states)[0]
            loss = tf.reduce_sum(tf.reduce_mean((seq - targets) ** 2, axis=[0, 2]))  # sum_t
        return tape.gradient(loss, [x] + [w.value for w in layer.trainable_weights])

    for a, b in zip(grads(ours), grads(theirs)):
        np.testing.assert_allclose(a, b, atol=1e-4)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_run(name, weights, x, states, steps):
    """The cells' equations (column-vector notation), step by step, in float64 NumPy (no Keras)."""
    W, R, b = (w.astype("float64") for w in weights)
    h = states[0].astype("float64")
    c = states[1].astype("float64") if name == "lstm" else None
    outs = []
    for t in range(steps):
        xt = x[:, t].astype("float64")
        if name.startswith("rnn"):
            pre = xt @ W + h @ R + b
            h = np.tanh(pre) if name == "rnn_tanh" else np.maximum(pre, 0)
        elif name == "lstm":
            z = xt @ W + h @ R + b
            i, f, g, o = np.split(z, 4, axis=-1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        else:  # GRU, reset after the recurrent product
            xz, xr, xh = np.split(xt @ W + b[0], 3, axis=-1)
            uz, ur, uh = np.split(h @ R + b[1], 3, axis=-1)
            z, r = _sigmoid(xz + uz), _sigmoid(xr + ur)
            h = z * h + (1 - z) * np.tanh(xh + r * uh)
        outs.append(h)
    return np.stack(outs, axis=1)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_matches_numpy_equations(name):
    make_ours, _, n_states = PAIRS[name]
    x, states = _inputs(n_states, seed=3)
    layer = _rnn(make_ours())
    layer(x[:, :6], initial_state=states)
    _randomize(layer, seed=4, scale=0.5)
    seq = layer(x[:, :6], initial_state=states)[0]
    np.testing.assert_allclose(seq, _numpy_run(name, layer.get_weights(), x, states, 6),
                               atol=1e-5)


def test_irnn_with_zero_input_keeps_its_state():
    """ReLU, W_hh = I, zero bias and x = 0: h_t = h_0 for every t (Le et al. 2015)."""
    layer = _rnn(RNNCell(U, activation="relu", recurrent_initializer="identity"))
    h0 = np.abs(np.random.default_rng(0).normal(size=(B, U))).astype("float32")
    seq, h_last = layer(np.zeros((B, T, D), "float32"), initial_state=[h0])
    np.testing.assert_array_equal(np.asarray(seq), np.repeat(h0[:, None], T, axis=1))
    np.testing.assert_array_equal(np.asarray(h_last), h0)


def test_forget_gate_bias_starts_at_one():
    cell = LSTMCell(4)
    cell.build((None, 3))
    np.testing.assert_array_equal(cell.bias.numpy(),
                                  np.concatenate([np.zeros(4), np.ones(4), np.zeros(8)]))
    plain = LSTMCell(4, unit_forget_bias=False)
    plain.build((None, 3))
    np.testing.assert_array_equal(plain.bias.numpy(), np.zeros(16))


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell])
def test_config_round_trip_keeps_every_argument(cls):
    kwargs = dict(kernel_initializer="zeros", recurrent_initializer="identity",
                  bias_initializer="ones", dropout=0.25, recurrent_dropout=0.5, seed=3,
                  name="c")
    if cls is LSTMCell:
        kwargs["unit_forget_bias"] = False
    if cls is RNNCell:
        kwargs["activation"] = "relu"
    cell = cls(6, **kwargs)
    clone = cls.from_config(cell.get_config())
    assert clone.get_config() == cell.get_config()
    for key in ("dropout", "recurrent_dropout", "seed", "name"):
        assert getattr(clone, key) == kwargs[key]


@pytest.mark.parametrize("cls, n", [(RNNCell, 1), (LSTMCell, 2), (GRUCell, 1)])
def test_initial_state_is_zeros_of_the_right_shape(cls, n):
    states = cls(5).get_initial_state(batch_size=3)
    assert len(states) == n
    for s in states:
        assert s.shape == (3, 5) and not np.any(np.asarray(s))


@pytest.mark.parametrize("units", [0, -3, 2.5, None])
def test_bad_units(units):
    with pytest.raises(ValueError, match="units"):
        LSTMCell(units)


@pytest.mark.parametrize("rate", [-0.1, 1.5])
def test_out_of_range_dropout_rates_are_clipped_as_keras_clips_them(rate):
    ours = GRUCell(4, dropout=rate, recurrent_dropout=rate)
    theirs = keras.layers.GRUCell(4, dropout=rate, recurrent_dropout=rate)
    assert (ours.dropout, ours.recurrent_dropout) == (theirs.dropout, theirs.recurrent_dropout)
    assert ours.dropout in (0.0, 1.0)


def test_wrong_input_rank_names_the_expected_shape():
    cell = LSTMCell(4)
    with pytest.raises(ValueError, match=r"\(batch, features\)"):
        cell(np.zeros((2, 3, 5), "float32"), [np.zeros((2, 4), "float32")] * 2)


def test_wrong_state_shape_names_the_expected_shape():
    cell = GRUCell(4)
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        cell(np.zeros((2, 5), "float32"), [np.zeros((2, 3), "float32")])


def test_input_dropout_is_identity_at_inference_and_one_mask_across_time():
    cell = RNNCell(D, activation="linear", kernel_initializer="identity",
                   recurrent_initializer="zeros", dropout=0.5, seed=1)
    layer = keras.layers.RNN(cell, return_sequences=True)
    x = np.ones((B, T, D), "float32")
    np.testing.assert_array_equal(layer(x, training=False), x)
    seq = np.asarray(layer(x, training=True))
    assert set(np.unique(seq)) <= {0.0, 2.0} and 0 < np.count_nonzero(seq) < seq.size
    np.testing.assert_array_equal(seq, np.repeat(seq[:, :1], T, axis=1))  # same at every t
    assert not np.array_equal(seq, np.asarray(layer(x, training=True)))  # new per sequence


def test_recurrent_dropout_uses_one_mask_across_time():
    cell = RNNCell(U, activation="linear", kernel_initializer="zeros",
                   recurrent_initializer="identity", recurrent_dropout=0.5, seed=2)
    layer = keras.layers.RNN(cell, return_sequences=True)
    h0 = np.ones((B, U), "float32")
    x = np.zeros((B, 6, D), "float32")
    np.testing.assert_array_equal(layer(x, initial_state=[h0], training=False),
                                  np.ones((B, 6, U)))
    seq = np.asarray(layer(x, initial_state=[h0], training=True))
    alive = seq[:, 0] != 0
    for t in range(6):  # h_t = (h_{t-1} * m) @ I with the same m: 2**(t+1) where m kept
        np.testing.assert_array_equal(seq[:, t] != 0, alive)
        np.testing.assert_allclose(seq[:, t][alive], 2.0 ** (t + 1))


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell])
def test_stateful_chunks_equal_one_pass_and_reset_gives_zeros(cls):
    x = np.random.default_rng(0).normal(size=(B, 20, D)).astype("float32")
    whole = keras.layers.RNN(cls(U, seed=0), return_sequences=True)
    stateful = keras.layers.RNN(cls(U, seed=0), return_sequences=True, stateful=True)
    whole(x)
    stateful(x[:, :1])
    stateful.reset_state()
    stateful.set_weights(whole.get_weights())
    chunks = np.concatenate([stateful(x[:, :12]), stateful(x[:, 12:])], axis=1)
    np.testing.assert_allclose(chunks, whole(x), atol=1e-6)
    stateful.reset_state()
    for state in stateful.states:  # the documented initial state: zeros
        assert not np.any(np.asarray(state))
    np.testing.assert_allclose(stateful(x[:, :12]), np.asarray(whole(x))[:, :12], atol=1e-6)


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell])
def test_works_in_stacked_cells_and_bidirectional(cls):
    x = np.random.default_rng(1).normal(size=(B, 9, D)).astype("float32")
    stacked = keras.layers.RNN([cls(U), cls(4)], return_sequences=True)
    assert stacked(x).shape == (B, 9, 4)
    bi = keras.layers.Bidirectional(keras.layers.RNN(cls(U), return_sequences=True))
    out = np.asarray(bi(x))
    assert out.shape == (B, 9, 2 * U)
    forward = keras.layers.RNN(cls(U), return_sequences=True)
    forward(x)
    forward.set_weights(bi.forward_layer.get_weights())
    np.testing.assert_allclose(out[..., :U], forward(x), atol=1e-6)
    backward = keras.layers.RNN(cls(U), return_sequences=True, go_backwards=True)
    backward(x)
    backward.set_weights(bi.backward_layer.get_weights())
    np.testing.assert_allclose(out[..., U:], np.asarray(backward(x))[:, ::-1], atol=1e-6)


@pytest.mark.parametrize("cls", [RNNCell, LSTMCell, GRUCell])
def test_unroll_equals_the_loop(cls):
    x = np.random.default_rng(2).normal(size=(B, 8, D)).astype("float32")
    loop = keras.layers.RNN(cls(U), return_sequences=True)
    unrolled = keras.layers.RNN(cls(U), return_sequences=True, unroll=True)
    loop(x)
    unrolled(x)
    unrolled.set_weights(loop.get_weights())
    np.testing.assert_allclose(unrolled(x), loop(x), atol=1e-6)


@pytest.mark.parametrize("policy, dtype, atol", [("mixed_float16", "float16", 5e-3),
                                                  ("mixed_bfloat16", "bfloat16", 5e-2)])
@pytest.mark.parametrize("name", ["rnn_tanh", "lstm", "gru"])
def test_mixed_precision_matches_the_keras_cell_and_computes_in_half_precision(name, policy,
                                                                               dtype, atol):
    keras.mixed_precision.set_global_policy(policy)
    try:
        ours, theirs, x, states = _pair(name)
        out_a = ours(x[:, :20], initial_state=states)
        out_b = theirs(x[:, :20], initial_state=states)
        assert keras.backend.standardize_dtype(out_a[0].dtype) == dtype
        assert all(keras.backend.standardize_dtype(w.dtype) == "float32"
                   for w in ours.weights)  # variables stay float32
        for a, b in zip(out_a, out_b):
            np.testing.assert_allclose(np.asarray(a, "float32"), np.asarray(b, "float32"),
                                       atol=atol)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_mask_of_the_wrong_shape_is_a_value_error():
    layer = keras.layers.RNN(LSTMCell(U), return_sequences=True)
    x, states = _inputs(2)
    with pytest.raises(ValueError, match=f"{T + 1}.*{T}"):  # given, then expected length
        layer(x, initial_state=states, mask=np.ones((B, T + 1), bool))


def test_cifg_matches_its_equations_in_numpy():
    """CIFG (Greff et al. 2017): an LSTM without forget-gate weights, f_t = 1 - i_t."""
    x, states = _inputs(2, seed=5)
    layer = _rnn(CIFGCell(U))
    layer(x[:, :6], initial_state=states)
    _randomize(layer, seed=6, scale=0.5)
    seq, h_last, c_last = layer(x[:, :6], initial_state=states)
    W, R, b = (w.astype("float64") for w in layer.get_weights())
    assert W.shape == (D, 3 * U) and R.shape == (U, 3 * U) and b.shape == (3 * U,)
    h, c = (s.astype("float64") for s in states)
    for t in range(6):
        i, g, o = np.split(x[:, t].astype("float64") @ W + h @ R + b, 3, axis=-1)
        i = _sigmoid(i)
        c = (1 - i) * c + i * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        np.testing.assert_allclose(seq[:, t], h, atol=1e-5, err_msg=f"step {t}")
    np.testing.assert_allclose(c_last, c, atol=1e-5)


def test_cifg_equals_an_lstm_whose_forget_gate_is_one_minus_its_input_gate():
    """With the forget pre-activation set to minus the input one, sigma(-z) = 1 - sigma(z):
    the Keras LSTM cell then computes exactly the CIFG cell."""
    x, states = _inputs(2, seed=7)
    ours, theirs = _rnn(CIFGCell(U)), _rnn(keras.layers.LSTMCell(U))
    ours(x, initial_state=states)
    theirs(x, initial_state=states)
    _randomize(ours, seed=8)
    W, R, b = ours.get_weights()

    def lstm_layout(w):
        i, g, o = np.split(w, 3, axis=-1)
        return np.concatenate([i, -i, g, o], axis=-1)

    theirs.set_weights([lstm_layout(W), lstm_layout(R), lstm_layout(b)])
    for a, b_ in zip(ours(x, initial_state=states), theirs(x, initial_state=states)):
        np.testing.assert_allclose(a, b_, atol=1e-5)


def test_cifg_input_gate_bias_starts_at_minus_one_and_round_trips():
    cell = CIFGCell(4)
    cell.build((None, 3))
    np.testing.assert_array_equal(cell.bias.numpy(), np.concatenate([-np.ones(4), np.zeros(8)]))
    plain = CIFGCell(4, unit_forget_bias=False, recurrent_dropout=0.25, name="c")
    config = plain.get_config()
    again = CIFGCell.from_config(config)
    assert again.get_config() == config and config["unit_forget_bias"] is False
