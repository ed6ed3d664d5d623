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

import copy
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
# Every test runs with keras.layers.RNN and with zoo.cells.FusedRNN (tests/zoo/conftest.py).
pytestmark = pytest.mark.usefixtures("rnn_layer")


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
    """Build the zoo cell with every keyword of the Keras cell's signature (at Keras's
    defaults); each must be accepted and come back in get_config()."""
    params = inspect.signature(KERAS_OF[cls].__init__).parameters
    defaults = {name: p.default for name, p in params.items()
                if p.default is not inspect.Parameter.empty}
    config = cls(4, **defaults).get_config()
    assert set(defaults) <= set(config)
    assert set(params) - {"self", "kwargs"} <= set(config)


@pytest.mark.parametrize("cls, args", [(RNNCell, (4, "relu", False)),
                                       (LSTMCell, (4, "relu", "hard_sigmoid", False)),
                                       (GRUCell, (4, "relu", "hard_sigmoid", False))])
def test_leading_positional_arguments_mean_what_they_mean_in_keras(cls, args):
    ours, theirs = cls(*args).get_config(), KERAS_OF[cls](*args).get_config()
    for key in ("units", "activation", "recurrent_activation", "use_bias"):
        assert ours.get(key) == theirs.get(key), key


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


# --------------------------------------------------------------------------------------
# Part 2: Keras's layer tests, re-told for the zoo cells inside keras.layers.RNN
# --------------------------------------------------------------------------------------

def _rnn(cls, units, cell_kwargs=None, **layer_kwargs):
    """``keras.layers.RNN`` over a zoo cell with Keras's constant test initializers."""
    return keras.layers.RNN(cls(units, **_const(**(cell_kwargs or {}))), **layer_kwargs)


# From Keras's test_basics (run_layer_test): shapes, weight counts, losses, masking,
# a symbolic call, a training step and a config round trip.
BASICS = [
    (RNNCell, dict(dropout=0.5, recurrent_dropout=0.5), {}, (3, 3), 0),
    (RNNCell, dict(bias_regularizer="l1", kernel_regularizer="l2",
                   recurrent_regularizer="l2"), dict(return_sequences=True), (3, 2, 3), 3),
    (LSTMCell, dict(dropout=0.5), {}, (3, 3), 0),
    (LSTMCell, dict(dropout=0.5, recurrent_dropout=0.5), {}, (3, 3), 0),
    (LSTMCell, dict(bias_regularizer="l1", kernel_regularizer="l2",
                    recurrent_regularizer="l2"), dict(return_sequences=True), (3, 2, 3), 3),
    (GRUCell, dict(dropout=0.5), {}, (3, 3), 0),
    (GRUCell, dict(dropout=0.5, recurrent_dropout=0.5), {}, (3, 3), 0),
    (GRUCell, dict(bias_regularizer="l1", kernel_regularizer="l2",
                   recurrent_regularizer="l2"), dict(return_sequences=True), (3, 2, 3), 3),
]


@pytest.mark.parametrize("cls, cell_kwargs, layer_kwargs, out_shape, n_losses", BASICS)
def test_basics(cls, cell_kwargs, layer_kwargs, out_shape, n_losses):
    x = np.random.default_rng(0).normal(size=(3, 2, 4)).astype("float32")
    layer = keras.layers.RNN(cls(3, **cell_kwargs), **layer_kwargs)
    assert layer.supports_masking
    assert layer(x, training=True).shape == out_shape
    assert len(layer.trainable_weights) == 3 and not layer.non_trainable_weights
    assert len(layer.non_trainable_variables) == 1  # the dropout seed generator's state
    assert len(layer.losses) == n_losses
    assert layer(x, training=True, mask=np.ones((3, 2), bool)).shape == out_shape
    symbolic = keras.layers.RNN(cls(3, **cell_kwargs), **layer_kwargs)(keras.Input((2, 4)))
    assert tuple(symbolic.shape) == (None,) + out_shape[1:]
    clone = keras.layers.RNN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    model = keras.Sequential([keras.Input((2, 4)), clone])
    model.compile(optimizer="sgd", loss="mse")
    loss = model.train_on_batch(x, np.zeros(out_shape, "float32"))
    assert np.isfinite(loss)


