"""The fused path of zoo.cells.FusedRNN: its explicit BPTT gradient against TensorFlow's
autodiff through Keras's step-by-step loop over the same cell, and when it is taken.

(Its outputs and gradients against Keras's built-in cells are checked by test_cells.py and
test_keras_contract.py, which run every test with FusedRNN too.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import CIFGCell, GRUCell, LSTMCell, RNNCell
from zoo.cells import FusedRNN

FUSED_CELLS = {
    "rnn_tanh": lambda u, **kw: RNNCell(u, **kw),
    "rnn_relu": lambda u, **kw: RNNCell(u, activation="relu", **kw),
    "lstm": lambda u, **kw: LSTMCell(u, **kw),
    "cifg": lambda u, **kw: CIFGCell(u, **kw),
    "gru": lambda u, **kw: GRUCell(u, **kw),
}


def _layers(name, units, fused_kwargs=None, **cell_kwargs):
    """The same cell (same seed, weights set later) in a fused and a plain layer."""
    make = FUSED_CELLS[name]
    kw = dict(return_sequences=True, return_state=True, **(fused_kwargs or {}))
    return (FusedRNN(make(units, seed=7, **cell_kwargs), **kw),
            FusedRNN(make(units, seed=7, **cell_kwargs), fused=False, **kw))


def _value_and_grads(layer, x, states, targets, training):
    with tf.GradientTape() as tape:
        tape.watch([x] + states)
        outs = layer(x, initial_state=states, training=training)
        # Every output counts: the sequence and each final state (h_T, and c_T for LSTMs).
        loss = sum(tf.reduce_sum(o * t) for o, t in zip(outs, targets))
    return outs, tape.gradient(loss, [x] + states + [w.value for w in layer.trainable_weights])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(FUSED_CELLS))
def test_explicit_bptt_gradient_equals_autodiff_through_the_loop(name, seed):
    rng = np.random.default_rng(seed)
    batch, time, dim, units = (int(v) for v in rng.integers([1, 1, 1, 1], [6, 13, 9, 10]))
    fused, plain = _layers(name, units)
    x = tf.constant(rng.normal(size=(batch, time, dim)).astype("float32"))
    n_states = 2 if name in ("lstm", "cifg") else 1
    states = [tf.constant(rng.normal(scale=0.5, size=(batch, units)).astype("float32"))
              for _ in range(n_states)]
    fused(x, initial_state=states)
    plain(x, initial_state=states)
    weights = [rng.normal(scale=0.5, size=w.shape).astype("float32")
               for w in plain.get_weights()]
    fused.set_weights(weights)
    plain.set_weights(weights)
    targets = [tf.constant(rng.normal(size=o.shape).astype("float32"))
               for o in plain(x, initial_state=states)]
    fused(x, initial_state=states)  # both layers have now drawn the same number of masks
    outs_f, grads_f = _value_and_grads(fused, x, states, targets, training=False)
    outs_p, grads_p = _value_and_grads(plain, x, states, targets, training=False)
    for a, b in zip(outs_f, outs_p):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert len(grads_f) == len(grads_p) == 1 + n_states + len(weights)
    for i, (a, b) in enumerate(zip(grads_f, grads_p)):
        assert a is not None, f"no gradient for input {i}"
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4, err_msg=f"gradient {i}")
    assert max(float(np.abs(g).max()) for g in grads_p) > 1e-2  # not trivially zero


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh"])
def test_explicit_bptt_with_dropout_masks_equals_autodiff(name):
    """Input and recurrent dropout (one mask per sequence) in training: both layers draw
    the same masks from the same seed, so outputs and gradients must agree."""
    rng = np.random.default_rng(3)
    fused, plain = _layers(name, 6, dropout=0.3, recurrent_dropout=0.4)
    x = tf.constant(rng.normal(size=(4, 9, 5)).astype("float32"))
    states = [tf.zeros((4, 6))] * (2 if name == "lstm" else 1)
    fused(x)
    plain(x)
    plain.set_weights(fused.get_weights())
    targets = [tf.constant(rng.normal(size=o.shape).astype("float32"))
               for o in fused(x, initial_state=states)]
    plain(x, initial_state=states)
    outs_f, grads_f = _value_and_grads(fused, x, states, targets, training=True)
    outs_p, grads_p = _value_and_grads(plain, x, states, targets, training=True)
    for a, b in zip(outs_f, outs_p):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for a, b in zip(grads_f, grads_p):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)
    # Dropout was on: the training output differs from inference.
    assert np.abs(np.asarray(outs_f[0]) - np.asarray(fused(x, initial_state=states)[0])).max() \
        > 1e-3


def _keras_loop_refused(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("took keras.layers.RNN's step-by-step loop")
    monkeypatch.setattr(keras.layers.RNN, "inner_loop", refuse)


@pytest.mark.parametrize("name", sorted(FUSED_CELLS))
def test_supported_cells_take_the_fused_path_in_a_graph(name, monkeypatch):
    layer = FusedRNN(FUSED_CELLS[name](4), return_sequences=True, stateful=True)
    x = np.ones((2, 5, 3), "float32")
    _keras_loop_refused(monkeypatch)

    @tf.function
    def train_like(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x, training=True))
        return tape.gradient(loss, layer.trainable_weights)

    assert all(g is not None for g in train_like(x))


@pytest.mark.parametrize("make, layer_kwargs, call_kwargs", [
    (lambda: LSTMCell(4), dict(go_backwards=True), {}),
    (lambda: LSTMCell(4), {}, dict(mask=np.array([[1, 1, 0, 0, 0]] * 2, bool))),
    (lambda: GRUCell(4, reset_after=False), {}, {}),
    (lambda: LSTMCell(4, activation="relu"), {}, {}),
    (lambda: keras.layers.LSTMCell(4), {}, {}),
], ids=["go_backwards", "mask", "classic_gru", "other_activation", "keras_cell"])
def test_other_cases_fall_back_to_the_keras_loop(make, layer_kwargs, call_kwargs,
                                                 monkeypatch):
    layer = FusedRNN(make(), return_sequences=True, **layer_kwargs)
    x = np.ones((2, 5, 3), "float32")
    layer(x, **call_kwargs)  # builds; then the loop is refused and must be asked for
    _keras_loop_refused(monkeypatch)
    with pytest.raises(AssertionError, match="step-by-step loop"):
        layer(x, **call_kwargs)


def test_unknown_time_steps_fall_back_and_fused_false_round_trips(monkeypatch):
    layer = FusedRNN(LSTMCell(4), fused=False)
    assert FusedRNN.from_config(layer.get_config()).fused is False
    fused = FusedRNN(LSTMCell(4))
    fused(np.ones((2, 5, 3), "float32"))
    _keras_loop_refused(monkeypatch)
    spec = tf.TensorSpec((None, None, 3), tf.float32)
    with pytest.raises(AssertionError, match="step-by-step loop"):
        tf.function(fused, input_signature=[spec]).get_concrete_function()


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "cifg"])
def test_the_recurrent_language_model_trains_on_the_fused_path(cell, monkeypatch):
    from zoo import RecurrentLanguageModel

    model = RecurrentLanguageModel(30, cell=cell, embedding_dim=6, units=5, num_layers=2,
                                   recurrent_dropout=0.2, stateful=True)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.build((4, 7))
    _keras_loop_refused(monkeypatch)
    ids = np.random.default_rng(0).integers(1, 30, (4, 8)).astype("int32")
    first = model.train_on_batch(ids[:, :-1], ids[:, 1:], return_dict=True)["loss"]
    assert np.isfinite(first) and first == pytest.approx(7 * np.log(30), rel=0.1)
