"""Recurrent cells written from their equations, usable inside ``keras.layers.RNN``.

Every cell follows Keras's cell contract: ``state_size``, ``output_size``,
``get_initial_state(batch_size)`` and ``call(inputs, states, training=None) ->
(output, new_states)``, one time step per call, so it runs inside ``keras.layers.RNN``,
``keras.layers.StackedRNNCells`` and ``keras.layers.Bidirectional`` like a built-in cell
(masking, ``stateful``, ``return_state``, ``go_backwards`` and ``unroll`` are the layer's).

Weights use Keras's row-vector layout, ``z = x_t @ kernel + h_{t-1} @ recurrent_kernel +
bias``, with the matching Keras cell's shapes and gate order, so
``set_weights(builtin_cell.get_weights())`` copies across in both directions. In the
column-vector notation of the textbooks (``h_t = tanh(W_hh h_{t-1} + W_xh x_t)``),
``kernel = W_xh^T`` and ``recurrent_kernel = W_hh^T``.

Constructor contract: each cell takes every argument of its Keras 3.15 counterpart
(``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``; ``CIFGCell`` takes ``LSTMCell``'s) with Keras's
meaning: ``use_bias``, ``activation``/``recurrent_activation``, the three initializers,
regularizers (in ``layer.losses``) and constraints (applied after each optimizer update),
``reset_after`` (GRU), ``implementation`` (accepted and serialised, changes nothing), and
``get_config``/``from_config`` round-trip all of them. Like Keras, rates are clipped into
[0, 1], integer-like ``units`` (``np.int64``) are accepted, and a single-state cell given a
bare-tensor state returns a bare tensor.

Dropout (Gal & Ghahramani 2016): ``dropout`` on the input ``x_t`` and ``recurrent_dropout``
on ``h_{t-1}``, with **one mask per sequence**, drawn before the time loop and reused at every
step. All gates share the input mask and all gates share the recurrent mask (the "tied"
variant); Keras's LSTM and GRU cells draw one recurrent mask per gate, so with dropout on,
the zoo's and Keras's cells drop different units (same rates, same expectation). This relies
on Keras's ``DropoutRNNCell`` mix-in (private; the only way ``keras.layers.RNN`` draws
masks outside its loop), imported from :mod:`zoo._keras_compat`, which says why.
"""

from __future__ import annotations

import numbers

import keras
import tensorflow as tf
from keras import ops

from zoo._keras_compat import DropoutRNNCell


def _check_step_input(cell_name, inputs, states, expected_states, units):
    """Raise ``ValueError`` for an input that is not ``(batch, features)`` or bad states."""
    if len(inputs.shape) != 2:
        raise ValueError(
            f"{cell_name} expects one time step of shape (batch, features), got an input of "
            f"shape {tuple(inputs.shape)}. Wrap the cell in keras.layers.RNN to run it over "
            "a (batch, time, features) sequence."
        )
    if len(states) != expected_states:
        raise ValueError(f"{cell_name} expects {expected_states} state tensor(s) of shape "
                         f"(batch, {units}), got {len(states)}.")
    for state in states:
        if len(state.shape) != 2 or (state.shape[-1] is not None and state.shape[-1] != units):
            raise ValueError(f"{cell_name} expects states of shape (batch, {units}), got "
                             f"{tuple(state.shape)}.")


def _clip_rate(value):
    """A dropout rate clipped into [0, 1], as Keras's cells do (-0.5 -> 0.0, 1.5 -> 1.0)."""
    return min(1.0, max(0.0, float(value)))


def _check_units(cell_name, units):
    """``units`` as a Python int; integer-like values (``np.int64(4)``) are accepted."""
    if isinstance(units, bool) or not isinstance(units, numbers.Integral) or units <= 0:
        raise ValueError(f"{cell_name} units must be a positive int, got {units!r}.")
    return int(units)