# Keras's test_correctness / test_statefulness / test_pass_initial_state / test_masking
# numbers. Each row: cell, units, input, cell kwargs, layer kwargs, initial state, mask,
# expected output (the value shared by every unit, per batch row or per row and step,
# unless ``full`` gives the whole array).
S234, S243, S364 = _seq(2, 3, 4), _seq(2, 4, 3), _seq(3, 6, 4)
MASK_A = np.array([[True, True, False, True], [True, False, False, True]])
MASK_B = np.array([[True, True, True, False], [True, True, False, False]])
MASK_B_BACK = np.array([[False, True, True, True], [False, False, True, True]])
H0_4 = _seq(2, 4)
H0_2 = _seq(2, 2)

SIMPLE_RNN_SEQ_MASKED = [[0.0599281, 0.15122814, 0.15122814, 0.32394567],
                         [0.3969304, 0.3969304, 0.3969304, 0.608085]]
LSTM_SEQ_MASKED = [[0.01588910, 0.05552048, 0.11755939, 0.11755939],
                   [0.14185596, 0.28556206, 0.28556206, 0.28556206]]
GRU_SEQ_MASKED = [[0.03606692, 0.09497581, 0.09497581, 0.19393763],
                  [0.16051409, 0.16051409, 0.16051409, 0.30818558]]


def _zero_where(values, mask):
    return [[v if m else 0.0 for v, m in zip(row, mrow)] for row, mrow in zip(values, mask)]


