"""Keras's own cell contract, checked on the zoo cells.

Two parts:

1. The constructor contract of ``keras.layers.SimpleRNNCell``, ``LSTMCell`` and ``GRUCell``
   (Keras 3.15): every argument is accepted with Keras's meaning, checked against the
   built-in cells (same weights in, same numbers out; same losses; same constraint effect).
2. The behaviours that Keras's ``keras/src/layers/rnn/{simple_rnn,lstm,gru,rnn,
   stacked_rnn_cells,bidirectional}_test.py`` check, re-told for the zoo cells inside
   ``keras.layers.RNN``. Where Keras hard-codes expected numbers (constant initializers
   0.01 / 0.02 / 0.03, or "ones"), the same initializers are used here and Keras's numbers
   are kept. Keras's ``OneStateRNNCell`` test helper (linear, no bias, "ones" weights) is
   ``RNNCell(units, activation="linear", use_bias=False, kernel_initializer="ones",
   recurrent_initializer="ones")``; its ``TwoStatesRNNCell`` has no zoo counterpart, so the
   two-state cases run on ``LSTMCell`` against ``keras.layers.LSTMCell`` instead.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import CIFGCell, GRUCell, LSTMCell, RNNCell

KERAS_OF = {RNNCell: keras.layers.SimpleRNNCell, LSTMCell: keras.layers.LSTMCell,
            GRUCell: keras.layers.GRUCell}
ZOO_CELLS = [RNNCell, LSTMCell, GRUCell]
ALL_CELLS = ZOO_CELLS + [CIFGCell]
TOL = dict(atol=1e-5, rtol=1e-5)


def _seq(*shape):
    """Keras's test inputs: 0, 1, 2, ... laid out in ``shape``, float32."""
    return np.arange(int(np.prod(shape)), dtype="float32").reshape(shape)


def _same(values, units):
    """Keras's expected outputs whose every unit holds the same value: repeat over units."""
    return np.repeat(np.asarray(values, "float32")[..., None], units, axis=-1)


def _const(**extra):
    return dict(kernel_initializer=keras.initializers.Constant(0.01),
                recurrent_initializer=keras.initializers.Constant(0.02),
                bias_initializer=keras.initializers.Constant(0.03), **extra)


def _linear_ones_cell(units):
    """Keras's OneStateRNNCell: h_t = x_t @ 1 + h_{t-1} @ 1, no bias, no activation."""
    return RNNCell(units, activation="linear", use_bias=False, kernel_initializer="ones",
                   recurrent_initializer="ones")


def _copy_run(ours, theirs, x, states=None, training=None, **layer_kwargs):
    """Run both cells in RNN layers on x with ours' weights copied from theirs."""
    a = keras.layers.RNN(ours, return_sequences=True, return_state=True, **layer_kwargs)
    b = keras.layers.RNN(theirs, return_sequences=True, return_state=True, **layer_kwargs)
    a(x, initial_state=states)
    b(x, initial_state=states)
    rng = np.random.default_rng(0)
    b.set_weights([rng.normal(scale=0.4, size=w.shape).astype("float32")
                   for w in b.get_weights()])
    assert [w.shape for w in a.get_weights()] == [w.shape for w in b.get_weights()]
    a.set_weights(b.get_weights())
    return (a(x, initial_state=states, training=training),
            b(x, initial_state=states, training=training), a, b)


def _x(batch=3, time=6, dim=5, seed=1):
    return np.random.default_rng(seed).normal(size=(batch, time, dim)).astype("float32")