class _GatedCell(DropoutRNNCell, keras.layers.Layer):
    """Shared machinery: ``gates`` blocks of ``units`` columns per weight matrix.

    Takes the arguments every Keras cell takes (see :class:`RNNCell`); the subclasses add
    their own (``recurrent_activation``, ``unit_forget_bias``, ``reset_after``,
    ``implementation``).
    """

    gates = 1
    num_states = 1
    # Keras's LSTMCell and GRUCell only drop when 0 < rate < 1 (a rate of exactly 1.0 drops
    # nothing), SimpleRNNCell whenever rate > 0 (1.0 drops everything); the zoo matches each.
    full_rate_drops_all = False

    def __init__(self, units, activation="tanh", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
                 bias_initializer="zeros", kernel_regularizer=None, recurrent_regularizer=None,
                 bias_regularizer=None, kernel_constraint=None, recurrent_constraint=None,
                 bias_constraint=None, dropout=0.0, recurrent_dropout=0.0, seed=None,
                 **kwargs):
        units = _check_units(type(self).__name__, units)
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(recurrent_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.dropout = _clip_rate(dropout)
        self.recurrent_dropout = _clip_rate(recurrent_dropout)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.state_size = units if self.num_states == 1 else [units] * self.num_states
        self.output_size = units

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} expects one time step of shape (batch, features) "
                f"with a known feature size, got {tuple(input_shape)}.")
        width = self.gates * self.units
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), width), name="kernel",
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer,
                                      constraint=self.kernel_constraint)
        self.recurrent_kernel = self.add_weight(shape=(self.units, width),
                                                name="recurrent_kernel",
                                                initializer=self.recurrent_initializer,
                                                regularizer=self.recurrent_regularizer,
                                                constraint=self.recurrent_constraint)
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(shape=self._bias_shape(), name="bias",
                                        initializer=self._bias_init(),
                                        regularizer=self.bias_regularizer,
                                        constraint=self.bias_constraint)

    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    @staticmethod
    def _plus(z, bias):
        """``z + bias``, or ``z`` when the cell has no bias (``use_bias=False``)."""
        return z if bias is None else z + bias

    def _drops(self, rate):
        return rate > 0.0 and (rate < 1.0 or self.full_rate_drops_all)

    def _masked(self, inputs, h_prev, training):
        """Apply the per-sequence dropout masks (training only)."""
        if training:
            if self._drops(self.dropout):
                inputs = inputs * self.get_dropout_mask(inputs)
            if self._drops(self.recurrent_dropout):
                h_prev = h_prev * self.get_recurrent_dropout_mask(h_prev)
        return inputs, h_prev

    def _states(self, inputs, states):
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        _check_step_input(type(self).__name__, inputs, states, self.num_states, self.units)
        return states

    def get_initial_state(self, batch_size=None):
        """Zero states, each ``(batch_size, units)`` in the cell's compute dtype."""
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)
                for _ in range(self.num_states)]

    def get_config(self):
        reg, con = keras.regularizers.serialize, keras.constraints.serialize
        config = super().get_config()
        config.update(
            units=self.units,
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            kernel_regularizer=reg(self.kernel_regularizer),
            recurrent_regularizer=reg(self.recurrent_regularizer),
            bias_regularizer=reg(self.bias_regularizer),
            kernel_constraint=con(self.kernel_constraint),
            recurrent_constraint=con(self.recurrent_constraint),
            bias_constraint=con(self.bias_constraint),
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            seed=self.seed,
        )
        return config


class _LSTMLike(_GatedCell):
    """What Keras's LSTMCell and GRUCell add: ``recurrent_activation`` and the
    ``implementation`` flag (accepted, stored and serialised; it changes nothing here).

    Positional arguments follow Keras's order up to ``use_bias`` (``units, activation,
    recurrent_activation, use_bias``); the rest are keyword-only.
    """

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, *, implementation=2, **kwargs):
        super().__init__(units, activation=activation, use_bias=use_bias, **kwargs)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.implementation = implementation

    def get_config(self):
        config = super().get_config()
        config["recurrent_activation"] = keras.activations.serialize(self.recurrent_activation)
        config["implementation"] = self.implementation
        return config


class _ForgetBiasCell(_LSTMLike):
    """LSTM-type cells (``h_t`` and ``c_t``) with ``unit_forget_bias``: the bias of gate block
    ``forget_block`` starts at ``forget_start`` (the rest from ``bias_initializer``), so the
    forget gate starts at ``sigma(1)`` (Jozefowicz et al. 2015)."""

    num_states = 2
    forget_block, forget_start = 1, 1.0

    def __init__(self, units, *args, unit_forget_bias=True, **kwargs):
        super().__init__(units, *args, **kwargs)
        self.unit_forget_bias = unit_forget_bias

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, base, block = self.units, self.bias_initializer, self.forget_block
        start = self.forget_start

        def bias_initializer(shape, dtype=None):
            return ops.concatenate([base((block * units,), dtype=dtype),
                                    ops.full((units,), start, dtype=dtype),
                                    base(((self.gates - block - 1) * units,), dtype=dtype)])
        return bias_initializer

    def get_config(self):
        config = super().get_config()
        config["unit_forget_bias"] = self.unit_forget_bias
        return config


