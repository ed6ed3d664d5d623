"""A small Transformer decoder language model, for comparison with the recurrent ones.

Pre-LayerNorm decoder blocks (Vaswani et al. 2017, with the normalisation placement of
GPT-2, Radford et al. 2019), each a :class:`TransformerDecoderBlock` layer::

    x_0 = E[token] + P[position]
    x   = x + MHA(LN(x), causal)          (zoo.MultiHeadAttention)    } one
    x   = x + W_2 gelu(W_1 LN(x))                                      } block
    logits = LN(x) E^T + b  (tied) or LN(x) W_out + b
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from zoo.attention import MultiHeadAttention
from zoo.models import LanguageModel, build_once, token_embedding


@keras.saving.register_keras_serializable(package="zoo")
class TransformerDecoderBlock(keras.layers.Layer):
    """One pre-LayerNorm Transformer decoder block (Vaswani et al. 2017, section 3.1, with
    GPT-2's placement of the normalisation, Radford et al. 2019; the layer split of
    keras-hub's ``TransformerDecoder``)::

        x = x + dropout(MHA(LN_1(x), causal))
        x = x + dropout(W_2 gelu(W_1 LN_2(x) + b_1) + b_2)

    Args:
        num_heads: attention heads, >= 1, dividing the input width ``model_dim``.
        ffn_dim: hidden width of the feed-forward network, >= 1.
        dropout: rate on both residual branches, in [0, 1).
        layer_norm_epsilon: of both LayerNormalizations.
        **kwargs: passed to ``keras.layers.Layer``.

    Call arguments:
        x: float ``(batch, time, model_dim)``; training: bool (dropout);
        return_attention_scores: also return the attention weights
        ``(batch, num_heads, time, time)``.

    Returns:
        ``(batch, time, model_dim)``, and the weights if asked.

    Sub-layers (created in ``build``, in this weight order): ``ln_1``, ``attention``
    (:class:`zoo.MultiHeadAttention`), ``ln_2``, ``ffn_1``, ``ffn_2``.

    Example::

        block = TransformerDecoderBlock(num_heads=4, ffn_dim=512)
        y = block(keras.random.normal((2, 10, 128)))      # (2, 10, 128), causal

    Raises:
        ValueError: bad sizes; an input width not divisible by ``num_heads``.
    """

    def __init__(self, num_heads, ffn_dim, dropout=0.0, layer_norm_epsilon=1e-5, **kwargs):
        super().__init__(**kwargs)
        for label, value in (("num_heads", num_heads), ("ffn_dim", ffn_dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        self.num_heads, self.ffn_dim = num_heads, ffn_dim
        self.dropout, self.layer_norm_epsilon = float(dropout), layer_norm_epsilon

    def build(self, input_shape):
        model_dim = input_shape[-1]
        if model_dim % self.num_heads:
            raise ValueError(f"The input width ({model_dim}) must be divisible by num_heads "
                             f"({self.num_heads}).")
        eps = self.layer_norm_epsilon
        self.ln_1 = keras.layers.LayerNormalization(epsilon=eps, name="ln_1")
        self.attention = MultiHeadAttention(self.num_heads, model_dim // self.num_heads,
                                            name="attention")
        self.ln_2 = keras.layers.LayerNormalization(epsilon=eps, name="ln_2")
        self.ffn_1 = keras.layers.Dense(self.ffn_dim, activation="gelu", name="ffn_1")
        self.ffn_2 = keras.layers.Dense(model_dim, name="ffn_2")
        self.dropout_layer = keras.layers.Dropout(self.dropout)
        self.ln_1.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.ln_2.build(input_shape)
        self.ffn_1.build(input_shape)
        self.ffn_2.build(tuple(input_shape[:-1]) + (self.ffn_dim,))

    def feed_forward(self, x, training=False):
        """The second half: ``x + dropout(W_2 gelu(W_1 LN_2(x)))``, same shape as ``x``."""
        branch = self.ffn_2(self.ffn_1(self.ln_2(x)))
        return x + self.dropout_layer(branch, training=training)

    def call(self, x, training=None, return_attention_scores=False):
        h = self.ln_1(x)
        out, weights = self.attention(h, h, causal=True, return_attention_scores=True)
        x = self.feed_forward(x + self.dropout_layer(out, training=training), training)
        return (x, weights) if return_attention_scores else x

    def cached_step(self, x, keys, values, write, value_mask=None):
        """The block on new positions ``x (batch, 1, model_dim)`` with a key/value cache,
        dropout off: only ``x`` is projected into a key and a value (``(batch, num_heads, 1,
        head_dim)``), stored with ``write(cache, new) -> cache``; the query attends over the
        whole cache (or its ``value_mask (batch, slots)``).

        Returns:
            ``(x (batch, 1, model_dim), keys, values)``: the block's output and the caches.
        """
        h = self.ln_1(x)
        keys = write(keys, self.attention.project("key", h))
        values = write(values, self.attention.project("value", h))
        context = self.attention.attend(h, keys, values, value_mask=value_mask)[0]
        return self.feed_forward(x + context), keys, values

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "ffn_dim": self.ffn_dim,
                "dropout": self.dropout, "layer_norm_epsilon": self.layer_norm_epsilon}


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
        self.embedding = token_embedding(vocab_size, model_dim)
        self.positions = keras.layers.Embedding(max_length, model_dim, name="positions")
        self.blocks = [TransformerDecoderBlock(num_heads, ffn_dim, dropout, name=f"block_{i}")
                       for i in range(num_layers)]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-5, name="final_norm")
        self.dropout_layer = keras.layers.Dropout(self.dropout)
        self._add_output_head(tie_embeddings)

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"{type(self).__name__} expects token ids of shape (batch, time), "
                             f"got shape {tuple(input_shape)}.")
        shape = tuple(input_shape) + (self.model_dim,)

        build_once(self.embedding, input_shape)
        build_once(self.positions, input_shape)
        for block in self.blocks:
            build_once(block, shape)
        build_once(self.final_norm, shape)
        self._build_output_head(shape)

    def _cached_step(self, token_ids, states, write, value_mask=None):
        """What :meth:`step` and :meth:`fixed_step` share: embed each row's token at its
        ``position`` (``states[-1]``) and run every block's
        :meth:`TransformerDecoderBlock.cached_step` on its caches with ``write(cache, new) ->
        cache`` (``new`` is ``(batch, heads, 1, head_dim)``) and ``value_mask (batch,
        slots)`` (None: all of the cache). Returns ``(logits (batch, vocab_size), new_states)``."""
        position = states[-1]
        x = (self.embedding(token_ids) + self.positions(position))[:, None, :]
        new_states = []
        for i, block in enumerate(self.blocks):
            x, keys, values = block.cached_step(x, states[2 * i], states[2 * i + 1], write,
                                                value_mask)
            new_states += [keys, values]
        return self.logits_from_features(x[:, 0]), new_states + [position + 1]

    def logits_from_features(self, x, training=False):
        """The final LayerNorm, then the output head: ``(..., model_dim)`` -> float32
        logits ``(..., vocab_size)``."""
        return self.output_logits(self.final_norm(x))

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
            x = block(x, training=training)
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
            x, weights = block(x, return_attention_scores=True)
            rows.append(tf.gather(weights, last, axis=2, batch_dims=1))  # (batch, heads, Tv)
        return ops.cast(ops.stack(rows, axis=1), "float32")

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