# --------------------------------------------------------------------------------------
# Part 1: the constructor contract
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", ZOO_CELLS)
def test_every_keras_constructor_argument_is_a_zoo_argument(cls):
    keras_params = set(inspect.signature(KERAS_OF[cls].__init__).parameters) - {"self"}
    ours = set(inspect.signature(cls.__init__).parameters) - {"self"}
    # The zoo's subclasses pass most arguments down by keyword; ask a real construction.
    defaults = {name: p.default for name, p in
                inspect.signature(KERAS_OF[cls].__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    cell = cls(4, **defaults)
    for name in keras_params - {"units", "kwargs"}:
        assert name in cell.get_config(), name
    assert "units" in ours


@pytest.mark.parametrize("cls", ZOO_CELLS)
def test_a_keras_cell_config_builds_an_equal_zoo_cell(cls):
    theirs = KERAS_OF[cls](5, activation="relu", use_bias=False, kernel_regularizer="l2",
                           recurrent_regularizer="l1", bias_regularizer=keras.regularizers.L1L2(0.1, 0.2),
                           kernel_constraint="non_neg", recurrent_constraint="unit_norm",
                           bias_constraint=keras.constraints.MaxNorm(2.0), dropout=0.25,
                           recurrent_dropout=0.5, seed=7, name="c")
    config = theirs.get_config()
    ours = cls.from_config(config)
    mine = ours.get_config()
    for key, value in config.items():
        assert mine[key] == value, key
    again = cls.from_config(mine)
    assert again.get_config() == mine


@pytest.mark.parametrize("cls", ALL_CELLS)
def test_config_round_trips_every_argument_with_non_default_values(cls):
    kwargs = dict(activation="relu", use_bias=False, kernel_initializer="ones",
                  recurrent_initializer="identity", bias_initializer="ones",
                  kernel_regularizer=keras.regularizers.L2(0.5),
                  recurrent_regularizer="l1", bias_regularizer="l2",
                  kernel_constraint="non_neg", recurrent_constraint="unit_norm",
                  bias_constraint=keras.constraints.MaxNorm(3.0), dropout=0.1,
                  recurrent_dropout=0.2, seed=11, name="cell", dtype="float32")
    if cls is not RNNCell:
        kwargs.update(recurrent_activation="hard_sigmoid", implementation=1)
    if cls in (LSTMCell, CIFGCell):
        kwargs["unit_forget_bias"] = False
    if cls is GRUCell:
        kwargs["reset_after"] = False
    config = cls(6, **kwargs).get_config()
    signature = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
    assert signature <= set(config)
    clone = cls.from_config(config)
    assert clone.get_config() == config
    assert keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(cls(6, **kwargs))).get_config() == config


@pytest.mark.parametrize("cls", ZOO_CELLS)
def test_regularizers_reach_the_losses_like_keras(cls):
    regs = dict(kernel_regularizer="l2", recurrent_regularizer=keras.regularizers.L1(0.1),
                bias_regularizer=keras.regularizers.L2(0.3), bias_initializer="ones")
    x = _x()
    ours, theirs = keras.layers.RNN(cls(4, **regs)), keras.layers.RNN(KERAS_OF[cls](4, **regs))
    ours(x)
    theirs(x)
    ours.set_weights(theirs.get_weights())
    assert len(ours.losses) == len(theirs.losses) == 3
    np.testing.assert_allclose(sorted(float(v) for v in ours.losses),
                               sorted(float(v) for v in theirs.losses), rtol=1e-6)
    inp = keras.Input((6, 5))
    model = keras.Model(inp, keras.layers.RNN(cls(4, **regs))(inp))
    assert len(model.losses) == 3


@pytest.mark.parametrize("cls", ZOO_CELLS)
def test_constraints_apply_after_each_update_like_keras(cls):
    cons = dict(kernel_constraint="non_neg", recurrent_constraint=keras.constraints.MaxNorm(0.5),
                bias_constraint=keras.constraints.NonNeg())
    x, y = _x(seed=2), np.random.default_rng(3).normal(size=(3, 4)).astype("float32")
    models = []
    for make in (cls, KERAS_OF[cls]):
        model = keras.Sequential([keras.Input((6, 5)), keras.layers.RNN(make(4, **cons))])
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        models.append(model)
    ours, theirs = models
    rng = np.random.default_rng(4)
    theirs.set_weights([rng.normal(size=w.shape).astype("float32")
                        for w in theirs.get_weights()])  # some negative, some large
    ours.set_weights(theirs.get_weights())
    for _ in range(2):
        ours.train_on_batch(x, y)
        theirs.train_on_batch(x, y)
    kernel, recurrent, bias = ours.get_weights()
    assert kernel.min() >= 0 and bias.min() >= 0
    assert np.sqrt((recurrent ** 2).sum(axis=0)).max() <= 0.5 + 1e-5
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("cls", ZOO_CELLS)
def test_use_bias_false_has_keras_weight_list_and_numbers(cls):
    states = [np.full((3, 4), 0.3, "float32")] * (2 if cls is LSTMCell else 1)
    out_a, out_b, a, _ = _copy_run(cls(4, use_bias=False),
                                   KERAS_OF[cls](4, use_bias=False), _x(), states)
    assert [w.name for w in a.cell.weights] == ["kernel", "recurrent_kernel"]
    assert a.cell.bias is None
    for p, q in zip(out_a, out_b):
        np.testing.assert_allclose(p, q, **TOL)


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell])
@pytest.mark.parametrize("activation, recurrent_activation",
                         [("relu", "hard_sigmoid"), ("linear", "tanh"), (None, None)])