CASES = {
    # simple_rnn_test.py
    "rnn/plain": (RNNCell, 4, S234, {}, {}, None, None, [0.405432, 0.73605347]),
    "rnn/unroll": (RNNCell, 4, S234, {}, dict(unroll=True), None, None,
                   [0.405432, 0.73605347]),
    "rnn/backwards": (RNNCell, 4, S234, {}, dict(go_backwards=True), None, None,
                      [0.11144729, 0.5528889]),
    "rnn/backwards_unroll": (RNNCell, 4, S234, {}, dict(go_backwards=True, unroll=True), None,
                             None, [0.11144729, 0.5528889]),
    "rnn/initial_state": (RNNCell, 4, S243, {}, {}, H0_4, None, [0.33621645, 0.6262637]),
    "rnn/initial_state_backwards": (RNNCell, 4, S243, {}, dict(go_backwards=True), H0_4, None,
                                    [0.07344437, 0.43043602]),
    "rnn/mask_unroll": (RNNCell, 4, S243, {}, dict(unroll=True), None, MASK_A,
                        [0.32951632, 0.61799484]),
    "rnn/mask_sequences": (RNNCell, 2, S243, {}, dict(return_sequences=True), None, MASK_A,
                           SIMPLE_RNN_SEQ_MASKED),
    "rnn/mask_zero_output": (RNNCell, 2, S243, {},
                             dict(return_sequences=True, zero_output_for_mask=True), None,
                             MASK_A, _zero_where(SIMPLE_RNN_SEQ_MASKED, MASK_A)),
    "rnn/mask_backwards": (RNNCell, 4, S243, {}, dict(go_backwards=True), None, MASK_A,
                           [0.07376196, 0.43645123]),
    # lstm_test.py (test_correctness runs for implementation 1 and 2: see below)
    "lstm/initial_state": (LSTMCell, 2, S243, {}, {}, [H0_2, H0_2], None,
                           None, [[0.20574439, 0.3558822], [0.64930826, 0.66276]]),
    "lstm/initial_state_backwards": (LSTMCell, 2, S243, {}, dict(go_backwards=True),
                                     [H0_2, H0_2], None, None,
                                     [[0.13281618, 0.2790356], [0.5839337, 0.5992567]]),
    "lstm/mask_unroll": (LSTMCell, 2, S243, {}, dict(unroll=True), None, MASK_B,
                         [0.11755939, 0.28556206]),
    "lstm/mask_sequences": (LSTMCell, 2, S243, {}, dict(return_sequences=True), None, MASK_B,
                            LSTM_SEQ_MASKED),
    "lstm/mask_zero_output": (LSTMCell, 2, S243, {},
                              dict(return_sequences=True, zero_output_for_mask=True), None,
                              MASK_B, _zero_where(LSTM_SEQ_MASKED, MASK_B)),
    "lstm/mask_backwards": (LSTMCell, 2, S243, {}, dict(go_backwards=True), None, MASK_B_BACK,
                            [0.15341201, 0.3844719]),
    # gru_test.py
    "gru/plain": (GRUCell, 3, S364, {}, {}, None, None, [0.5217289, 0.6371659, 0.39384964]),
    "gru/backwards": (GRUCell, 3, S364, {}, dict(go_backwards=True), None, None,
                      [0.24406259, 0.611516, 0.3928808]),
    "gru/unroll": (GRUCell, 3, S364, {}, dict(unroll=True), None, None,
                   [0.5217289, 0.6371659, 0.39384964]),
    "gru/reset_before": (GRUCell, 3, S364, dict(reset_after=False), {}, None, None,
                         [0.51447755, 0.6426879, 0.40208298]),
    "gru/no_bias": (GRUCell, 3, S364, dict(use_bias=False), {}, None, None,
                    [0.49988455, 0.64701194, 0.4103359]),
    "gru/initial_state": (GRUCell, 2, S243, {}, {}, H0_2, None, None,
                          [[0.23774096, 0.33508456], [0.83659905, 1.0227708]]),
    "gru/initial_state_backwards": (GRUCell, 2, S243, {}, dict(go_backwards=True), H0_2, None,
                                    None, [[0.13486053, 0.23261218], [0.78257304, 0.9691353]]),
    "gru/mask_unroll": (GRUCell, 2, S243, {}, dict(unroll=True), None, MASK_A,
                        [0.19393763, 0.30818558]),
    "gru/mask_sequences": (GRUCell, 2, S243, {}, dict(return_sequences=True), None, MASK_A,
                           GRU_SEQ_MASKED),
    "gru/mask_zero_output": (GRUCell, 2, S243, {},
                             dict(return_sequences=True, zero_output_for_mask=True), None,
                             MASK_A, _zero_where(GRU_SEQ_MASKED, MASK_A)),
    "gru/mask_backwards": (GRUCell, 2, S243, {}, dict(go_backwards=True), None, MASK_A,
                           [0.11669192, 0.28380975]),
}
for _impl in (1, 2):
    for _name, _kw, _lkw, _expected in [
            ("plain", {}, {}, [0.6288687, 0.86899155, 0.9460773]),
            ("backwards", {}, dict(go_backwards=True), [0.35622165, 0.74789524, 0.8872726]),
            ("unroll", {}, dict(unroll=True), [0.6288687, 0.86899155, 0.9460773]),
            ("no_forget_bias", dict(unit_forget_bias=False), {},
             [0.57019705, 0.8661914, 0.9459622]),
            ("no_bias", dict(use_bias=False), {}, [0.54986924, 0.86226785, 0.9443936])]:
        CASES[f"lstm/{_name}/implementation{_impl}"] = (
            LSTMCell, 3, S364, dict(_kw, implementation=_impl), _lkw, None, None, _expected)


def _case(name):
    cls, units, x, cell_kwargs, layer_kwargs, state, mask, *expected = CASES[name]
    same, full = (expected + [None])[:2]
    want = np.asarray(full, "float32") if same is None else _same(same, units)
    return cls, units, x, cell_kwargs, layer_kwargs, state, mask, want


@pytest.mark.parametrize("name", sorted(CASES))
def test_keras_numbers(name):
    cls, units, x, cell_kwargs, layer_kwargs, state, mask, want = _case(name)
    layer = _rnn(cls, units, cell_kwargs, **layer_kwargs)
    np.testing.assert_allclose(layer(x, initial_state=state, mask=mask), want, **TOL)


