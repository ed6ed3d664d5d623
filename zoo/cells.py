"""Recurrent cells written from their equations, usable inside ``keras.layers.RNN``.

Every cell follows Keras's cell contract: ``state_size``, ``output_size``,
``get_initial_state(batch_size)`` and ``call(inputs, states, training=None) ->
(output, new_states)``, one time step per call, so it runs inside ``keras.layers.RNN``,
``keras.layers.StackedRNNCells`` and ``keras.layers.Bidirectional`` like a built-in cell
(masking, ``stateful``, ``return_state``, ``go_backwards`` and ``unroll`` are the layer's).

Weights use Keras's row-vector layout, ``z = x_t @ kernel + h_{t-1} @ recurrent_kernel +
bias``, with the matching Keras cell's shapes and gate order, so
``set_weights(builtin_cell.get_weights())`` copies across in both directions. In the seed's
column notation, ``kernel = W_xh^T`` and ``recurrent_kernel = W_hh^T``.

Dropout (Gal & Ghahramani 2016): ``dropout`` on the input ``x_t`` and ``recurrent_dropout``
on ``h_{t-1}``, with **one mask per sequence**, drawn before the time loop and reused at every
step. All gates share the input mask and all gates share the recurrent mask (the "tied"
variant); Keras's LSTM and GRU cells draw one recurrent mask per gate, so with dropout on,
the zoo's and Keras's cells drop different units (same rates, same expectation). This relies
on Keras's ``DropoutRNNCell`` mix-in (``keras.src``; the only way ``keras.layers.RNN`` draws
masks outside its loop), pinned with keras 3.15.
"""

from __future__ import annotations

import keras
from keras import ops
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell


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


def _check_rate(name, value):
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
    return float(value)


class _GatedCell(DropoutRNNCell, keras.layers.Layer):
    """Shared machinery: ``gates`` blocks of ``units`` columns per weight matrix."""

    gates = 1
    num_states = 1

    def __init__(self, units, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", bias_initializer="zeros", dropout=0.0,
                 recurrent_dropout=0.0, seed=None, **kwargs):
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"{type(self).__name__} units must be a positive int, got "
                             f"{units!r}.")
        super().__init__(**kwargs)
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.dropout = _check_rate("dropout", dropout)
        self.recurrent_dropout = _check_rate("recurrent_dropout", recurrent_dropout)
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
        self.kernel = self.add_weight(shape=(int(input_shape[-1]), width),
                                      initializer=self.kernel_initializer, name="kernel")
        self.recurrent_kernel = self.add_weight(shape=(self.units, width),
                                                initializer=self.recurrent_initializer,
                                                name="recurrent_kernel")
        self.bias = self.add_weight(shape=self._bias_shape(), initializer=self._bias_init(),
                                    name="bias")

    def _bias_shape(self):
        return (self.gates * self.units,)

    def _bias_init(self):
        return self.bias_initializer

    def _masked(self, inputs, h_prev, training):
        """Apply the per-sequence dropout masks (training only)."""
        if training:
            mask = self.get_dropout_mask(inputs)
            if mask is not None:
                inputs = inputs * mask
            rec_mask = self.get_recurrent_dropout_mask(h_prev)
            if rec_mask is not None:
                h_prev = h_prev * rec_mask
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
        config = super().get_config()
        config.update(
            units=self.units,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            dropout=self.dropout,
            recurrent_dropout=self.recurrent_dropout,
            seed=self.seed,
        )
        return config


