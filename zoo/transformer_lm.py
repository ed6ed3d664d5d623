"""A small Transformer decoder language model, for comparison with the recurrent ones.

Pre-LayerNorm decoder blocks (Vaswani et al. 2017, with the normalisation placement of
GPT-2, Radford et al. 2019)::

    x_0 = E[token] + P[position]
    x   = x + MHA(LN(x), causal)          (zoo.MultiHeadAttention)
    x   = x + W_2 gelu(W_1 LN(x))
    logits = LN(x) E^T + b  (tied) or LN(x) W_out + b
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from zoo.attention import MultiHeadAttention
from zoo.models import LanguageModel, build_once


@keras.saving.register_keras_serializable(package="zoo")
class TransformerLanguageModel(LanguageModel):
    """Decoder-only Transformer language model.

    Args:
        vocab_size: number of token ids.
        model_dim: width of the residual stream (embedding size), divisible by ``num_heads``.
        num_layers: decoder blocks, >= 1.
        num_heads: attention heads per block.
        ffn_dim: hidden width of each block's feed-forward network.
        max_length: longest sequence (learned position embeddings); longer inputs raise.
        dropout: rate after the embedding, attention and feed-forward outputs.
        tie_embeddings: use the token embedding as the output layer (default True).
        clipnorm, clipvalue, loss_reduction, **kwargs: see
            :class:`zoo.models.LanguageModel`.

    Call arguments:
        token_ids: int ``(batch, time)``, ``time <= max_length``; training: bool.

    Returns:
        logits float32 ``(batch, time, vocab_size)``.

    One-step call: the states are, per block, the projected keys and values of the positions
    read so far, ``(batch, num_heads, t, model_dim // num_heads)`` each, then the position
    ``t`` ``(batch,)`` int32.

    Raises:
        ValueError: bad sizes; ``model_dim`` not divisible by ``num_heads``; an input longer
            than ``max_length``; token ids that are not ``(batch, time)``; wrong states.
    """

    def __init__(self, vocab_size, model_dim=128, num_layers=2, num_heads=4, ffn_dim=512,
                 max_length=256, dropout=0.0, tie_embeddings=True, clipnorm=1.0,
                 loss_reduction="mean", clipvalue=None, **kwargs):
        super().__init__(vocab_size, clipnorm=clipnorm, loss_reduction=loss_reduction,
                         clipvalue=clipvalue, **kwargs)
        for label, value in (("model_dim", model_dim), ("num_layers", num_layers),
                             ("num_heads", num_heads), ("ffn_dim", ffn_dim),
                             ("max_length", max_length)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}.")
        if model_dim % num_heads:
            raise ValueError(f"model_dim ({model_dim}) must be divisible by num_heads "
                             f"({num_heads}).")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        self.model_dim, self.num_layers, self.num_heads = model_dim, num_layers, num_heads
        self.ffn_dim, self.max_length, self.dropout = ffn_dim, max_length, float(dropout)
        self.tie_embeddings = tie_embeddings
        self.embedding = keras.layers.Embedding(vocab_size, model_dim, name="embedding")
        self.positions = keras.layers.Embedding(max_length, model_dim, name="positions")
        self.blocks = []
        for i in range(num_layers):
            self.blocks.append({
                "ln_1": keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln_1_{i}"),
                "attention": MultiHeadAttention(num_heads, model_dim // num_heads,
                                                name=f"attention_{i}"),
                "ln_2": keras.layers.LayerNormalization(epsilon=1e-5, name=f"ln_2_{i}"),
                "ffn_1": keras.layers.Dense(ffn_dim, activation="gelu", name=f"ffn_1_{i}"),
                "ffn_2": keras.layers.Dense(model_dim, name=f"ffn_2_{i}"),
            })
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")
        self.dropout_layer = keras.layers.Dropout(self.dropout)
        if tie_embeddings:
            self.output_bias = self.add_weight(shape=(vocab_size,), initializer="zeros",
                                               name="output_bias")
        else:
            self.head = keras.layers.Dense(vocab_size, dtype="float32", name="logits")

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{type(self).__name__} expects token ids of shape (batch, time), "
                             f"got shape {tuple(input_shape)}.")
        shape = tuple(input_shape) + (self.model_dim,)

        build_once(self.embedding, input_shape)
        build_once(self.positions, input_shape)
        for block in self.blocks:
            build_once(block["ln_1"], shape)
            build_once(block["attention"], shape, shape)
            build_once(block["ln_2"], shape)
            build_once(block["ffn_1"], shape)
            build_once(block["ffn_2"], shape[:-1] + (self.ffn_dim,))
        build_once(self.final_norm, shape)
        if not self.tie_embeddings:
            build_once(self.head, shape)

    def _block(self, block, x, training, return_weights=False):
        """One decoder block over the whole sequence ``(batch, time, model_dim)``, causal. With
        ``return_weights`` also the attention weights ``(batch, heads, Tq, Tv)``."""
        h = block["ln_1"](x)
        out = block["attention"](h, h, causal=True, return_attention_scores=return_weights)
        if return_weights:
            out, weights = out
        x = self._feed_forward(block, x + self.dropout_layer(out, training=training), training)
        return (x, weights) if return_weights else x

    def _feed_forward(self, block, x, training=False):
        """The block's second half: ``x + W_2 gelu(W_1 LN(x))`` (dropout on the branch)."""
        branch = block["ffn_2"](block["ffn_1"](block["ln_2"](x)))
        return x + self.dropout_layer(branch, training=training)

    def _cached_step(self, token_ids, states, write, value_mask=None):
        """What :meth:`step` and :meth:`fixed_step` share: embed each row's token at its
        ``position`` (``states[-1]``); in every block project only that position's key and
        value, store them with ``write(cache, new) -> cache`` (``new`` is ``(batch, heads, 1,
        head_dim)``), attend over the cache (``value_mask (batch, slots)`` or all of it) and
        apply the feed-forward half. Returns ``(logits (batch, vocab_size), new_states)``."""
        position = states[-1]
        x = (self.embedding(token_ids) + self.positions(position))[:, None, :]
        new_states = []
        for i, block in enumerate(self.blocks):
            attention = block["attention"]
            h = block["ln_1"](x)
            keys = write(states[2 * i], attention.project("key", h))
            values = write(states[2 * i + 1], attention.project("value", h))
            context = attention.attend(h, keys, values, value_mask=value_mask)[0]
            x = self._feed_forward(block, x + context)
            new_states += [keys, values]
        return self._logits(x[:, 0]), new_states + [position + 1]

    def _logits(self, x):
        x = self.final_norm(x)
        if self.tie_embeddings:  # logits in float32, also under mixed precision
            table = ops.cast(self.embedding.embeddings, "float32")
            return ops.matmul(ops.cast(x, "float32"), ops.transpose(table)) + ops.cast(
            self.output_bias, "float32")
        return self.head(x)

    def _inputs(self, token_ids, training=False):
        """Token plus position embeddings ``(batch, time, model_dim)``, the blocks' input."""
        self._check_ids(token_ids, 2)
        time = token_ids.shape[1]
        if time is not None and time > self.max_length:
            raise ValueError(f"A sequence of {time} tokens is longer than max_length="
                             f"{self.max_length}.")
        positions = ops.arange(ops.shape(token_ids)[1])
        x = self.embedding(token_ids) + self.positions(positions)[None]
        return self.dropout_layer(x, training=training)

    def features(self, token_ids, training=False):
        """Residual stream after the last block, ``(batch, time, model_dim)``."""
        x = self._inputs(token_ids, training)
        for block in self.blocks:
            x = self._block(block, x, training)
        return x

    @property
    def has_attention(self):
        return True

    def attention_weights(self, token_ids, lengths):
        """Every block's attention weights of each row's last token (``lengths - 1``) over
        the row's positions: row ``lengths - 1`` of the causal weights each block's
        ``MultiHeadAttention`` returns (``return_attention_scores=True``) in the same pass
        as :meth:`features`.

        Args:
            token_ids: int ``(batch, time)``, right-padded, ``time <= max_length``.
            lengths: int ``(batch,)``, >= 1.

        Returns:
            float32 ``(batch, num_layers, num_heads, time)``, 0 at padded positions (the
            causal mask hides every position after the last token).
        """
        x = self._inputs(token_ids)
        last = ops.cast(lengths, "int32") - 1
        rows = []
        for block in self.blocks:
            x, weights = self._block(block, x, False, return_weights=True)
            rows.append(tf.gather(weights, last, axis=2, batch_dims=1))  # (batch, heads, Tv)
        return ops.cast(ops.stack(rows, axis=1), "float32")

    def call(self, token_ids, training=False):
        return self._logits(self.features(token_ids, training))

    def next_token_logits(self, token_ids, lengths):
        """Logits float32 ``(batch, vocab_size)`` at token ``lengths - 1`` of each row."""
        return self._logits(tf.gather(self.features(token_ids), lengths - 1, batch_dims=1))

    def initial_state(self, batch_size):
        """Per block an empty key and an empty value cache, each ``(batch_size, num_heads, 0,
        model_dim // num_heads)`` (the projected keys and values of the positions read so
        far), then the position 0 ``(batch_size,)`` int32. Builds the model if needed."""
        if not self.built:
            self.build((None, 1))
        empty = ops.zeros((batch_size, self.num_heads, 0, self.model_dim // self.num_heads),
                          dtype=self.compute_dtype)
        return [empty] * (2 * self.num_layers) + [ops.zeros((batch_size,), dtype="int32")]

    def step(self, token_ids, states):
        """One token per row with a key/value cache: only the new position is projected into
        a key and a value (``O(d^2 + t d)`` work at position ``t``, not ``O(t d^2)``), and
        its query attends over every cached position.

        Args:
            token_ids: int ``(batch,)``.
            states: from :meth:`initial_state` or the previous ``step``: per block the key
                and the value cache ``(batch, num_heads, t, head_dim)``, then the position.

        Returns:
            ``(logits, new_states)``: float32 ``(batch, vocab_size)``; caches grown by one.

        Raises:
            ValueError: ids not ``(batch,)``; wrong states; eagerly, a position at or past
                ``max_length`` (in a ``tf.function``: ``tf.errors.InvalidArgumentError``).
        """
        self._check_ids(token_ids, 1)
        states = list(states)
        if len(states) != 2 * self.num_layers + 1:
            raise ValueError(f"{type(self).__name__}.step expects {2 * self.num_layers + 1} "
                             f"state tensors (from initial_state), got {len(states)}.")
        batch = token_ids.shape[0]
        head_dim = self.model_dim // self.num_heads
        for i, cache in enumerate(states[:-1]):
            got = tuple(cache.shape)
            if len(got) != 4 or got[1] != self.num_heads or got[3] != head_dim or (
                    None not in (batch, got[0]) and got[0] != batch):
                raise ValueError(f"Cache {i} has shape {got}; expected ({batch}, "
                                 f"{self.num_heads}, t, {head_dim}) (use "
                                 f"initial_state({batch})).")
        position = states[-1]
        message = (f"{type(self).__name__} reads at most max_length={self.max_length} tokens "
                   "(prompt plus generated)")
        if tf.executing_eagerly():
            if int(ops.max(position)) >= self.max_length:
                raise ValueError(f"{message}; token {int(ops.max(position)) + 1} asked for.")
        else:
            tf.debugging.assert_less(position, self.max_length, message=message)
        # The caches grow by one position; the newest query sees every key.
        return self._cached_step(token_ids, states,
                                 lambda cache, new: ops.concatenate([cache, new], axis=2))

    def fixed_state_spec(self, batch_size=1, window=None):
        """Per block ``i`` a key and a value cache, ``key_i`` and ``value_i`` ``(batch_size,
        num_heads, max_length, model_dim // num_heads)`` float32 (the projected keys and
        values, slot ``t`` for position ``t``), then ``position (batch_size,)`` int32, the
        position of the next token. All start at zero; ``window`` is ignored (the cache always
        has ``max_length`` slots)."""
        shape = (batch_size, self.num_heads, self.max_length, self.model_dim // self.num_heads)
        spec = []
        for i in range(self.num_layers):
            spec += [(f"key_{i}", shape, "float32"), (f"value_{i}", shape, "float32")]
        return spec + [("position", (batch_size,), "int32")]

    def fixed_step(self, token_ids, states):
        """:meth:`step` with a key/value cache of ``max_length`` slots per block.

        The new key and value are written into slot ``position`` (a one-hot blend, no
        scatter), and the query attends over slots ``0..position``. Equal to :meth:`step`
        for positions ``0..max_length - 1``; a position at or past ``max_length`` is out of
        range (the caller must stop or start again: the LiteRT runner re-reads the last
        ``max_length // 2`` tokens then).

        Args:
            token_ids: int32 ``(batch,)``.
            states: tensors in the order of :meth:`fixed_state_spec`.

        Returns:
            ``(logits float32 (batch, vocab_size), new_states)`` in the same order.
        """
        states = list(states)
        position = states[-1]
        slot = ops.one_hot(position, self.max_length, dtype=states[0].dtype)[:, None, :, None]
        visible = ops.arange(self.max_length)[None, :] <= position[:, None]
        return self._cached_step(token_ids, states,
                                 lambda cache, new: cache * (1.0 - slot) + new * slot, visible)

    def get_config(self):
        config = super().get_config()
        config.update(model_dim=self.model_dim, num_layers=self.num_layers,
                      num_heads=self.num_heads, ffn_dim=self.ffn_dim,
                      max_length=self.max_length, dropout=self.dropout,
                      tie_embeddings=self.tie_embeddings)
        return config