@pytest.mark.parametrize("cls, want", [
    (RNNCell, [0.40559256, 0.7361247]),
    (LSTMCell, [0.3124785, 0.6863672]),
    (GRUCell, [0.29542392, 0.5885018]),
])
def test_statefulness(cls, want):
    """Keras's test_statefulness: a second call starts from the first call's end state;
    reset_state() starts over."""
    layer = _rnn(cls, 4, stateful=True)
    for _ in range(2):
        layer(S234)
        np.testing.assert_allclose(layer(S234), _same(want, 4), **TOL)
        layer.reset_state()


@pytest.mark.parametrize("go_backwards, want", [
    (False, [[0.23774096, 0.33508456], [0.83659905, 1.0227708]]),
    (True, [[0.13486053, 0.23261218], [0.78257304, 0.9691353]]),
])
def test_gru_return_state(go_backwards, want):
    layer = _rnn(GRUCell, 2, return_state=True, go_backwards=go_backwards)
    output, state = layer(S243, initial_state=H0_2)
    np.testing.assert_allclose(output, want, **TOL)
    np.testing.assert_allclose(state, output, **TOL)


def test_gru_stateful_with_a_symbolic_batch_size():
    layer = keras.layers.RNN(GRUCell(5), stateful=True)
    x = np.ones((2, 10, 10), "float32")
    layer(x, training=True)

    @tf.function(input_signature=[tf.TensorSpec(shape=(None, 10, 10), dtype=tf.float32)])
    def run(inputs):
        return layer(inputs, training=True)

    assert run(x).shape == (2, 5)


# rnn_test.py, with Keras's OneStateRNNCell = the linear, bias-free, all-ones RNNCell.

@pytest.mark.parametrize("return_sequences, return_state", [(False, False), (True, False),
                                                            (False, True), (True, True)])
def test_one_state_forward_pass_and_output_shapes(return_sequences, return_state):
    layer = keras.layers.RNN(_linear_ones_cell(2), return_sequences=return_sequences,
                             return_state=return_state)
    out = layer(np.ones((1, 2, 3), "float32"))
    seq_want = np.array([[[3.0, 3.0], [9.0, 9.0]]])
    want = seq_want if return_sequences else seq_want[:, -1]
    if return_state:
        out, state = out
        np.testing.assert_allclose(state, [[9.0, 9.0]])
    np.testing.assert_allclose(out, want)
    for shape in [(3, 4, 5), (None, None, 3)]:
        got = keras.layers.RNN(_linear_ones_cell(8), return_sequences=return_sequences,
                               return_state=return_state).compute_output_shape(shape)
        main = shape[:2] + (8,) if return_sequences else (shape[0], 8)
        assert got == ((main, (shape[0], 8)) if return_state else main)


def test_one_state_initial_state_statefulness_and_backwards():
    layer = keras.layers.RNN(_linear_ones_cell(2), return_state=True)
    out, state = layer(np.ones((2, 3, 2), "float32"), initial_state=np.ones((2, 2), "float32"))
    np.testing.assert_allclose(out, np.full((2, 2), 22.0))
    np.testing.assert_allclose(state, np.full((2, 2), 22.0))
    stateful = keras.layers.RNN(_linear_ones_cell(2), stateful=True)
    stateful(np.ones((1, 2, 3), "float32"))
    np.testing.assert_allclose(stateful(np.ones((1, 2, 3), "float32")), [[45.0, 45.0]])
    backwards = keras.layers.RNN(_linear_ones_cell(2), go_backwards=True)
    np.testing.assert_allclose(backwards(S234), _same([202.0, 538.0], 2), rtol=1e-6)
    stateful = keras.layers.RNN(_linear_ones_cell(2), stateful=True, return_state=True)
    stateful(S234)
    out, state = stateful(S234)
    np.testing.assert_allclose(out, _same([954.0, 3978.0], 2), rtol=1e-6)
    np.testing.assert_allclose(state, _same([954.0, 3978.0], 2), rtol=1e-6)


