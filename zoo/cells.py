"""Recurrent cells written from their equations, usable inside ``keras.layers.RNN``.

Every cell follows Keras's cell contract: ``state_size``, ``output_size``,
``get_initial_state(batch_size)`` and ``call(inputs, states, training=None) ->
(output, new_states)``, with one time step per call. Weights use Keras's row-vector
layout (``z = x_t @ kernel + h_{t-1} @ recurrent_kernel + bias``), so
``set_weights(builtin_cell.get_weights())`` copies across in both directions.
"""

from __future__ import annotations

import keras
from keras import ops


def _check_step_input(cell_name, inputs, states, expected_states):
    """Raise ``ValueError`` for an input that is not ``(batch, features)`` or wrong states."""
    if len(inputs.shape) != 2:
        raise ValueError(
            f"{cell_name} expects one time step of shape (batch, features), got an input of "
            f"shape {tuple(inputs.shape)}. Wrap the cell in keras.layers.RNN to run it over "
            "a (batch, time, features) sequence."
        )
    if len(states) != expected_states:
        raise ValueError(
            f"{cell_name} expects {expected_states} state tensors, got {len(states)}."
        )


@keras.saving.register_keras_serializable(package="zoo")
class LSTMCell(keras.layers.Layer):
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
        **kwargs: passed to ``keras.layers.Layer`` (``name``, ``dtype``, ...).

    Call arguments:
        inputs: float tensor ``(batch, input_dim)``, the input ``x_t`` of one time step.
        states: list ``[h_{t-1}, c_{t-1}]``, each ``(batch, units)``.
        training: unused (accepted for the cell contract).

    Returns:
        ``(h_t, [h_t, c_t])``, each ``(batch, units)``.

    Raises:
        ValueError: ``units`` is not a positive int; the input is not rank 2; the number of
            states is not 2.

    Example:
        >>> layer = keras.layers.RNN(LSTMCell(8), return_sequences=True)
        >>> layer(np.zeros((2, 5, 3), "float32")).shape      # (batch, time, units)
        (2, 5, 8)
    """

    def __init__(
        self,
        units,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        **kwargs,
    ):
        if not isinstance(units, int) or isinstance(units, bool) or units <= 0:
            raise ValueError(f"LSTMCell units must be a positive int, got {units!r}.")
        super().__init__(**kwargs)
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.unit_forget_bias = unit_forget_bias
        self.state_size = [units, units]
        self.output_size = units

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "LSTMCell expects one time step of shape (batch, features) with a known "
                f"feature size, got {tuple(input_shape)}."
            )
        input_dim = int(input_shape[-1])
        self.kernel = self.add_weight(
            shape=(input_dim, 4 * self.units), initializer=self.kernel_initializer, name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, 4 * self.units),
            initializer=self.recurrent_initializer,
            name="recurrent_kernel",
        )
        if self.unit_forget_bias:
            units, base = self.units, self.bias_initializer

            def bias_initializer(shape, dtype=None):
                return ops.concatenate(
                    [base((units,), dtype=dtype), ops.ones((units,), dtype=dtype),
                     base((2 * units,), dtype=dtype)]
                )
        else:
            bias_initializer = self.bias_initializer
        self.bias = self.add_weight(
            shape=(4 * self.units,), initializer=bias_initializer, name="bias"
        )

    def call(self, inputs, states, training=None):
        _check_step_input("LSTMCell", inputs, states, 2)
        h_prev, c_prev = states
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_prev, self.recurrent_kernel)
        z = z + self.bias
        i, f, g, o = ops.split(z, 4, axis=-1)
        c = ops.sigmoid(f) * c_prev + ops.sigmoid(i) * ops.tanh(g)
        h = ops.sigmoid(o) * ops.tanh(c)
        return h, [h, c]

    def get_initial_state(self, batch_size=None):
        """Zero states ``[h_0, c_0]``, each ``(batch_size, units)`` in the cell's dtype."""
        return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype) for _ in range(2)]

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
            bias_initializer=keras.initializers.serialize(self.bias_initializer),
            unit_forget_bias=self.unit_forget_bias,
        )
        return config