@keras.saving.register_keras_serializable(package="zoo")
class RNNCell(_GatedCell):
    """The Elman (vanilla) recurrent cell (Elman 1990), one time step per call::

        h_t = act(x_t W_xh + h_{t-1} W_hh + b)        (the seed: h_t = tanh(W_hh h_{t-1} + W_xh x_t))

    Weights as ``keras.layers.SimpleRNNCell``: ``kernel (input_dim, units)``,
    ``recurrent_kernel (units, units)``, ``bias (units,)``.

    The IRNN recipe (Le, Jaitly & Hinton 2015) is ``RNNCell(units, activation="relu",
    recurrent_initializer="identity")``: ReLU units, ``W_hh = I``, zero bias.

    Args:
        units: positive int, size of ``h_t``.
        activation: ``"tanh"`` (default) or ``"relu"`` (any Keras activation is accepted).
        kernel_initializer, recurrent_initializer, bias_initializer: Keras initializers
            (defaults glorot_uniform, orthogonal, zeros; ``"identity"`` for the IRNN).
        dropout, recurrent_dropout: rates in [0, 1) on ``x_t`` and ``h_{t-1}``, one mask per
            sequence.
        seed: int seed of the dropout masks.

    Call arguments:
        inputs: float ``(batch, input_dim)``; states: ``[h_{t-1}]`` ``(batch, units)``;
        training: bool, enables dropout.

    Returns:
        ``(h_t, [h_t])``, each ``(batch, units)``.

    Raises:
        ValueError: bad ``units`` or rates, an input that is not rank 2, a state of the
            wrong shape.

    Example:
        >>> keras.layers.RNN(RNNCell(8, activation="relu",
        ...                          recurrent_initializer="identity"))(np.ones((2, 5, 3)))
    """

    def __init__(self, units, activation="tanh", **kwargs):
        super().__init__(units, **kwargs)
        self.activation = keras.activations.get(activation)

    def call(self, inputs, states, training=None):
        (h_prev,) = self._states(inputs, states)
        inputs, h_prev = self._masked(inputs, h_prev, training)
        h = self.activation(ops.matmul(inputs, self.kernel) + self.bias
                            + ops.matmul(h_prev, self.recurrent_kernel))
        return h, [h]

    def get_config(self):
        config = super().get_config()
        config["activation"] = keras.activations.serialize(self.activation)
        return config


@keras.saving.register_keras_serializable(package="zoo")
class LSTMCell(_GatedCell):
    """Long short-term memory cell (Hochreiter & Schmidhuber 1997, with the forget gate of
    Gers, Schmidhuber & Cummins 2000), one time step per call.

    Equations, with row vectors and ``sigma`` the logistic sigmoid::

        z_t = x_t W + h_{t-1} U + b            W: (input_dim, 4*units)
        i_t, f_t, g_t, o_t = split(z_t, 4)      U: (units, 4*units), b: (4*units,)
        i_t = sigma(i_t); f_t = sigma(f_t); o_t = sigma(o_t); g_t = tanh(g_t)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    The gate order along the last weight axis is i, f, c (``g``), o, the same as
    ``keras.layers.LSTMCell`` and cuDNN, so ``set_weights`` works across both ways.

    Args:
        units: positive int, the size of ``h_t`` and ``c_t``.
        kernel_initializer: initializer of ``kernel`` (``W``), default ``"glorot_uniform"``.
        recurrent_initializer: initializer of ``recurrent_kernel`` (``U``), default
            ``"orthogonal"``.
        bias_initializer: initializer of ``bias``, default ``"zeros"``.
        unit_forget_bias: if True (default, as in Keras; Jozefowicz et al. 2015), the forget
            gate slice ``bias[units:2*units]`` starts at exactly 1.0.
        dropout, recurrent_dropout: rates in [0, 1) on ``x_t`` and ``h_{t-1}``, one mask per
            sequence.
        seed: int seed of the dropout masks.
        **kwargs: passed to ``keras.layers.Layer`` (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float tensor ``(batch, input_dim)``, the input ``x_t`` of one time step.
        states: list ``[h_{t-1}, c_{t-1}]``, each ``(batch, units)``.
        training: bool, enables dropout.

    Returns:
        ``(h_t, [h_t, c_t])``, each ``(batch, units)``.

    Raises:
        ValueError: ``units`` is not a positive int; a rate outside [0, 1); the input is not
            rank 2; the states are not two ``(batch, units)`` tensors.

    Example:
        >>> layer = keras.layers.RNN(LSTMCell(8), return_sequences=True)
        >>> layer(np.zeros((2, 5, 3), "float32")).shape      # (batch, time, units)
        (2, 5, 8)
    """

    gates = 4
    num_states = 2

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = unit_forget_bias

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, base = self.units, self.bias_initializer

        def bias_initializer(shape, dtype=None):
            return ops.concatenate([base((units,), dtype=dtype), ops.ones((units,), dtype=dtype),
                                    base((2 * units,), dtype=dtype)])
        return bias_initializer

    def call(self, inputs, states, training=None):
        h_prev, c_prev = self._states(inputs, states)
        inputs, h_in = self._masked(inputs, h_prev, training)
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_in, self.recurrent_kernel)
        z = z + self.bias
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c_prev + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]

    def get_config(self):
        config = super().get_config()
        config["unit_forget_bias"] = self.unit_forget_bias
        return config