@pytest.mark.parametrize("unroll", [False, True])
def test_one_state_masking(unroll):
    seq = keras.layers.RNN(_linear_ones_cell(2), return_sequences=True, unroll=unroll)
    want = _same([[3.0, 18.0, 57.0, 57.0], [39.0, 126.0, 126.0, 126.0]], 2)
    np.testing.assert_allclose(seq(S243, mask=MASK_B), want, **TOL)
    last = keras.layers.RNN(_linear_ones_cell(2), unroll=unroll)
    np.testing.assert_allclose(last(S243, mask=MASK_B), want[:, -1], **TOL)


@pytest.mark.parametrize("return_sequences, return_state", [(False, False), (True, False),
                                                            (False, True), (True, True)])
def test_two_state_cell_forward_pass_initial_state_and_shapes(return_sequences, return_state):
    """Keras runs these on its TwoStatesRNNCell; here the two-state cell is LSTMCell,
    checked against keras.layers.LSTMCell with the same initializers."""
    x, h0 = _seq(2, 3, 2) / 10.0, [np.ones((2, 2), "float32")] * 2
    outs = [keras.layers.RNN(make(2, **_const()), return_sequences=return_sequences,
                             return_state=return_state)(x, initial_state=h0)
            for make in (LSTMCell, keras.layers.LSTMCell)]
    assert len(outs[0]) == (3 if return_state else 2)
    for a, b in zip(outs[0], outs[1]):
        np.testing.assert_allclose(a, b, **TOL)
    for shape in [(3, 4, 5), (None, None, 3)]:
        layer = keras.layers.RNN(LSTMCell(8), return_sequences=return_sequences,
                                 return_state=return_state)
        got = layer.compute_output_shape(shape)
        main = shape[:2] + (8,) if return_sequences else (shape[0], 8)
        assert got == ((main, (shape[0], 8), (shape[0], 8)) if return_state else main)


def test_two_state_cell_statefulness_matches_keras():
    outs = []
    for make in (LSTMCell, keras.layers.LSTMCell):
        layer = keras.layers.RNN(make(2, **_const()), stateful=True, return_state=True)
        layer(S234 / 10.0)
        outs.append(layer(S234 / 10.0))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, **TOL)


@pytest.mark.parametrize("cls", ALL_CELLS)
def test_serialization_of_the_rnn_layer(cls):
    layer = keras.layers.RNN(cls(2), return_sequences=False)
    config = keras.saving.serialize_keras_object(layer)
    clone = keras.saving.deserialize_keras_object(copy.deepcopy(config))  # it pops "cell"
    assert isinstance(clone.cell, cls)
    assert keras.saving.serialize_keras_object(clone) == config


def test_stateful_batch_size_mismatch_raises():
    inputs = keras.Input(shape=(5, 3), batch_size=4)
    model = keras.Model(inputs, keras.layers.RNN(LSTMCell(2), stateful=True)(inputs))
    model(np.random.default_rng(0).uniform(size=(4, 5, 3)).astype("float32"))
    with pytest.raises(ValueError, match="batch size"):
        model(np.random.default_rng(0).uniform(size=(1, 5, 3)).astype("float32"))


# stacked_rnn_cells_test.py

