"""Recurrent language models: embedding -> stacked recurrent cells [-> attention] -> logits.

One class, :class:`RecurrentLanguageModel`, covers the Elman RNN (tanh or ReLU/IRNN), LSTM
and GRU language models, with learned or one-hot input embeddings, optional tied input and
output embeddings (Press & Wolf 2017; Inan et al. 2017), and optional attention of each step's
output over the model's own past outputs (learned access to past states; the
attentional hidden state of Luong et al. 2015, eq. 5: ``o_t = tanh(W_c [h_t; a_t])``).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from zoo.attention import AdditiveAttention, DotProductAttention, MultiHeadAttention
from zoo.cells import CIFGCell, FusedRNN, GRUCell, LSTMCell, RNNCell
from zoo.models import LanguageModel, build_once, token_embedding

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell, "cifg": CIFGCell}
TWO_STATE_CELLS = ("lstm", "cifg")  # h_t and c_t
EMBEDDINGS = ("learned", "one_hot")
ATTENTIONS = ("additive", "dot", "general", "scaled_dot", "multi_head")


def _make_attention(kind, units):
    if kind == "additive":
        return AdditiveAttention(units=units, name="attention")
    if kind == "multi_head":
        return MultiHeadAttention(num_heads=4, key_dim=max(1, units // 4), name="attention")
    return DotProductAttention(score=kind, name="attention")


@keras.saving.register_keras_serializable(package="zoo")
class RecurrentLanguageModel(LanguageModel):
    """Next-token language model built from the zoo's cells.

    Args:
        vocab_size: number of token ids.
        cell: ``"rnn"`` (Elman), ``"lstm"``, ``"cifg"`` (coupled input-forget gate LSTM)
            or ``"gru"``.
        embedding: ``"learned"`` (a trained ``(vocab_size, embedding_dim)`` table) or
            ``"one_hot"`` (one-hot input vectors; the first cell's kernel is then the
            embedding).
        embedding_dim: size of the learned embedding (ignored for one-hot).
        units: size of ``h_t`` in every layer.
        num_layers: stacked recurrent layers, >= 1.
        dropout: rate on the non-recurrent connections (embedding output, between layers,
            before the output layer; Zaremba et al. 2014).
        tie_embeddings: share the input embedding as the output layer (logits =
            ``h W_emb^T + b``); a projection to ``embedding_dim`` is added when ``units``
            differs. Needs ``embedding="learned"``.
        attention: None, or the score of a causal attention of ``h_t`` over ``h_1..h_t``:
            ``"additive"``, ``"dot"``, ``"general"``, ``"scaled_dot"``, ``"multi_head"``.
        activation: the Elman cell's activation (``"tanh"`` or ``"relu"``).
        recurrent_initializer: of every cell (``"identity"`` for the IRNN); None keeps the
            cell's default (orthogonal). Initializer objects are stored serialised.
        init_scale: if set, weights start uniform in ``[-init_scale, init_scale]``.
        recurrent_dropout: per-sequence dropout on ``h_{t-1}`` inside the cells, in [0, 1)
            (the model refuses what the cells, like Keras's, would clip).
        stateful: carry every layer's final state into the next batch (truncated BPTT over
            contiguous streams; ``training.data.stream_dataset``). The batch size is then
            fixed by the first call; ``reset_states()`` zeros the states. The attention memory
            is not carried. Use :meth:`stateless_copy` for serving.
        clipnorm, clipvalue, loss_reduction, **kwargs: see
            :class:`zoo.models.LanguageModel`.

    Call arguments:
        token_ids: int ``(batch, time)``; training: bool.

    Returns:
        logits float32 ``(batch, time, vocab_size)`` (the output layer computes in float32
        under mixed precision).

    One-step call: :meth:`step` ``(token_ids (batch,), states) -> (logits (batch,
    vocab_size), new_states)`` from :meth:`initial_state`; the states are every layer's cell
    states and, with attention, the past outputs ``(batch, t, units)``.

    Raises:
        ValueError: unknown ``cell``, ``embedding`` or ``attention``; tied one-hot
            embeddings; bad sizes or rates; token ids that are not ``(batch, time)``; states
            that do not match :meth:`initial_state`.
    """

    def __init__(self, vocab_size, cell="lstm", embedding="learned", embedding_dim=200,
                 units=200, num_layers=2, dropout=0.0, tie_embeddings=False, attention=None,
                 activation="tanh", recurrent_initializer=None, init_scale=None,
                 recurrent_dropout=0.0, stateful=False, clipnorm=5.0,
                 loss_reduction="sum_over_time", clipvalue=None, **kwargs):
        super().__init__(vocab_size, clipnorm=clipnorm, loss_reduction=loss_reduction,
                         clipvalue=clipvalue, **kwargs)
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}.")
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}.")
        if attention is not None and attention not in ATTENTIONS:
            raise ValueError(f"attention must be None or one of {ATTENTIONS}, got "
                             f"{attention!r}.")
        if tie_embeddings and embedding != "learned":
            raise ValueError("tie_embeddings needs embedding='learned' (a one-hot input has "
                             "no table to share).")
        for label, value in (("embedding_dim", embedding_dim), ("units", units),
                             ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        if not 0.0 <= recurrent_dropout < 1.0:  # the cells clip like Keras; the model refuses
            raise ValueError(f"recurrent_dropout must be in [0, 1), got {recurrent_dropout!r}.")
        if init_scale is not None and not init_scale > 0:
            raise ValueError(f"init_scale must be > 0 or None, got {init_scale!r}.")
        if recurrent_initializer is not None and not isinstance(recurrent_initializer, str):
            recurrent_initializer = keras.initializers.serialize(
                keras.initializers.get(recurrent_initializer))  # keeps get_config JSON
        self.cell_type, self.embedding_type = cell, embedding
        self.embedding_dim, self.units, self.num_layers = embedding_dim, units, num_layers
        self.dropout, self.attention_type = float(dropout), attention
        self.activation, self.recurrent_initializer = activation, recurrent_initializer
        self.init_scale, self.recurrent_dropout = init_scale, float(recurrent_dropout)
        self.stateful = bool(stateful)

        init = keras.initializers.RandomUniform(-init_scale, init_scale) if init_scale else None

        def pick(default):
            return init if init is not None else default

        if embedding == "learned":
            self.embedding = token_embedding(vocab_size, embedding_dim, pick("uniform"))
        cell_kwargs = dict(kernel_initializer=pick("glorot_uniform"),
                           recurrent_initializer=recurrent_initializer
                           or pick("orthogonal"),
                           bias_initializer=pick("zeros"), recurrent_dropout=recurrent_dropout)
        if cell == "rnn":
            cell_kwargs["activation"] = activation
        if cell in TWO_STATE_CELLS:
            cell_kwargs["unit_forget_bias"] = init is None
        self.rnn_layers = [
            FusedRNN(CELLS[cell](units, **cell_kwargs), return_sequences=True,
                     stateful=self.stateful, name=f"{cell}_{i}")
            for i in range(num_layers)
        ]
        self.dropout_layer = keras.layers.Dropout(self.dropout)
        if attention is not None:
            self.attention = _make_attention(attention, units)
            self.combine = keras.layers.Dense(units, activation="tanh", name="combine")
        if tie_embeddings and units != embedding_dim:
            self.projection = keras.layers.Dense(embedding_dim, name="projection")
        self._add_output_head(tie_embeddings, kernel_initializer=pick("glorot_uniform"),
                              bias_initializer=pick("zeros"))

    # -- building blocks ------------------------------------------------------------------
    def _embed(self, token_ids):
        if self.embedding_type == "one_hot":
            return ops.one_hot(token_ids, self.vocab_size, dtype=self.compute_dtype)
        return self.embedding(token_ids)

    def logits_from_features(self, h, training=False):
        """Dropout, then (tied, ``units != embedding_dim``) the projection, then the output
        head: features ``(..., units)`` -> float32 logits ``(..., vocab_size)``."""
        h = self.dropout_layer(h, training=training)
        if self.tie_embeddings and self.units != self.embedding_dim:
            h = self.projection(h)
        return self.output_logits(h)

    def _attend(self, h, memory, causal, value_mask=None):
        context = self.attention(h, memory, causal=causal, value_mask=value_mask)
        return self.combine(ops.concatenate([h, context], axis=-1))

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{type(self).__name__} expects token ids of shape (batch, time), "
                             f"got shape {tuple(input_shape)}.")
        batch, time = input_shape

        if self.embedding_type == "learned":
            build_once(self.embedding, input_shape)
            width = self.embedding_dim
        else:
            width = self.vocab_size
        for rnn in self.rnn_layers:
            build_once(rnn, (batch, time, width))
            width = self.units
        shape = (batch, time, self.units)
        if self.attention_type is not None:
            build_once(self.attention, shape, shape)
            build_once(self.combine, (batch, time, 2 * self.units))
        if self.tie_embeddings and self.units != self.embedding_dim:
            build_once(self.projection, shape)
        self._build_output_head(shape)

    # -- full sequence ----------------------------------------------------------------------
    def _recurrent(self, token_ids, training=False):
        """The last recurrent layer's outputs ``(batch, time, units)`` (before attention)."""
        self._check_ids(token_ids, 2)
        x = self.dropout_layer(self._embed(token_ids), training=training)
        for i, rnn in enumerate(self.rnn_layers):
            x = rnn(x, training=training)
            if i + 1 < len(self.rnn_layers):
                x = self.dropout_layer(x, training=training)
        return x

    def features(self, token_ids, training=False):
        """Top features ``(batch, time, units)`` before the output layer."""
        x = self._recurrent(token_ids, training)
        if self.attention_type is not None:
            x = self._attend(x, x, causal=True)
        return x

    @property
    def has_attention(self):
        return self.attention_type is not None

    def attention_weights(self, token_ids, lengths):
        """The attention weights of each row's last token over the row's own past outputs.

        The last token's output ``h_{lengths-1}`` queries the recurrent outputs ``h_0..``
        with only positions ``< lengths`` visible, which is row ``lengths - 1`` of the
        causal pass in :meth:`features`; the weights are the attention layer's own
        (``return_attention_scores=True``).

        Args:
            token_ids: int ``(batch, time)``, right-padded.
            lengths: int ``(batch,)``, >= 1.

        Returns:
            float32 ``(batch, 1, heads, time)``: one layer; ``heads`` is 1 for the
            single-head kinds (``additive``, ``dot``, ``general``, ``scaled_dot``) and the
            layer's ``num_heads`` for ``multi_head``. 0 at padded positions.

        Raises:
            NotImplementedError: the model has no attention (``attention=None``).
        """
        if self.attention_type is None:
            return super().attention_weights(token_ids, lengths)
        x = self._recurrent(token_ids)
        lengths = ops.cast(lengths, "int32")
        last = tf.gather(x, lengths - 1, batch_dims=1)[:, None, :]
        visible = ops.arange(ops.shape(x)[1])[None, :] < lengths[:, None]
        _, weights = self.attention(last, x, value_mask=visible, return_attention_scores=True)
        if len(weights.shape) == 3:  # one head: (batch, 1, time) -> (batch, 1, 1, time)
            weights = weights[:, None]
        return ops.cast(weights[:, :, 0], "float32")[:, None]  # (batch, 1, heads, time)

    def reset_states(self):
        """Zero the carried states of a stateful model (no-op otherwise)."""
        for rnn in self.rnn_layers:
            if rnn.stateful and rnn.states is not None:
                rnn.reset_state()

    def stateless_copy(self):
        """The same model and weights with ``stateful=False`` (any batch size), for export."""
        config = {**self.get_config(), "stateful": False}
        copy = type(self).from_config(config)
        copy.build((None, 1))
        copy.set_weights(self.get_weights())
        return copy

    # -- one step ---------------------------------------------------------------------------
    def initial_state(self, batch_size):
        """Zero cell states of every layer, each ``(batch_size, units)`` (LSTM: ``h`` then
        ``c``), then (with attention) an empty memory ``(batch_size, 0, units)``; a flat
        list of tensors in the compute dtype. Builds the model if needed."""
        if not self.built:
            self.build((batch_size if self.stateful else None, 1))
        states = []
        for rnn in self.rnn_layers:
            states.extend(rnn.cell.get_initial_state(batch_size))
        if self.attention_type is not None:
            states.append(ops.zeros((batch_size, 0, self.units), dtype=self.compute_dtype))
        return states

    @property
    def states_per_layer(self):
        """State tensors per recurrent layer: 2 (``h_t``, ``c_t``) for LSTM and CIFG, else 1."""
        return 2 if self.cell_type in TWO_STATE_CELLS else 1

    def _cells_step(self, token_ids, states):
        """Embed ``token_ids (batch,)`` and run every layer's cell one step on its states
        (the first ``num_layers * states_per_layer`` of ``states``), dropout off. Returns the
        top output ``(batch, units)`` and the new cell states."""
        x = self._embed(token_ids)
        per_layer, new_states = self.states_per_layer, []
        for i, rnn in enumerate(self.rnn_layers):
            x, out = rnn.cell(x, states[i * per_layer:(i + 1) * per_layer], training=False)
            new_states.extend(out)
        return x, new_states

    def step(self, token_ids, states):
        """One token per row, dropout off.

        Args:
            token_ids: int ``(batch,)``.
            states: as returned by :meth:`initial_state` or the previous ``step``.

        Returns:
            ``(logits, new_states)``: float32 ``(batch, vocab_size)`` and the next states.

        Raises:
            ValueError: ids not ``(batch,)``; a wrong number of states or a state whose shape
                is not ``(batch, units)`` (memory ``(batch, t, units)``).
        """
        self._check_ids(token_ids, 1)
        expected = self.num_layers * self.states_per_layer + (self.attention_type is not None)
        states = list(states)
        if len(states) != expected:
            raise ValueError(f"{type(self).__name__}.step expects {expected} state tensors "
                             f"(from initial_state), got {len(states)}.")
        batch = token_ids.shape[0]
        for i, state in enumerate(states):
            want = ((batch, None, self.units) if i == len(states) - 1 and
                    self.attention_type is not None else (batch, self.units))
            got = tuple(state.shape)
            if len(got) != len(want) or any(w is not None and g is not None and w != g
                                            for w, g in zip(want, got)):
                raise ValueError(f"State {i} has shape {got}; expected {want} for "
                                 f"{batch} token ids (use initial_state({batch})).")
        x, new_states = self._cells_step(token_ids, states)
        if self.attention_type is not None:
            memory = ops.concatenate([states[-1], x[:, None, :]], axis=1)
            x = self._attend(x[:, None, :], memory, causal=True)[:, 0]
            new_states.append(memory)
        return self.logits_from_features(x), new_states

    # -- one step, fixed-shape states (LiteRT) --------------------------------------------
    def fixed_state_spec(self, batch_size=1, window=256):
        """``h_i`` (and ``c_i`` for LSTM/CIFG) ``(batch_size, units)`` float32 per layer ``i``;
        with attention also ``memory (batch_size, window, units)`` float32, the last
        ``window`` outputs (oldest first, right-aligned), and ``count (batch_size,)`` int32,
        how many of its slots are filled. All start at zero."""
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}.")
        names = ("h", "c")[:self.states_per_layer]
        spec = [(f"{n}_{i}", (batch_size, self.units), "float32")
                for i in range(self.num_layers) for n in names]
        if self.attention_type is not None:
            spec += [("memory", (batch_size, window, self.units), "float32"),
                     ("count", (batch_size,), "int32")]
        return spec

    def fixed_step(self, token_ids, states):
        """:meth:`step` with a fixed-size attention memory (the cell states are the same).

        The memory is a sliding window: each step shifts it left by one slot, writes the new
        output into the last slot and attends only over the ``count`` filled slots
        (``value_mask``). While at most ``window`` tokens have been read this equals
        :meth:`step` exactly; after that the model attends over the last ``window`` outputs.

        Args:
            token_ids: int32 ``(batch,)``.
            states: tensors in the order of :meth:`fixed_state_spec`.

        Returns:
            ``(logits float32 (batch, vocab_size), new_states)`` in the same order.
        """
        states = list(states)
        if self.attention_type is None:
            return self.step(token_ids, states)
        memory, count = states[-2], states[-1]
        window = memory.shape[1]
        x, new_states = self._cells_step(token_ids, states)
        memory = ops.concatenate([memory[:, 1:], x[:, None, :]], axis=1)
        count = ops.minimum(count + 1, window)
        value_mask = ops.arange(window)[None, :] >= (window - count)[:, None]
        x = self._attend(x[:, None, :], memory, causal=False, value_mask=value_mask)[:, 0]
        return self.logits_from_features(x), new_states + [memory, count]

    def get_config(self):
        config = super().get_config()
        config.update(
            cell=self.cell_type, embedding=self.embedding_type,
            embedding_dim=self.embedding_dim, units=self.units, num_layers=self.num_layers,
            dropout=self.dropout, tie_embeddings=self.tie_embeddings,
            attention=self.attention_type, activation=self.activation,
            recurrent_initializer=self.recurrent_initializer, init_scale=self.init_scale,
            recurrent_dropout=self.recurrent_dropout, stateful=self.stateful)
        return config


@keras.saving.register_keras_serializable(package="zoo")
class LSTMLanguageModel(RecurrentLanguageModel):
    """:class:`RecurrentLanguageModel` with ``cell="lstm"``: embedding -> stacked
    ``RNN(zoo.LSTMCell)`` -> dense logits (Zaremba et al. 2014). Same arguments, less
    ``cell``."""

    def __init__(self, vocab_size, **kwargs):
        kwargs.pop("cell", None)
        super().__init__(vocab_size, cell="lstm", **kwargs)