@keras.saving.register_keras_serializable(package="zoo")
class GRUCell(_GatedCell):
    """Gated recurrent unit (Cho et al. 2014), the ``reset_after`` form that Keras and cuDNN
    use, one time step per call::

        x_z, x_r, x_h = split(x_t W + b_in, 3)          W: (input_dim, 3*units)
        u_z, u_r, u_h = split(h_{t-1} U + b_rec, 3)     U: (units, 3*units)
        z_t = sigma(x_z + u_z);  r_t = sigma(x_r + u_r)
        hh_t = tanh(x_h + r_t * u_h)                    (reset applied after the product)
        h_t = z_t * h_{t-1} + (1 - z_t) * hh_t

    Gate order z, r, h along the last weight axis and ``bias (2, 3*units)`` =
    ``[b_in; b_rec]``, as ``keras.layers.GRUCell(reset_after=True)``.

    Args:
        units: positive int, size of ``h_t``.
        kernel_initializer, recurrent_initializer, bias_initializer: Keras initializers.
        dropout, recurrent_dropout, seed: as :class:`RNNCell`.

    Call arguments:
        inputs: float ``(batch, input_dim)``; states: ``[h_{t-1}]`` ``(batch, units)``;
        training: bool.

    Returns:
        ``(h_t, [h_t])``, each ``(batch, units)``.

    Raises:
        ValueError: as :class:`RNNCell`.
    """

    gates = 3

    def _bias_shape(self):
        return (2, 3 * self.units)

    def call(self, inputs, states, training=None):
        (h_prev,) = self._states(inputs, states)
        inputs, h_in = self._masked(inputs, h_prev, training)
        x_z, x_r, x_h = ops.split(ops.matmul(inputs, self.kernel) + self.bias[0], 3, axis=-1)
        u_z, u_r, u_h = ops.split(ops.matmul(h_in, self.recurrent_kernel) + self.bias[1], 3,
                                  axis=-1)
        z = ops.sigmoid(x_z + u_z)
        r = ops.sigmoid(x_r + u_r)
        hh = ops.tanh(x_h + r * u_h)
        h = z * h_prev + (1.0 - z) * hh
        return h, [h]


@keras.saving.register_keras_serializable(package="zoo")
class CIFGCell(_GatedCell):
    """LSTM with a coupled input and forget gate (CIFG; Greff et al. 2017, "LSTM: A Search
    Space Odyssey", variant CIFG), the cell of Gboard's next-word model (Hard et al. 2018),
    one time step per call::

        z_t = x_t W + h_{t-1} U + b            W: (input_dim, 3*units)
        i_t, g_t, o_t = split(z_t, 3)           U: (units, 3*units), b: (3*units,)
        i_t = sigma(i_t); g_t = tanh(g_t); o_t = sigma(o_t)
        f_t = 1 - i_t                           (the coupling: no forget-gate weights)
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    It has three quarters of an LSTM's weights and, in Greff et al.'s study, the same
    quality. Gate order along the last weight axis: i, c (``g``), o.

    Args:
        units: positive int, the size of ``h_t`` and ``c_t``.
        kernel_initializer, recurrent_initializer, bias_initializer: Keras initializers.
        unit_forget_bias: if True (default), the input-gate bias ``bias[:units]`` starts at
            -1.0, so ``f_t = 1 - sigma(-1) = sigma(1)``: the same start as an LSTM's forget
            gate with Keras's ``unit_forget_bias`` (Jozefowicz et al. 2015).
        dropout, recurrent_dropout, seed: as :class:`LSTMCell`.
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
    num_states = 2

    def __init__(self, units, unit_forget_bias=True, **kwargs):
        super().__init__(units, **kwargs)
        self.unit_forget_bias = unit_forget_bias

    def _bias_init(self):
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, base = self.units, self.bias_initializer

        def bias_initializer(shape, dtype=None):
            return ops.concatenate([-ops.ones((units,), dtype=dtype),
                                    base((2 * units,), dtype=dtype)])
        return bias_initializer

    def call(self, inputs, states, training=None):
        h_prev, c_prev = self._states(inputs, states)
        inputs, h_in = self._masked(inputs, h_prev, training)
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_in, self.recurrent_kernel)
        z = z + self.bias
        i, g, o = ops.split(z, 3, axis=-1)
        i = ops.sigmoid(i)
        c = (1.0 - i) * c_prev + i * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]

    def get_config(self):
        config = super().get_config()
        config["unit_forget_bias"] = self.unit_forget_bias
        return config