@pytest.mark.parametrize("cls", ZOO_CELLS)
def test_stacked_basics(cls):
    cells = [cls(n, dropout=0.1, recurrent_dropout=0.1) for n in (3, 4, 5)]
    layer = keras.layers.RNN(cells, return_sequences=True)
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype("float32")
    assert layer(x, training=True).shape == (2, 3, 5)
    assert len(layer.trainable_weights) == 9 and not layer.non_trainable_weights
    assert len(layer.non_trainable_variables) == 3  # one seed generator per cell
    clone = keras.layers.RNN.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_stacked_one_state_numbers():
    stack = lambda **kw: keras.layers.RNN([_linear_ones_cell(3), _linear_ones_cell(2)], **kw)
    seq_want = _same([[18.0, 156.0, 786.0], [162.0, 1020.0, 4386.0]], 2)
    np.testing.assert_allclose(stack()(S234), seq_want[:, -1])
    np.testing.assert_allclose(stack(return_sequences=True)(S234), seq_want)
    out, s1, s2 = stack(return_sequences=True, return_state=True)(S234)
    np.testing.assert_allclose(out, seq_want)
    # Keras's helper cell hands back bare states; the built-in SimpleRNNCell, like the zoo
    # cell, hands back a one-element list per cell.
    builtin = keras.layers.RNN([keras.layers.SimpleRNNCell(3), keras.layers.SimpleRNNCell(2)],
                               return_state=True)(S234)
    assert [type(s) for s in builtin[1:]] == [type(s1), type(s2)] == [list, list]
    np.testing.assert_allclose(s1[0], _same([158.0, 782.0], 3))
    np.testing.assert_allclose(s2[0], _same([786.0, 4386.0], 2))
    stateful = stack(stateful=True)
    stateful(S234)
    np.testing.assert_allclose(stateful(S234), _same([34092.0, 173196.0], 2))


def test_stacked_lstm_return_state_shapes():
    layer = keras.layers.RNN([LSTMCell(10), LSTMCell(10)], return_state=True)
    out = layer(np.zeros((2, 3, 5), "float32"))
    assert len(out) == 3 and out[0].shape == (2, 10)
    assert [s.shape for s in out[1]] == [(2, 10)] * 2 == [s.shape for s in out[2]]
    shape = layer.compute_output_shape((2, 3, 5))
    assert shape[0] == (2, 10) and list(shape[1]) == [(2, 10)] * 2 == list(shape[2])


def test_stacked_lstm_mask():
    cells = [LSTMCell(1, kernel_initializer="ones", recurrent_initializer="ones")
             for _ in range(2)]
    out = keras.layers.RNN(cells)(np.ones((2, 3, 4), "float32"),
                                  mask=np.array([[True, True, True], [True, True, False]]))
    np.testing.assert_allclose(out, [[0.7793], [0.5998]], atol=1e-4)


# bidirectional_test.py

@pytest.mark.parametrize("cls", ALL_CELLS)
@pytest.mark.parametrize("merge_mode, width", [("concat", 8), ("sum", 4)])
def test_bidirectional_basics(cls, merge_mode, width):
    x = np.random.default_rng(0).normal(size=(3, 2, 4)).astype("float32")
    kwargs = {} if merge_mode == "concat" else dict(
        backward_layer=keras.layers.RNN(cls(4), go_backwards=True))
    layer = keras.layers.Bidirectional(keras.layers.RNN(cls(4)), merge_mode=merge_mode,
                                       **kwargs)
    assert layer(x).shape == (3, width)
    assert len(layer.trainable_weights) == 6 and not layer.non_trainable_weights
    assert layer.supports_masking
    clone = keras.layers.Bidirectional.from_config(layer.get_config())
    assert clone(x).shape == (3, width)


def test_bidirectional_simple_rnn_numbers():
    forward = _rnn(RNNCell, 2)
    fwd, bwd = [0.39687276, 0.7237238], [0.10004295, 0.53391594]
    out = keras.layers.Bidirectional(forward)(S234)
    np.testing.assert_allclose(out, np.concatenate([_same(fwd, 2), _same(bwd, 2)], -1), **TOL)
    out = keras.layers.Bidirectional(forward, merge_mode="ave")(S234)
    np.testing.assert_allclose(out, _same([0.24845785, 0.6288199], 2), **TOL)
    one, two = keras.layers.Bidirectional(forward, merge_mode=None)(S234)
    np.testing.assert_allclose(one, _same(fwd, 2), **TOL)
    np.testing.assert_allclose(two, _same(bwd, 2), **TOL)
    backward = keras.layers.RNN(
        RNNCell(2, kernel_initializer=keras.initializers.Constant(0.03),
                recurrent_initializer=keras.initializers.Constant(0.02),
                bias_initializer=keras.initializers.Constant(0.01)), go_backwards=True)
    out = keras.layers.Bidirectional(forward, backward_layer=backward, merge_mode="mul")(S234)
    np.testing.assert_allclose(out, _same([0.08374989, 0.6740834], 2), **TOL)