_COMMON_ARGS = """
        use_bias: bool, default True; False builds no ``bias`` weight (the weight list is
            then ``[kernel, recurrent_kernel]``, as in Keras) and adds no bias.
        kernel_initializer, recurrent_initializer, bias_initializer: Keras initializers
            (defaults ``"glorot_uniform"``, ``"orthogonal"``, ``"zeros"``).
        kernel_regularizer, recurrent_regularizer, bias_regularizer: Keras regularizers
            or None; their penalties appear in ``layer.losses`` / ``model.losses``.
        kernel_constraint, recurrent_constraint, bias_constraint: Keras constraints or
            None, applied to the weight after each optimizer update.
        dropout, recurrent_dropout: floats, clipped into [0, 1] as Keras does; rates on
            ``x_t`` and ``h_{t-1}``, one mask per sequence shared by all gates."""


@keras.saving.register_keras_serializable(package="zoo")
class RNNCell(_GatedCell):
    """The Elman (vanilla) recurrent cell (Elman 1990), one time step per call::

        h_t = act(x_t W_xh + h_{t-1} W_hh + b)        (row vectors; Elman 1990 with act = tanh)

    Weights as ``keras.layers.SimpleRNNCell``: ``kernel (input_dim, units)``,
    ``recurrent_kernel (units, units)``, ``bias (units,)`` (absent with ``use_bias=False``).
    It takes every argument of ``keras.layers.SimpleRNNCell`` (Keras 3.15) with its meaning.

    The IRNN recipe (Le, Jaitly & Hinton 2015) is ``RNNCell(units, activation="relu",
    recurrent_initializer="identity")``: ReLU units, ``W_hh = I``, zero bias.

    Args:
        units: positive int (integer-like values such as ``np.int64(4)`` are accepted and
            stored as int), size of ``h_t``.
        activation: ``"tanh"`` (default) or ``"relu"`` (any Keras activation; None is
            linear).{common}
            As in ``SimpleRNNCell``, a rate of 1.0 drops every unit.
        seed: int seed of the dropout masks.
        **kwargs: passed to ``keras.layers.Layer`` (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float ``(batch, input_dim)``; states: ``[h_{t-1}]`` ``(batch, units)``, or
        the bare tensor ``h_{t-1}``; training: bool, enables dropout.

    Returns:
        ``(h_t, [h_t])``, each ``(batch, units)``; ``(h_t, h_t)`` when ``states`` was a bare
        tensor, as Keras's cell returns.

    Raises:
        ValueError: ``units`` is not a positive integer, an input that is not rank 2, a
            state of the wrong shape.

    Example:
        >>> keras.layers.RNN(RNNCell(8, activation="relu",
        ...                          recurrent_initializer="identity"))(np.ones((2, 5, 3)))
    """

    full_rate_drops_all = True

    def call(self, inputs, states, training=None):
        (h_prev,) = self._states(inputs, states)
        inputs, h_prev = self._masked(inputs, h_prev, training)
        h = self.activation(self._plus(ops.matmul(inputs, self.kernel), self.bias)
                            + ops.matmul(h_prev, self.recurrent_kernel))
        return h, ([h] if isinstance(states, (list, tuple)) else h)


