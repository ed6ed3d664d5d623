"""Attention: learnable access to past states.

All layers take ``query (batch, Tq, dim)`` and ``value (batch, Tv, dim)`` (``key`` defaults to
``value``), compute scores ``(batch, Tq, Tv)``, mask them, normalise with a softmax over the
keys and return the weighted sum of values, optionally with the attention weights for
plotting.

Masks are explicit arguments:

* ``value_mask``: bool ``(batch, Tv)``, False for padded keys;
* ``query_mask``: bool ``(batch, Tq)``, False for padded queries (their output is zero);
* ``causal=True``: query ``i`` may only see keys ``j <= i + (Tv - Tq)``. The mask is aligned
  to the **last** key, so step-wise decoding (one new query over all ``Tv`` past states,
  ``Tq = 1``) sees every key, and a full pass (``Tq = Tv``) is lower-triangular. Keras's
  ``use_causal_mask`` aligns to the first key instead; the two agree when ``Tq = Tv``.

Masked scores get a large finite negative number (not ``-inf``), so a row whose keys are all
masked attends uniformly instead of producing NaN.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf  # tf.nn.softmax only: keras.ops.softmax warns when there is one key
from keras import ops


def _large_negative(dtype):
    return -3e4 if keras.backend.standardize_dtype(dtype) == "float16" else -1e9


def causal_mask(q_len, k_len):
    """bool ``(q_len, k_len)``: query ``i`` sees keys ``j <= i + k_len - q_len`` (aligned to
    the last key; ``q_len <= k_len``), e.g. ``causal_mask(1, 3) == [[True, True, True]]``."""
    rows = ops.arange(q_len)[:, None] + (k_len - q_len)
    return rows >= ops.arange(k_len)[None, :]


def combine_masks(scores_shape, value_mask=None, causal=False):
    """The bool mask ``(batch, Tq, Tv)`` (or None when there is nothing to mask) for scores
    of shape ``(batch, Tq, Tv)``, from a bool/int ``value_mask (batch, Tv)`` (nonzero =
    attend) and/or the causal mask."""
    mask = None
    if value_mask is not None:
        mask = ops.cast(value_mask, "bool")[:, None, :]
    if causal:
        c = causal_mask(scores_shape[-2], scores_shape[-1])[None]
        mask = c if mask is None else ops.logical_and(mask, c)
    return mask


def masked_softmax(scores, value_mask=None, causal=False):
    """Attention weights from scores ``(batch, Tq, Tv)`` or ``(batch, heads, Tq, Tv)``: the
    masked scores (see the module docstring; the same mask for every head) get a large
    finite negative number, then a softmax over the keys (the last axis). Every attention
    layer here normalises with it."""
    shape = ops.shape(scores)
    mask = combine_masks((shape[0], shape[-2], shape[-1]), value_mask, causal)
    if mask is not None:
        if len(scores.shape) == 4:
            mask = mask[:, None]  # one mask for every head
        scores = ops.where(mask, scores, _large_negative(scores.dtype))
    return tf.nn.softmax(scores, axis=-1)


def _check(query, value, key, value_mask, query_mask):
    for label, t in (("query", query), ("value", value), ("key", key)):
        if len(t.shape) != 3:
            raise ValueError(f"Attention expects {label} of shape (batch, time, dim), got "
                             f"{tuple(t.shape)}.")
    if key.shape[1] is not None and value.shape[1] is not None and key.shape[1] != value.shape[1]:
        raise ValueError(f"key and value need the same length, got {key.shape[1]} and "
                         f"{value.shape[1]}.")
    for label, m, t in (("value_mask", value_mask, value), ("query_mask", query_mask, query)):
        if m is not None and tuple(m.shape) != tuple(t.shape[:2]):
            raise ValueError(f"{label} must have shape (batch, time) = {tuple(t.shape[:2])}, "
                             f"got {tuple(m.shape)}.")


class _Attention(keras.layers.Layer):
    """Masking, softmax and the weighted sum; subclasses define ``scores(query, key)``."""

    def call(self, query, value, key=None, value_mask=None, query_mask=None, causal=False,
             return_attention_scores=False, training=None):
        key = value if key is None else key
        _check(query, value, key, value_mask, query_mask)
        weights = masked_softmax(self.scores(query, key), value_mask, causal)
        out = ops.matmul(weights, value)
        if query_mask is not None:
            out = out * ops.cast(query_mask, out.dtype)[..., None]
        return (out, weights) if return_attention_scores else out

    def compute_output_shape(self, query_shape, value_shape, *args, **kwargs):
        return tuple(query_shape[:-1]) + (value_shape[-1],)


@keras.saving.register_keras_serializable(package="zoo")
class AdditiveAttention(_Attention):
    """Additive (concat) attention, Bahdanau, Cho & Bengio 2015 (eq. 6):
    ``score(q_i, k_j) = v^T tanh(W_q q_i + W_k k_j)``.

    Args:
        units: size of the projections ``W_q``, ``W_k`` (both ``(dim, units)``); None uses
            no projections (``W_q = W_k = I``, the form of ``keras.layers.AdditiveAttention``,
            which needs ``query`` and ``key`` of equal ``dim``).
        use_scale: if True, ``v`` is a learned ``(units,)`` vector (ones at init); if False,
            ``v`` is all ones.

    Call arguments (all layers here):
        query: ``(batch, Tq, dim)``; value: ``(batch, Tv, dim_v)``; key: ``(batch, Tv, dim)``,
        default ``value``; value_mask, query_mask, causal: see the module docstring;
        return_attention_scores: also return the weights ``(batch, Tq, Tv)``.

    Returns:
        ``(batch, Tq, dim_v)``, and the weights if asked.

    Raises:
        ValueError: inputs not rank 3, key/value lengths that differ, masks of the wrong
            shape.
    """

    def __init__(self, units=None, use_scale=True, **kwargs):
        super().__init__(**kwargs)
        self.units, self.use_scale = units, use_scale

    def build(self, query_shape, value_shape=None, key_shape=None):
        dim = query_shape[-1]
        key_dim = (key_shape or value_shape or query_shape)[-1]
        if self.units is not None:
            self.query_kernel = self.add_weight(shape=(dim, self.units), name="query_kernel",
                                                initializer="glorot_uniform")
            self.key_kernel = self.add_weight(shape=(key_dim, self.units), name="key_kernel",
                                              initializer="glorot_uniform")
        width = self.units or dim
        self.scale = (self.add_weight(shape=(width,), name="scale", initializer="ones")
                      if self.use_scale else None)

    def scores(self, query, key):
        if self.units is not None:
            query = ops.matmul(query, self.query_kernel)
            key = ops.matmul(key, self.key_kernel)
        hidden = ops.tanh(query[:, :, None, :] + key[:, None, :, :])
        if self.scale is not None:
            hidden = hidden * self.scale
        return ops.sum(hidden, axis=-1)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_scale": self.use_scale}


@keras.saving.register_keras_serializable(package="zoo")
class DotProductAttention(_Attention):
    """Multiplicative attention, Luong, Pham & Manning 2015 (eq. 8) and Vaswani et al. 2017.

    * ``score="dot"``: ``q_i . k_j``;
    * ``score="general"``: ``q_i W_a k_j^T`` with a learned ``W_a (dim, key_dim)``;
    * ``score="scaled_dot"``: ``q_i . k_j / sqrt(dim)`` (Vaswani et al. 2017, eq. 1).

    Args:
        score: one of ``"dot"``, ``"general"``, ``"scaled_dot"``.

    Call arguments and returns: see :class:`AdditiveAttention`.

    Raises:
        ValueError: unknown ``score``; as :class:`AdditiveAttention`.
    """

    SCORES = ("dot", "general", "scaled_dot")

    def __init__(self, score="dot", **kwargs):
        if score not in self.SCORES:
            raise ValueError(f"score must be one of {self.SCORES}, got {score!r}.")
        super().__init__(**kwargs)
        self.score = score

    def build(self, query_shape, value_shape=None, key_shape=None):
        if self.score == "general":
            key_dim = (key_shape or value_shape or query_shape)[-1]
            self.kernel = self.add_weight(shape=(query_shape[-1], key_dim), name="kernel",
                                          initializer="glorot_uniform")

    def scores(self, query, key):
        if self.score == "general":
            query = ops.matmul(query, self.kernel)
        scores = ops.matmul(query, ops.transpose(key, (0, 2, 1)))
        if self.score == "scaled_dot":
            scores = scores / math.sqrt(query.shape[-1])
        return scores

    def get_config(self):
        return {**super().get_config(), "score": self.score}


@keras.saving.register_keras_serializable(package="zoo")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017, section 3.2.2)::

        head_h = softmax(mask(Q_h K_h^T / sqrt(key_dim))) V_h,   Q_h = q W^Q_h + b^Q_h, ...
        out = concat_h(head_h) W^O + b^O

    Weights laid out like ``keras.layers.MultiHeadAttention`` (query/key/value kernels
    ``(dim, num_heads, key_dim)`` with biases ``(num_heads, key_dim)``, output kernel
    ``(num_heads, key_dim, out_dim)``, bias ``(out_dim,)``), in the order query, key, value,
    output, so ``set_weights`` copies across.

    Args:
        num_heads: number of heads, >= 1.
        key_dim: size of each head, >= 1.
        output_dim: size of the output; None: the query's ``dim``.

    Call arguments: as :class:`AdditiveAttention`; the returned weights are
    ``(batch, num_heads, Tq, Tv)``.

    Raises:
        ValueError: bad sizes; as :class:`AdditiveAttention`.
    """

    def __init__(self, num_heads, key_dim, output_dim=None, **kwargs):
        for label, v in (("num_heads", num_heads), ("key_dim", key_dim)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{label} must be a positive int, got {v!r}.")
        super().__init__(**kwargs)
        self.num_heads, self.key_dim, self.output_dim = num_heads, key_dim, output_dim

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = value_shape or query_shape
        key_shape = key_shape or value_shape
        h, d = self.num_heads, self.key_dim
        out_dim = self.output_dim or query_shape[-1]
        self.projections = {}
        for name, shape in (("query", query_shape), ("key", key_shape),
                            ("value", value_shape)):
            self.projections[name] = (
                self.add_weight(shape=(shape[-1], h, d), name=f"{name}_kernel",
                                initializer="glorot_uniform"),
                self.add_weight(shape=(h, d), name=f"{name}_bias", initializer="zeros"))
        self.output_kernel = self.add_weight(shape=(h, d, out_dim), name="output_kernel",
                                             initializer="glorot_uniform")
        self.output_bias = self.add_weight(shape=(out_dim,), name="output_bias",
                                           initializer="zeros")

    def project(self, name, x):
        """The ``name`` (``"query"``, ``"key"`` or ``"value"``) projection of ``x (batch, t,
        dim)``: ``(batch, num_heads, t, key_dim)``. A decoder's key/value cache stores these."""
        kernel, bias = self.projections[name]
        return ops.einsum("btd,dhk->bhtk", x, kernel) + bias[None, :, None, :]

    def attend(self, query, k, v, value_mask=None, causal=False):
        """Attention of raw ``query (batch, Tq, dim)`` over projected keys and values ``k``,
        ``v`` ``(batch, num_heads, Tv, key_dim)`` (from :meth:`project`).

        Returns:
            ``(out (batch, Tq, out_dim), weights (batch, num_heads, Tq, Tv))``.
        """
        q = self.project("query", query) / math.sqrt(self.key_dim)
        weights = masked_softmax(ops.einsum("bhqk,bhtk->bhqt", q, k), value_mask, causal)
        heads = ops.einsum("bhqt,bhtk->bqhk", weights, v)
        out = ops.einsum("bqhk,hko->bqo", heads, self.output_kernel) + self.output_bias
        return out, weights

    def call(self, query, value, key=None, value_mask=None, query_mask=None, causal=False,
             return_attention_scores=False, training=None):
        key = value if key is None else key
        _check(query, value, key, value_mask, query_mask)
        out, weights = self.attend(query, self.project("key", key),
                                   self.project("value", value), value_mask, causal)
        if query_mask is not None:
            out = out * ops.cast(query_mask, out.dtype)[..., None]
        return (out, weights) if return_attention_scores else out

    def compute_output_shape(self, query_shape, *args, **kwargs):
        return tuple(query_shape[:-1]) + (self.output_dim or query_shape[-1],)

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim,
                "output_dim": self.output_dim}