def test_bidirectional_gru_sum_of_sequences():
    layer = keras.layers.Bidirectional(_rnn(GRUCell, 2, return_sequences=True),
                                       merge_mode="sum")
    want = _same([[0.20937867, 0.34462988, 0.40290534], [0.59829646, 0.6734641, 0.6479671]], 2)
    np.testing.assert_allclose(layer(S234), want, **TOL)


def test_bidirectional_lstm_statefulness():
    layer = keras.layers.Bidirectional(_rnn(LSTMCell, 2, stateful=True))
    want = np.concatenate([_same([0.26234663, 0.6137073], 2),
                           _same([0.16959146, 0.5381646], 2)], -1)
    for _ in range(2):
        layer(S243)
        np.testing.assert_allclose(layer(S243), want, **TOL)
        layer.reset_state()


def test_bidirectional_lstm_initial_state():
    states = [H0_2 * k for k in (1, 2, 3, 4)]
    out = keras.layers.Bidirectional(_rnn(LSTMCell, 2))(S243, initial_state=states)
    np.testing.assert_allclose(out, [[0.20794602, 0.4577124, 0.14046375, 0.48191673],
                                     [0.6682636, 0.6711909, 0.60943645, 0.60950446]], **TOL)


def test_bidirectional_gru_masking():
    out = keras.layers.Bidirectional(_rnn(GRUCell, 2))(S243, mask=MASK_A)
    want = np.concatenate([_same([0.19393763, 0.30818558], 2),
                           _same([0.11669192, 0.28380975], 2)], -1)
    np.testing.assert_allclose(out, want, **TOL)


def test_bidirectional_lstm_return_state():
    out, h1, c1, h2, c2 = keras.layers.Bidirectional(_rnn(LSTMCell, 2, return_state=True))(S243)
    np.testing.assert_allclose(h1, _same([0.1990008, 0.52335435], 2), **TOL)
    np.testing.assert_allclose(c1, _same([0.35567185, 1.0492687], 2), **TOL)
    np.testing.assert_allclose(h2, _same([0.12659755, 0.44717982], 2), **TOL)
    np.testing.assert_allclose(c2, _same([0.2501858, 0.941473], 2), **TOL)
    np.testing.assert_allclose(out, np.concatenate([h1, h2], -1), **TOL)


@pytest.mark.parametrize("return_state", [True, False])
@pytest.mark.parametrize("merge_mode", ["ave", "concat", "mul", "sum", None])
def test_bidirectional_output_shape(merge_mode, return_state):
    x = np.array([[[101, 202], [303, 404]]], "float32")
    layer = keras.layers.Bidirectional(keras.layers.RNN(LSTMCell(2), return_state=return_state),
                                       merge_mode=merge_mode)
    out, shape = layer(x), layer.compute_output_shape(x.shape)
    if return_state or merge_mode is None:
        assert [tuple(o.shape) for o in out] == [tuple(s) for s in shape]
    else:
        assert tuple(out.shape) == tuple(shape)


CUDNN_ONLY = [
    "gru_test.py::test_torch_cudnn_dispatch_fires",
    "bidirectional_test.py::test_keeps_use_cudnn",
    "bidirectional_test.py::test_fused_lstm_eligibility",
    "bidirectional_test.py::test_fused_lstm_matches_unfused",
    "bidirectional_test.py::test_fused_gru_eligibility",
    "bidirectional_test.py::test_fused_gru_matches_unfused",
    "bidirectional_test.py::test_torch_cudnn_bidirectional_gru_dispatch_fires",
]


@pytest.mark.parametrize("keras_test", CUDNN_ONLY)
def test_cudnn_dispatch_cases(keras_test):
    pytest.skip(f"{keras_test}: cuDNN dispatch (use_cudnn, fused kernels) belongs to "
                "keras.layers.LSTM/GRU; a custom cell inside keras.layers.RNN always runs "
                "its own call() step by step, so there is nothing to dispatch.")