@keras.saving.register_keras_serializable(package="zoo")
class LSTMCell(_ForgetBiasCell):
    """Long short-term memory cell (Hochreiter & Schmidhuber 1997, with the forget gate of
    Gers, Schmidhuber & Cummins 2000), one time step per call.

    Equations, with row vectors, ``rho`` the recurrent activation (default the logistic
    sigmoid) and ``act`` the activation (default tanh)::

        z_t = x_t W + h_{t-1} U + b            W: (input_dim, 4*units)
        i_t, f_t, g_t, o_t = split(z_t, 4)      U: (units, 4*units), b: (4*units,)
        i_t = rho(i_t); f_t = rho(f_t); o_t = rho(o_t); g_t = act(g_t)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * act(c_t)

    The gate order along the last weight axis is i, f, c (``g``), o, the same as
    ``keras.layers.LSTMCell`` and cuDNN, so ``set_weights`` works across both ways. It takes
    every argument of ``keras.layers.LSTMCell`` (Keras 3.15) with its meaning; positionally
    only ``units, activation, recurrent_activation, use_bias`` (Keras's first four), the rest
    by keyword.

    Args:
        units: positive int (integer-like accepted), the size of ``h_t`` and ``c_t``.
        activation: ``act``, default ``"tanh"`` (None is linear).
        recurrent_activation: ``rho`` of the gates, default ``"sigmoid"``.{common}
            As in Keras's ``LSTMCell``, a rate of exactly 1.0 drops nothing.
        unit_forget_bias: if True (default, as in Keras; Jozefowicz et al. 2015), the forget
            gate slice ``bias[units:2*units]`` starts at exactly 1.0 (with a bias).
        seed: int seed of the dropout masks.
        implementation: 1 or 2 (or a legacy 0 from an old Keras config). Accepted, stored
            and serialised for Keras compatibility; it changes nothing (one fused matmul per
            weight matrix either way).
        **kwargs: passed to ``keras.layers.Layer`` (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float tensor ``(batch, input_dim)``, the input ``x_t`` of one time step.
        states: list ``[h_{t-1}, c_{t-1}]``, each ``(batch, units)``.
        training: bool, enables dropout.

    Returns:
        ``(h_t, [h_t, c_t])``, each ``(batch, units)``.

    Raises:
        ValueError: ``units`` is not a positive integer; the input is not rank 2; the
            states are not two ``(batch, units)`` tensors.

    Example:
        >>> layer = keras.layers.RNN(LSTMCell(8), return_sequences=True)
        >>> layer(np.zeros((2, 5, 3), "float32")).shape      # (batch, time, units)
        (2, 5, 8)
    """

    gates = 4

    def call(self, inputs, states, training=None):
        h_prev, c_prev = self._states(inputs, states)
        inputs, h_in = self._masked(inputs, h_prev, training)
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_in, self.recurrent_kernel)
        z = self._plus(z, self.bias)
        i, f, g, o = ops.split(z, 4, axis=-1)
        rho, act = self.recurrent_activation, self.activation
        c = rho(f) * c_prev + rho(i) * act(g)
        h = rho(o) * act(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="zoo")
class GRUCell(_LSTMLike):
    """Gated recurrent unit (Cho et al. 2014), one time step per call, in either of Keras's
    two forms. ``rho`` is the recurrent activation (default sigmoid), ``act`` the activation
    (default tanh); gate order z, r, h along the last weight axis.

    ``reset_after=True`` (default; Keras's default and cuDNN's form), ``bias (2, 3*units)`` =
    ``[b_in; b_rec]``::

        x_z, x_r, x_h = split(x_t W + b_in, 3)          W: (input_dim, 3*units)
        u_z, u_r, u_h = split(h_{t-1} U + b_rec, 3)     U: (units, 3*units)
        z_t = rho(x_z + u_z);  r_t = rho(x_r + u_r)
        hh_t = act(x_h + r_t * u_h)                     (reset applied after the product)
        h_t = z_t * h_{t-1} + (1 - z_t) * hh_t

    ``reset_after=False`` (the original form of Cho et al. 2014), ``bias (3*units,)``::

        x_z, x_r, x_h = split(x_t W + b, 3)
        u_z, u_r = split(h_{t-1} U[:, :2*units], 2)
        z_t = rho(x_z + u_z);  r_t = rho(x_r + u_r)
        hh_t = act(x_h + (r_t * h_{t-1}) U[:, 2*units:])   (reset applied before the product)
        h_t = z_t * h_{t-1} + (1 - z_t) * hh_t

    Both lay their weights out as ``keras.layers.GRUCell`` with the same ``reset_after``, so
    ``set_weights`` copies across. It takes every argument of ``keras.layers.GRUCell``
    (Keras 3.15) with its meaning; positionally only its first four, as :class:`LSTMCell`.

    Args:
        units: positive int (integer-like accepted), size of ``h_t``.
        activation: ``act``, default ``"tanh"`` (None is linear).
        recurrent_activation: ``rho`` of the gates, default ``"sigmoid"``.{common}
            As in Keras's ``GRUCell``, a rate of exactly 1.0 drops nothing.
        reset_after: bool, default True; see above.
        seed: int seed of the dropout masks.
        implementation: as :class:`LSTMCell`: accepted, changes nothing.
        **kwargs: passed to ``keras.layers.Layer``.

    Call arguments:
        inputs: float ``(batch, input_dim)``; states: ``[h_{t-1}]`` ``(batch, units)``, or
        the bare tensor ``h_{t-1}``; training: bool.

    Returns:
        ``(h_t, [h_t])``, each ``(batch, units)``; ``(h_t, h_t)`` for a bare-tensor state.

    Raises:
        ValueError: as :class:`RNNCell`.
    """

    gates = 3

    def __init__(self, units, *args, reset_after=True, **kwargs):
        super().__init__(units, *args, **kwargs)
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def call(self, inputs, states, training=None):
        (h_prev,) = self._states(inputs, states)
        inputs, h_in = self._masked(inputs, h_prev, training)
        rho, act, units = self.recurrent_activation, self.activation, self.units
        b_in, b_rec = (None, None) if self.bias is None else (
            (self.bias[0], self.bias[1]) if self.reset_after else (self.bias, None))
        x_z, x_r, x_h = ops.split(self._plus(ops.matmul(inputs, self.kernel), b_in), 3,
                                  axis=-1)
        if self.reset_after:
            u_z, u_r, u_h = ops.split(
                self._plus(ops.matmul(h_in, self.recurrent_kernel), b_rec), 3, axis=-1)
            z = rho(x_z + u_z)
            r = rho(x_r + u_r)
            hh = act(x_h + r * u_h)
        else:
            u_z, u_r = ops.split(ops.matmul(h_in, self.recurrent_kernel[:, :2 * units]), 2,
                                 axis=-1)
            z = rho(x_z + u_z)
            r = rho(x_r + u_r)
            hh = act(x_h + ops.matmul(r * h_in, self.recurrent_kernel[:, 2 * units:]))
        h = z * h_prev + (1.0 - z) * hh
        return h, ([h] if isinstance(states, (list, tuple)) else h)

    def get_config(self):
        config = super().get_config()
        config["reset_after"] = self.reset_after
        return config


