"""Attention layers against Keras's built-ins, with padding and causal masks."""

import math

import keras
import numpy as np
import pytest

from zoo.attention import AdditiveAttention, DotProductAttention, MultiHeadAttention, causal_mask

B, TQ, TV, DIM = 2, 4, 6, 8


def _data(seed=0, tq=TQ, tv=TV):
    rng = np.random.default_rng(seed)
    q = rng.normal(size=(B, tq, DIM)).astype("float32")
    v = rng.normal(size=(B, tv, DIM)).astype("float32")
    k = rng.normal(size=(B, tv, DIM)).astype("float32")
    v_mask = np.ones((B, tv), bool)
    v_mask[0, -2:] = False
    q_mask = np.ones((B, tq), bool)
    q_mask[1, -1] = False
    return q, v, k, v_mask, q_mask


def _keras_attention(layer, q, v, k, v_mask, q_mask, causal=False):
    return layer([q, v, k], mask=[q_mask, v_mask], return_attention_scores=True,
                 use_causal_mask=causal)


def test_additive_equals_keras_additive_attention():
    q, v, k, v_mask, q_mask = _data()
    ours, theirs = AdditiveAttention(), keras.layers.AdditiveAttention(use_scale=True)
    _keras_attention(theirs, q, v, k, v_mask, q_mask)
    ours(q, v, k)
    scale = np.random.default_rng(1).normal(size=(DIM,)).astype("float32")
    ours.set_weights([scale])
    theirs.set_weights([scale])
    out, w = ours(q, v, k, value_mask=v_mask, query_mask=q_mask, return_attention_scores=True)
    ref_out, ref_w = _keras_attention(theirs, q, v, k, v_mask, q_mask)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(w[0], ref_w[0], atol=1e-6)  # row 0: padded keys
    assert np.all(np.asarray(w)[0, :, -2:] < 1e-6)


def test_additive_with_projections_equals_keras_on_projected_inputs():
    q, v, k, v_mask, q_mask = _data(seed=2)
    ours = AdditiveAttention(units=5)
    ours(q, v, k)
    wq, wk, scale = ours.get_weights()
    theirs = keras.layers.AdditiveAttention(use_scale=True)
    _keras_attention(theirs, q @ wq, v, k @ wk, v_mask, q_mask)
    theirs.set_weights([scale])
    np.testing.assert_allclose(
        ours(q, v, k, value_mask=v_mask, query_mask=q_mask),
        _keras_attention(theirs, q @ wq, v, k @ wk, v_mask, q_mask)[0], atol=1e-5)


@pytest.mark.parametrize("score", ["dot", "scaled_dot"])
def test_dot_and_scaled_dot_equal_keras_attention(score):
    q, v, k, v_mask, q_mask = _data(seed=3)
    theirs = keras.layers.Attention(use_scale=score == "scaled_dot", score_mode="dot")
    _keras_attention(theirs, q, v, k, v_mask, q_mask)
    if score == "scaled_dot":
        theirs.set_weights([np.array(1 / math.sqrt(DIM), "float32")])
    out, w = DotProductAttention(score)(q, v, k, value_mask=v_mask, query_mask=q_mask,
                                        return_attention_scores=True)
    ref_out, ref_w = _keras_attention(theirs, q, v, k, v_mask, q_mask)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(w[0], ref_w[0], atol=1e-6)


def test_general_equals_keras_dot_on_a_projected_query():
    q, v, k, v_mask, q_mask = _data(seed=4)
    ours = DotProductAttention("general")
    ours(q, v, k)
    (w_a,) = ours.get_weights()
    theirs = keras.layers.Attention(score_mode="dot")
    np.testing.assert_allclose(
        ours(q, v, k, value_mask=v_mask, query_mask=q_mask),
        _keras_attention(theirs, q @ w_a, v, k, v_mask, q_mask)[0], atol=1e-5)


def test_multi_head_equals_keras_multi_head_attention():
    q, v, k, v_mask, _ = _data(seed=5)
    ours, theirs = MultiHeadAttention(3, 4), keras.layers.MultiHeadAttention(3, 4)
    ours(q, v, k)
    theirs(q, v, k)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in theirs.get_weights()]
    rng = np.random.default_rng(6)
    weights = [rng.normal(scale=0.4, size=w.shape).astype("float32")
               for w in theirs.get_weights()]
    ours.set_weights(weights)
    theirs.set_weights(weights)
    out, w = ours(q, v, k, value_mask=v_mask, return_attention_scores=True)
    ref_out, ref_w = theirs(q, v, k, attention_mask=np.repeat(v_mask[:, None], TQ, axis=1),
                            return_attention_scores=True)
    np.testing.assert_allclose(out, ref_out, atol=1e-5)
    np.testing.assert_allclose(w, ref_w, atol=1e-6)


def test_full_causal_equals_keras_causal_when_lengths_match():
    q, v, k, *_ = _data(seed=7, tq=TV)
    ours, theirs = MultiHeadAttention(2, 4), keras.layers.MultiHeadAttention(2, 4)
    ours(q, v, k)
    theirs(q, v, k)
    ours.set_weights(theirs.get_weights())
    np.testing.assert_allclose(ours(q, v, k, causal=True),
                               theirs(q, v, k, use_causal_mask=True), atol=1e-5)


@pytest.mark.parametrize("make", [lambda: AdditiveAttention(), lambda: DotProductAttention(),
                                  lambda: DotProductAttention("scaled_dot"),
                                  lambda: MultiHeadAttention(2, 4)])
def test_step_wise_causal_query_equals_the_last_row_of_full_causal_attention(make):
    """One new query over all T past states (Tq=1 < Tv) must see every key."""
    rng = np.random.default_rng(8)
    states = rng.normal(size=(B, TV, DIM)).astype("float32")
    layer = make()
    full = np.asarray(layer(states, states, causal=True))
    for t in range(1, TV + 1):
        step = layer(states[:, t - 1:t], states[:, :t], causal=True)
        np.testing.assert_allclose(step[:, 0], full[:, t - 1], atol=1e-5)


def test_causal_mask_alignment():
    np.testing.assert_array_equal(causal_mask(1, 3), [[True, True, True]])
    np.testing.assert_array_equal(causal_mask(3, 3), np.tril(np.ones((3, 3), bool)))
    np.testing.assert_array_equal(causal_mask(2, 4), [[1, 1, 1, 0], [1, 1, 1, 1]])


def test_fully_masked_row_is_finite():
    q, v, k, _, _ = _data()
    out = DotProductAttention()(q, v, k, value_mask=np.zeros((B, TV), bool))
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("kwargs, match", [
    ({"value_mask": np.ones((B, TV + 1), bool)}, "value_mask"),
    ({"query_mask": np.ones((B,), bool)}, "query_mask"),
])
def test_masks_of_the_wrong_shape(kwargs, match):
    q, v, k, *_ = _data()
    with pytest.raises(ValueError, match=match):
        DotProductAttention()(q, v, k, **kwargs)


def test_wrong_rank_and_unknown_score():
    with pytest.raises(ValueError, match=r"\(batch, time, dim\)"):
        DotProductAttention()(np.zeros((2, 3)), np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="score"):
        DotProductAttention("cosine")