def test_activations_of_lstm_and_gru_match_keras(cls, activation, recurrent_activation):
    kw = dict(activation=activation, recurrent_activation=recurrent_activation)
    states = [np.full((3, 4), 0.2, "float32")] * (2 if cls is LSTMCell else 1)
    out_a, out_b, _, _ = _copy_run(cls(4, **kw), KERAS_OF[cls](4, **kw), _x(time=4), states)
    for p, q in zip(out_a, out_b):
        np.testing.assert_allclose(p, q, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("direction", ["keras_to_zoo", "zoo_to_keras"])
def test_classic_gru_reset_before_matches_keras(use_bias, direction):
    x = _x(time=8)
    h0 = np.random.default_rng(6).normal(scale=0.5, size=(3, 4)).astype("float32")
    ours = keras.layers.RNN(GRUCell(4, reset_after=False, use_bias=use_bias),
                            return_sequences=True)
    theirs = keras.layers.RNN(keras.layers.GRUCell(4, reset_after=False, use_bias=use_bias),
                              return_sequences=True)
    ours(x, initial_state=[h0])
    theirs(x, initial_state=[h0])
    if use_bias:
        assert ours.cell.bias.shape == (12,)
    source, target = (theirs, ours) if direction == "keras_to_zoo" else (ours, theirs)
    rng = np.random.default_rng(7)
    source.set_weights([rng.normal(scale=0.4, size=w.shape).astype("float32")
                        for w in source.get_weights()])
    target.set_weights(source.get_weights())
    np.testing.assert_allclose(ours(x, initial_state=[h0]), theirs(x, initial_state=[h0]),
                               **TOL)
    # and it is a different function from the reset-after GRU on the same kernels
    after = keras.layers.RNN(GRUCell(4, use_bias=False), return_sequences=True)
    after(x)
    after.set_weights(ours.get_weights()[:2])
    if not use_bias:
        assert np.abs(np.asarray(after(x, initial_state=[h0]))
                      - np.asarray(ours(x, initial_state=[h0]))).max() > 1e-3


def test_classic_gru_gradients_match_keras():
    x = tf.constant(_x(time=5))
    ours = keras.layers.RNN(GRUCell(4, reset_after=False), return_sequences=True)
    theirs = keras.layers.RNN(keras.layers.GRUCell(4, reset_after=False), return_sequences=True)
    ours(x)
    theirs(x)
    rng = np.random.default_rng(8)
    theirs.set_weights([rng.normal(scale=0.4, size=w.shape).astype("float32")
                        for w in theirs.get_weights()])
    ours.set_weights(theirs.get_weights())

    def grads(layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(layer(x) ** 2)
        return tape.gradient(loss, [x] + [w.value for w in layer.trainable_weights])

    for a, b in zip(grads(ours), grads(theirs)):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("cls", [LSTMCell, GRUCell, CIFGCell])
@pytest.mark.parametrize("implementation", [0, 1, 2])
def test_implementation_is_accepted_and_changes_nothing(cls, implementation):
    x = _x(time=4)
    plain = keras.layers.RNN(cls(4, seed=1))
    other = keras.layers.RNN(cls(4, seed=1, implementation=implementation))
    plain(x)
    other(x)
    other.set_weights(plain.get_weights())
    np.testing.assert_array_equal(other(x), plain(x))
    assert other.cell.get_config()["implementation"] == implementation


def test_a_keras_gru_config_with_legacy_implementation_zero_loads():
    """Keras's test_legacy_implementation_argument: a config carrying
    ``"implementation": 0`` loads and computes the usual numbers."""
    config = keras.layers.GRUCell(3, **_const()).get_config()
    config["implementation"] = 0
    layer = keras.layers.RNN(GRUCell.from_config(config))
    np.testing.assert_allclose(layer(_seq(3, 6, 4)),
                               _same([0.5217289, 0.6371659, 0.39384964], 3), **TOL)
    rnn_config = layer.get_config()
    rnn_config["cell"]["config"]["implementation"] = 0
    again = keras.layers.RNN.from_config(rnn_config)
    np.testing.assert_allclose(again(_seq(3, 6, 4)),
                               _same([0.5217289, 0.6371659, 0.39384964], 3), **TOL)


@pytest.mark.parametrize("cls", ZOO_CELLS)
@pytest.mark.parametrize("rate, expected", [(-0.5, 0.0), (1.5, 1.0), (1.0, 1.0), (0.3, 0.3)])
def test_rates_are_clipped_into_zero_one_like_keras(cls, rate, expected):
    ours = cls(3, dropout=rate, recurrent_dropout=rate)
    theirs = KERAS_OF[cls](3, dropout=rate, recurrent_dropout=rate)
    assert (ours.dropout, ours.recurrent_dropout) == (theirs.dropout, theirs.recurrent_dropout)
    assert ours.dropout == pytest.approx(expected)


@pytest.mark.parametrize("cls", ZOO_CELLS)
def test_a_rate_of_one_behaves_as_in_the_keras_cell(cls):
    """Keras 3.15: SimpleRNNCell drops every unit at rate 1.0; LSTMCell and GRUCell only
    drop for 0 < rate < 1, so at 1.0 they drop nothing. The zoo does the same."""
    n = 2 if cls is LSTMCell else 1
    states = [np.full((3, 4), 0.5, "float32")] * n
    out_a, out_b, a, _ = _copy_run(cls(4, dropout=1.0, recurrent_dropout=1.0, seed=1),
                                   KERAS_OF[cls](4, dropout=1.0, recurrent_dropout=1.0, seed=1),
                                   _x(), states, training=True)
    for p, q in zip(out_a, out_b):
        np.testing.assert_allclose(p, q, **TOL)
    if cls is RNNCell:  # x_t and h_{t-1} both dropped: h_t = tanh(bias) at every step
        expected = np.broadcast_to(np.tanh(a.cell.bias.numpy()), (3, 6, 4))
        np.testing.assert_allclose(out_a[0], expected, **TOL)
    else:  # nothing dropped: the inference output
        np.testing.assert_allclose(out_a[0], a(_x(), initial_state=states)[0], **TOL)


@pytest.mark.parametrize("cls", ALL_CELLS)
def test_integer_like_units_are_accepted(cls):
    cell = cls(np.int64(4))
    assert type(cell.units) is int and cell.units == 4
    assert keras.layers.RNN(cell)(_x()).shape == (3, 4)
    assert type(cell.get_config()["units"]) is int
    KERAS_OF.get(cls, keras.layers.LSTMCell)(np.int64(4))  # Keras accepts it too


@pytest.mark.parametrize("cls", [RNNCell, GRUCell])
def test_a_bare_tensor_state_comes_back_bare_like_keras(cls):
    x = np.ones((2, 5), "float32")
    h = np.full((2, 3), 0.1, "float32")
    ours, theirs = cls(3), KERAS_OF[cls](3)
    for states in (h, [h], (h,)):
        _, new_ours = ours(x, states)
        _, new_theirs = theirs(x, states)
        assert isinstance(new_ours, list) == isinstance(new_theirs, list)
        assert tf.is_tensor(new_ours) == tf.is_tensor(new_theirs)


def test_cifg_takes_the_lstm_arguments():
    lstm_params = set(inspect.signature(keras.layers.LSTMCell.__init__).parameters)
    config = CIFGCell(4).get_config()
    assert lstm_params - {"self", "kwargs", "units"} <= set(config)
    x = _x()
    cell = CIFGCell(4, use_bias=False, kernel_regularizer="l2", recurrent_regularizer="l2",
                    kernel_constraint="non_neg", activation="relu",
                    recurrent_activation="hard_sigmoid")
    layer = keras.layers.RNN(cell)
    layer(x)
    assert [w.name for w in cell.weights] == ["kernel", "recurrent_kernel"]
    assert len(layer.losses) == 2


def test_cifg_with_other_activations_equals_a_keras_lstm_with_a_coupled_forget_gate():
    """sigmoid(-z) = 1 - sigmoid(z), so an LSTM whose forget weights are minus the input
    weights is a CIFG; with a relu activation on both sides the two must still agree."""
    x = _x(time=5)
    states = [np.full((3, 4), 0.2, "float32")] * 2
    ours = keras.layers.RNN(CIFGCell(4, activation="relu"), return_sequences=True)
    theirs = keras.layers.RNN(keras.layers.LSTMCell(4, activation="relu"),
                              return_sequences=True)
    ours(x, initial_state=states)
    theirs(x, initial_state=states)
    rng = np.random.default_rng(9)
    ours.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32")
                      for w in ours.get_weights()])

    def lstm_layout(w):
        i, g, o = np.split(w, 3, axis=-1)
        return np.concatenate([i, -i, g, o], axis=-1)

    theirs.set_weights([lstm_layout(w) for w in ours.get_weights()])
    np.testing.assert_allclose(ours(x, initial_state=states), theirs(x, initial_state=states),
                               **TOL)