@keras.saving.register_keras_serializable(package="zoo")
class CIFGCell(_ForgetBiasCell):
    """LSTM with a coupled input and forget gate (CIFG; Greff et al. 2017, "LSTM: A Search
    Space Odyssey", variant CIFG), the cell of Gboard's next-word model (Hard et al. 2018),
    one time step per call (``rho`` default sigmoid, ``act`` default tanh)::

        z_t = x_t W + h_{t-1} U + b            W: (input_dim, 3*units)
        i_t, g_t, o_t = split(z_t, 3)           U: (units, 3*units), b: (3*units,)
        i_t = rho(i_t); g_t = act(g_t); o_t = rho(o_t)
        f_t = 1 - i_t                           (the coupling: no forget-gate weights)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * act(c_t)

    It has three quarters of an LSTM's weights and, in Greff et al.'s study, the same
    quality. Gate order along the last weight axis: i, c (``g``), o. It takes the same
    arguments as :class:`LSTMCell`.

    Args:
        units: positive int (integer-like accepted), the size of ``h_t`` and ``c_t``.
        activation, recurrent_activation: ``act`` and ``rho``, as :class:`LSTMCell`.{common}
            As :class:`LSTMCell`, a rate of exactly 1.0 drops nothing.
        unit_forget_bias: if True (default), the input-gate bias ``bias[:units]`` starts at
            -1.0, so ``f_t = 1 - sigma(-1) = sigma(1)``: the same start as an LSTM's forget
            gate with Keras's ``unit_forget_bias`` (Jozefowicz et al. 2015).
        seed: int seed of the dropout masks.
        implementation: as :class:`LSTMCell`: accepted, changes nothing.
        **kwargs: passed to ``keras.layers.Layer``.

    Call arguments:
        inputs: float ``(batch, input_dim)``; states: ``[h_{t-1}, c_{t-1}]``, each
        ``(batch, units)``; training: bool.

    Returns:
        ``(h_t, [h_t, c_t])``, each ``(batch, units)``.

    Raises:
        ValueError: as :class:`LSTMCell`.

    Example:
        >>> layer = keras.layers.RNN(CIFGCell(8), return_sequences=True)
        >>> layer(np.zeros((2, 5, 3), "float32")).shape
        (2, 5, 8)
    """

    gates = 3
    forget_block, forget_start = 0, -1.0  # the input gate: f_t = 1 - sigma(-1) = sigma(1)


    def call(self, inputs, states, training=None):
        h_prev, c_prev = self._states(inputs, states)
        inputs, h_in = self._masked(inputs, h_prev, training)
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_in, self.recurrent_kernel)
        z = self._plus(z, self.bias)
        i, g, o = ops.split(z, 3, axis=-1)
        rho, act = self.recurrent_activation, self.activation
        i = rho(i)
        c = (1.0 - i) * c_prev + i * act(g)
        h = rho(o) * act(c)
        return h, [h, c]



for _cell in (RNNCell, LSTMCell, GRUCell, CIFGCell):
    _cell.__doc__ = _cell.__doc__.replace("{common}", _COMMON_ARGS)
del _cell


# --------------------------------------------------------------------------------------
# The fused sequence path: one input projection, an explicit BPTT backward pass
# --------------------------------------------------------------------------------------

def _sigmoid_slope(a):
    """d sigmoid(z)/dz written in its output ``a = sigmoid(z)``."""
    return a * (1.0 - a)


