"""TransformerDecoderBlock against a NumPy computation of the pre-LayerNorm block."""

import math

import keras
import numpy as np
import pytest

from zoo import TransformerDecoderBlock, get_model

B, T, D, H, F = 2, 5, 8, 2, 12


def _layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu(x):  # the exact (erf) form, keras.activations.gelu(approximate=False)
    return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def _numpy_block(block, x):
    """x + MHA(LN_1(x), causal); then x + W_2 gelu(W_1 LN_2(x)), from the layer's weights."""
    g1, b1 = (w.numpy() for w in block.ln_1.weights)
    wq, bq, wk, bk, wv, bv, wo, bo = (w.numpy() for w in block.attention.weights)
    g2, b2 = (w.numpy() for w in block.ln_2.weights)
    w1, c1 = (w.numpy() for w in block.ffn_1.weights)
    w2, c2 = (w.numpy() for w in block.ffn_2.weights)
    h = _layer_norm(x, g1, b1)
    q = np.einsum("btd,dhk->bhtk", h, wq) + bq[None, :, None]
    k = np.einsum("btd,dhk->bhtk", h, wk) + bk[None, :, None]
    v = np.einsum("btd,dhk->bhtk", h, wv) + bv[None, :, None]
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D // H)
    scores = np.where(np.tril(np.ones((T, T), bool)), scores, -np.inf)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    attended = np.einsum("bhqk,hko->bqo", weights @ v, wo) + bo
    x = x + attended
    return x + _gelu(_layer_norm(x, g2, b2) @ w1 + c1) @ w2 + c2, weights


def _random_block():
    keras.utils.set_random_seed(5)
    block = TransformerDecoderBlock(num_heads=H, ffn_dim=F)
    block.build((None, T, D))
    rng = np.random.default_rng(0)
    block.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in block.weights])
    return block


def test_block_output_and_weights_equal_a_numpy_pre_layer_norm_block():
    block = _random_block()
    x = np.random.default_rng(1).normal(size=(B, T, D)).astype("float32")
    expected, expected_weights = _numpy_block(block, x.astype("float64"))
    out, weights = block(x, return_attention_scores=True)
    np.testing.assert_allclose(out, expected, atol=2e-4)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
    np.testing.assert_allclose(block(x), out)


def test_block_is_causal_a_later_position_changes_no_earlier_output():
    block = _random_block()
    x = np.random.default_rng(2).normal(size=(B, T, D)).astype("float32")
    changed = x.copy()
    changed[:, -1] += 3.0
    np.testing.assert_allclose(block(x)[:, :-1], block(changed)[:, :-1], atol=1e-6)


def test_block_config_round_trip_and_errors():
    block = TransformerDecoderBlock(num_heads=2, ffn_dim=6, dropout=0.1, name="b")
    copy = TransformerDecoderBlock.from_config(block.get_config())
    assert (copy.num_heads, copy.ffn_dim, copy.dropout, copy.name) == (2, 6, 0.1, "b")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        TransformerDecoderBlock(num_heads=3, ffn_dim=4).build((None, T, D))
    with pytest.raises(ValueError, match="ffn_dim must be a positive int"):
        TransformerDecoderBlock(num_heads=2, ffn_dim=0)


def test_the_transformer_model_is_made_of_decoder_block_layers():
    model = get_model("transformer", 11, model_dim=D, num_heads=H, ffn_dim=F, num_layers=3,
                      max_length=T)
    model.build((None, T))
    assert [type(b).__name__ for b in model.blocks] == ["TransformerDecoderBlock"] * 3
    # every weight belongs to the embeddings, a block, the final norm or the output bias
    in_blocks = sum(len(b.weights) for b in model.blocks)
    assert len(model.weights) == in_blocks + 2 + 2 + 1