def _tanh_slope(a):
    """d tanh(z)/dz written in its output ``a = tanh(z)``."""
    return 1.0 - a * a


def _relu_slope(a):
    """d relu(z)/dz written in its output ``a = relu(z)`` (0 at z = 0, as TensorFlow's)."""
    return tf.cast(a > 0, a.dtype)


def _linear_slope(a):
    """d z/dz = 1."""
    return tf.ones_like(a)


_SLOPES = {"sigmoid": _sigmoid_slope, "tanh": _tanh_slope, "relu": _relu_slope,
           "linear": _linear_slope}


def _slope_of(activation):
    """The slope function for a Keras activation the fused path supports, else None."""
    for name, slope in _SLOPES.items():
        if activation is keras.activations.get(name):
            return slope
    return None


class _ElmanSteps:
    """One step of :class:`RNNCell` forward and backward, on ``z = x_t W + b + h_in U``."""

    splits_recurrent = False  # z holds x_t W + b + h_in U together

    def __init__(self, cell):
        self.act, self.slope = cell.activation, _slope_of(cell.activation)

    def forward(self, z, h_prev, rest):
        h = self.act(z)
        return h, (), h  # saved: h_t

    def backward(self, dh, drest, saved, h_prev, rest_prev):
        dz = dh * self.slope(saved)
        return dz, dz, None, ()  # (d xw_t, d u_t, dh_prev other than via U, d rest_prev)


class _LSTMSteps:
    """One step of :class:`LSTMCell` (``coupled=False``) or :class:`CIFGCell`
    (``coupled=True``, ``f_t = 1 - i_t``), forward and backward, on ``z = x_t W + b +
    h_in U``; the default activations only (sigmoid gates, tanh)."""

    splits_recurrent = False

    def __init__(self, coupled):
        self.coupled = coupled

    def forward(self, z, h_prev, rest):
        (c_prev,) = rest
        if self.coupled:
            zi, zg, zo = tf.split(z, 3, axis=-1)
            i, g, o = tf.sigmoid(zi), tf.tanh(zg), tf.sigmoid(zo)
            c = c_prev + i * (g - c_prev)  # (1 - i) c_prev + i g
        else:
            zi, zf, zg, zo = tf.split(z, 4, axis=-1)
            i, f, g, o = tf.sigmoid(zi), tf.sigmoid(zf), tf.tanh(zg), tf.sigmoid(zo)
            c = f * c_prev + i * g
        tanh_c = tf.tanh(c)
        h = o * tanh_c
        return h, (c,), (i, None if self.coupled else f, g, o, tanh_c)

    def backward(self, dh, drest, saved, h_prev, rest_prev):
        (dc,), (c_prev,) = drest, rest_prev
        i, f, g, o, tanh_c = saved
        dc = dc + dh * o * _tanh_slope(tanh_c)
        dzo = dh * tanh_c * _sigmoid_slope(o)
        dzg = dc * i * _tanh_slope(g)
        if self.coupled:
            dzi = dc * (g - c_prev) * _sigmoid_slope(i)
            dz = tf.concat([dzi, dzg, dzo], axis=-1)
            dc_prev = dc * (1.0 - i)
        else:
            dzi = dc * g * _sigmoid_slope(i)
            dzf = dc * c_prev * _sigmoid_slope(f)
            dz = tf.concat([dzi, dzf, dzg, dzo], axis=-1)
            dc_prev = dc * f
        return dz, dz, None, (dc_prev,)


class _GRUSteps:
    """One step of :class:`GRUCell` with ``reset_after=True`` (default activations),
    forward and backward; ``z`` holds ``x_t W + b_in`` and ``u = h_in U + b_rec`` is given
    separately because the reset gate multiplies only ``u_h``."""

    splits_recurrent = True  # u = h_in U + b_rec comes apart from x_t W + b_in

    def forward(self, xw, u, h_prev):
        x_z, x_r, x_h = tf.split(xw, 3, axis=-1)
        u_z, u_r, u_h = tf.split(u, 3, axis=-1)
        z = tf.sigmoid(x_z + u_z)
        r = tf.sigmoid(x_r + u_r)
        hh = tf.tanh(x_h + r * u_h)
        h = hh + z * (h_prev - hh)  # z h_prev + (1 - z) hh
        return h, (z, r, hh, u_h)

    def backward(self, dh, saved, h_prev):
        z, r, hh, u_h = saved
        dzz = dh * (h_prev - hh) * _sigmoid_slope(z)
        da = dh * (1.0 - z) * _tanh_slope(hh)  # d (x_h + r u_h)
        dzr = da * u_h * _sigmoid_slope(r)
        dxw = tf.concat([dzz, dzr, da], axis=-1)
        du = tf.concat([dzz, dzr, da * r], axis=-1)
        return dxw, du, dh * z


def _fused_steps(cell):
    """The step functions of the fused path for ``cell``, or None where only the plain
    ``keras.layers.RNN`` loop applies (a non-zoo cell, other activations, the classic GRU)."""
    rho = getattr(cell, "recurrent_activation", None)
    default_gates = (rho is keras.activations.get("sigmoid")
                     and cell.activation is keras.activations.get("tanh"))
    if type(cell) is RNNCell and _slope_of(cell.activation) is not None:
        return _ElmanSteps(cell)
    if type(cell) is LSTMCell and default_gates:
        return _LSTMSteps(coupled=False)
    if type(cell) is CIFGCell and default_gates:
        return _LSTMSteps(coupled=True)
    if type(cell) is GRUCell and default_gates and cell.reset_after:
        return _GRUSteps()
    return None


def fused_recurrence(steps, x, states, kernel, recurrent_kernel, bias_in, bias_rec,
                     recurrent_mask=None):
    """Run a cell over a whole sequence with one input projection and explicit BPTT.

    Forward: ``xw = x W + b_in`` for all steps as one ``(batch*time, input_dim) @
    (input_dim, gates*units)`` matmul, then the recurrence step by step (unrolled: ``time``
    must be static). Backward (a ``tf.custom_gradient``): the recurrence runs backwards from
    the last step, giving the pre-activation gradients ``dz_t``, and the weight gradients
    are one matmul each over all steps, ``dW = X^T dZ``, ``dU = H_in^T dU_z``, with ``dx =
    dZ W^T``: backpropagation through time (Werbos 1990) arranged as cuDNN and oneDNN do it.

    Args:
        steps: a cell's step functions (from ``_fused_steps``).
        x: ``(batch, time, input_dim)``, static ``time``, in the compute dtype.
        states: list of ``(batch, units)`` initial states (``[h]`` or ``[h, c]``).
        kernel, recurrent_kernel: ``(input_dim, gates*units)``, ``(units, gates*units)``.
        bias_in: ``(gates*units,)`` added to ``x W``; bias_rec: ``(gates*units,)`` added to
            ``h U`` (GRU with ``reset_after``) or None.
        recurrent_mask: None or ``(batch, units)`` dropout mask on ``h_{t-1}`` (the same at
            every step; no gradient flows to it).

    Returns:
        ``(outputs (batch, time, units), final_states)`` in the dtype of ``x``.
    """
    time_steps = x.shape[1]
    gru = steps.splits_recurrent

    @tf.custom_gradient
    def run(x, kernel, recurrent_kernel, bias_in, bias_rec, *states):
        batch, dim = tf.shape(x)[0], x.shape[-1]
        flat_x = tf.reshape(x, [-1, dim])
        xw = tf.reshape(tf.matmul(flat_x, kernel) + bias_in, [batch, time_steps, -1])
        xw_t = tf.unstack(xw, axis=1)
        h, rest = states[0], tuple(states[1:])
        hs, h_ins, saved, h_prevs, rests = [], [], [], [], []
        for t in range(time_steps):
            h_in = h if recurrent_mask is None else h * recurrent_mask
            u = tf.matmul(h_in, recurrent_kernel)
            h_prevs.append(h)
            rests.append(rest)
            h_ins.append(h_in)
            if gru:
                h, keep = steps.forward(xw_t[t], u + bias_rec, h)
            else:
                h, rest, keep = steps.forward(xw_t[t] + u, h, rest)
            hs.append(h)
            saved.append(keep)
        outputs = tf.stack(hs, axis=1)

        def grad(d_outputs, *d_states):
            d_states = [tf.zeros_like(s) if d is None else d for d, s in zip(d_states, states)]
            d_outputs = tf.zeros_like(outputs) if d_outputs is None else d_outputs
            dy = tf.unstack(d_outputs, axis=1)
            dh, drest = d_states[0], tuple(d_states[1:])
            dxws, dus = [None] * time_steps, [None] * time_steps
            for t in reversed(range(time_steps)):
                dh = dh + dy[t]
                if gru:
                    dxw, du, dh_direct = steps.backward(dh, saved[t], h_prevs[t])
                else:
                    dxw, du, dh_direct, drest = steps.backward(dh, drest, saved[t], h_prevs[t],
                                                               rests[t])
                dh_in = tf.matmul(du, recurrent_kernel, transpose_b=True)
                dh = dh_in if recurrent_mask is None else dh_in * recurrent_mask
                if dh_direct is not None:
                    dh = dh + dh_direct
                dxws[t], dus[t] = dxw, du
            width = kernel.shape[-1]
            flat_dxw = tf.reshape(tf.stack(dxws, axis=1), [-1, width])
            flat_du = flat_dxw if not gru else tf.reshape(tf.stack(dus, axis=1), [-1, width])
            flat_h_in = tf.reshape(tf.stack(h_ins, axis=1), [-1, h.shape[-1]])
            dx = tf.reshape(tf.matmul(flat_dxw, kernel, transpose_b=True), tf.shape(x))
            d_kernel = tf.matmul(flat_x, flat_dxw, transpose_a=True)
            d_recurrent = tf.matmul(flat_h_in, flat_du, transpose_a=True)
            d_bias_in = tf.reduce_sum(flat_dxw, axis=0)
            d_bias_rec = tf.reduce_sum(flat_du, axis=0) if gru else tf.zeros_like(bias_rec)
            return [dx, d_kernel, d_recurrent, d_bias_in, d_bias_rec, dh, *drest]

        return (outputs, h, *rest), grad

    if bias_rec is None:
        bias_rec = tf.zeros_like(bias_in)
    result = run(x, kernel, recurrent_kernel, bias_in, bias_rec, *states)
    return result[0], list(result[1:])


@keras.saving.register_keras_serializable(package="zoo")
class FusedRNN(keras.layers.RNN):
    """``keras.layers.RNN`` that runs the zoo's cells over a whole sequence at once when it
    can (:func:`fused_recurrence`: one input projection for all steps and an explicit BPTT
    backward pass), and Keras's step-by-step loop otherwise. Same arguments, weights,
    outputs and gradients as ``keras.layers.RNN(cell, ...)``.

    The fused path runs for :class:`RNNCell` (tanh, relu, sigmoid or linear), :class:`LSTMCell` and
    :class:`CIFGCell` (sigmoid gates, tanh) and :class:`GRUCell` (``reset_after=True``,
    sigmoid/tanh), with input and recurrent dropout, ``stateful``, ``return_state``,
    ``return_sequences`` and ``unroll``, when the number of time steps is static (a known
    ``time`` in the input shape) under the TensorFlow backend. A ``mask``, ``go_backwards``,
    another cell or activation, the classic GRU (``reset_after=False``), a stack of cells or
    an unknown number of steps take the plain loop.

    Args:
        cell: a cell instance, as ``keras.layers.RNN``.
        fused: bool, default True; False always takes the plain loop (for comparisons).
        **kwargs: every argument of ``keras.layers.RNN``.

    Call arguments and returns: as ``keras.layers.RNN``.
    """

    def __init__(self, cell, fused=True, **kwargs):
        super().__init__(cell, **kwargs)
        self.fused = bool(fused)

    def _fused_plan(self, sequences, mask):
        if not self.fused or mask is not None or self.go_backwards:
            return None
        if keras.backend.backend() != "tensorflow" or sequences.shape[1] is None:
            return None
        return _fused_steps(self.cell)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        steps = self._fused_plan(sequences, mask)
        if steps is None:
            return super().inner_loop(sequences, initial_state, mask, training=training)
        cell = self.cell
        dtype = cell.compute_dtype
        x = tf.cast(sequences, dtype)
        states = [tf.cast(s, dtype) for s in (
            initial_state if isinstance(initial_state, (list, tuple)) else [initial_state])]
        recurrent_mask = None
        if training:
            if cell._drops(cell.dropout):
                x = x * cell.get_dropout_mask(x[:, 0])[:, None, :]
            if cell._drops(cell.recurrent_dropout):
                recurrent_mask = tf.stop_gradient(tf.cast(
                    cell.get_recurrent_dropout_mask(states[0]), dtype))
        kernel = tf.cast(cell.kernel, dtype)
        recurrent_kernel = tf.cast(cell.recurrent_kernel, dtype)
        width = kernel.shape[-1]
        bias_in = bias_rec = None
        if cell.bias is not None:
            bias = tf.cast(cell.bias, dtype)
            if steps.splits_recurrent:  # GRU reset_after: (2, width), input and recurrent
                bias_in, bias_rec = bias[0], bias[1]
            else:
                bias_in = bias
        if bias_in is None:
            bias_in = tf.zeros([width], dtype)
        outputs, states = fused_recurrence(steps, x, states, kernel, recurrent_kernel,
                                           bias_in, bias_rec, recurrent_mask)
        return outputs[:, -1], outputs, states

    def get_config(self):
        config = super().get_config()
        config["fused"] = self.fused
        return config
