"""The exported ``attention`` signature (issue 15): for models with attention layers only, and
its weights are the layers' own ``return_attention_scores`` output, computed here
independently by calling the model's layers one by one on tiny untrained models."""

import numpy as np
import pytest
import tensorflow as tf

from zoo import get_model
from zoo.predictor import NextWordPredictor
from zoo.text import WordVectorizer

WORDS = ["<eos>", "the", "name", "of", "module", "is", "file", "a", "cat"]
TEXTS = ["the name of the module is", "", "the zebra cat", "of"]  # "zebra": out of vocabulary
TINY = {
    "scaled_dot": ("lstm-attention", dict(attention="scaled_dot", units=8, embedding_dim=6,
                                          num_layers=2)),
    "multi_head": ("lstm-attention", dict(attention="multi_head", units=8, embedding_dim=6,
                                          num_layers=1)),
    "additive": ("lstm-attention", dict(attention="additive", units=8, embedding_dim=6,
                                        num_layers=1)),
    "transformer": ("transformer", dict(model_dim=8, num_layers=2, num_heads=2, ffn_dim=16,
                                        max_length=32)),
}


def _predictor(kind, seed=0):
    """A tiny untrained model whose weights are drawn from N(0, 1) (N(0, 4) for an LSTM): large enough that its
    attention is far from uniform (at Keras's initial scale a tiny LSTM's outputs are so
    small that every weight is 1/T, and a wrong row would pass)."""
    vectorizer = WordVectorizer(WORDS, standardize="lower_punct")
    preset, overrides = TINY[kind]
    model = get_model(preset, vectorizer.vocab_size, **overrides)
    model.build((None, 1))
    rng = np.random.default_rng(seed)
    scale = 1.0 if preset == "transformer" else 2.0
    model.set_weights([rng.normal(0.0, scale, w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    return NextWordPredictor(vectorizer, model)


def _layer_rows(model, ids, lengths):
    """``[(batch, heads, time) per layer]``: row ``lengths - 1`` of the weights each attention
    layer returns (``return_attention_scores=True``) in a full causal pass, computed here
    layer by layer; also checks that this pass gives the model's own features."""
    rows = []
    if hasattr(model, "rnn_layers"):
        x = model.embedding(ids)
        for rnn in model.rnn_layers:
            x = rnn(x, training=False)
        context, weights = model.attention(x, x, causal=True, return_attention_scores=True)
        features = model.combine(tf.concat([x, context], axis=-1))
        if len(weights.shape) == 3:
            weights = weights[:, None]  # one head
        rows.append(weights)
    else:
        x = model.embedding(ids) + model.positions(tf.range(ids.shape[1]))[None]
        for block in model.blocks:
            h = block.ln_1(x)
            out, weights = block.attention(h, h, causal=True, return_attention_scores=True)
            x = x + out
            x = x + block.ffn_2(block.ffn_1(block.ln_2(x)))
            rows.append(weights)
        features = x
    np.testing.assert_allclose(features.numpy(), model.features(ids).numpy(), atol=1e-5)
    last = lengths.numpy() - 1
    return [np.stack([w.numpy()[b, :, last[b], :] for b in range(len(last))]) for w in rows]


@pytest.fixture(scope="module")
def exported_attention(tmp_path_factory):
    """``{kind: (predictor, signatures of the exported SavedModel, version folder)}``."""
    from serving.export import export_saved_model

    base = tmp_path_factory.mktemp("attention_models")
    out = {}
    for kind in ("scaled_dot", "multi_head", "transformer"):
        predictor = _predictor(kind)
        path = export_saved_model(predictor, str(base), kind)
        out[kind] = (predictor, tf.saved_model.load(path).signatures, path)
    return out


@pytest.mark.parametrize("kind", ["scaled_dot", "multi_head", "transformer"])
def test_signature_weights_are_the_layers_scores(exported_attention, kind):
    predictor, signatures, _ = exported_attention[kind]
    assert {"serving_default", "generate", "score", "attention"} <= set(signatures)
    answer = signatures["attention"](text=tf.constant(TEXTS))
    assert sorted(answer) == ["num_tokens", "tokens", "weights"]
    ids, lengths = predictor.vectorizer.prompt_ids(tf.constant(TEXTS), 256 if kind != "transformer"
                                                   else 32)
    weights = answer["weights"].numpy()
    model = predictor.model
    layers = getattr(model, "num_layers", 1) if kind == "transformer" else 1
    heads = {"scaled_dot": 1, "multi_head": 4, "transformer": 2}[kind]
    assert answer["weights"].dtype == tf.float32
    assert weights.shape == (len(TEXTS), layers, heads, ids.shape[1])
    expected = _layer_rows(model, ids, lengths)
    assert len(expected) == layers
    spread = [np.ptp(rows[0, :, :7], axis=-1).max() for rows in expected]
    assert min(spread) > 0.05, spread  # far from uniform: another row would not pass
    for layer, rows in enumerate(expected):
        np.testing.assert_allclose(weights[:, layer], rows, atol=1e-5, rtol=0)
    # The eager method gives the same numbers as the exported graph.
    np.testing.assert_allclose(model.attention_weights(ids, lengths).numpy(), weights,
                               atol=1e-5, rtol=0)
    # Rows sum to 1 over the real tokens and are exactly 0 on padding.
    num = answer["num_tokens"].numpy()
    assert num.tolist() == [7, 1, 4, 2] == lengths.numpy().tolist()
    for b, n in enumerate(num):
        np.testing.assert_allclose(weights[b, :, :, :n].sum(-1), 1.0, atol=1e-5)
        assert (weights[b, :, :, n:] == 0).all()
    tokens = [[t.decode() for t in row] for row in answer["tokens"].numpy()]
    assert tokens[0] == ["<eos>", "the", "name", "of", "the", "module", "is"]
    assert tokens[1] == ["<eos>"] + [""] * 6
    assert tokens[2][:4] == ["<eos>", "the", "[UNK]", "cat"] and tokens[2][4:] == [""] * 3
    assert weights[1, :, :, 0] == pytest.approx(1.0)  # one token: all weight on <eos>


def test_additive_kind_is_one_head():
    predictor = _predictor("additive")
    out = predictor.attention(tf.constant(TEXTS))
    ids, lengths = predictor.vectorizer.prompt_ids(tf.constant(TEXTS))
    assert out["weights"].shape == (len(TEXTS), 1, 1, ids.shape[1])
    rows = _layer_rows(predictor.model, ids, lengths)[0]
    assert np.ptp(rows[0, :, :7], axis=-1).max() > 0.05
    np.testing.assert_allclose(out["weights"].numpy()[:, 0], rows, atol=1e-5, rtol=0)


def _warmup_signatures(version_dir):
    from tensorflow_serving.apis import prediction_log_pb2

    names = []
    for record in tf.data.TFRecordDataset(
            str(version_dir) + "/assets.extra/tf_serving_warmup_requests"):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        names.append(log.predict_log.request.model_spec.signature_name)
    return names


def test_warmup_has_the_attention_request(exported_attention):
    _, _, path = exported_attention["transformer"]
    assert _warmup_signatures(path) == ["serving_default", "generate", "score", "complete",
                                        "attention"]


def test_model_without_attention_has_no_signature(tmp_path):
    from serving.export import export_saved_model

    vectorizer = WordVectorizer(WORDS, standardize="lower_punct")
    model = get_model("lstm", vectorizer.vocab_size, units=8, embedding_dim=6, num_layers=1)
    model.build((None, 1))
    predictor = NextWordPredictor(vectorizer, model)
    assert not model.has_attention
    with pytest.raises(NotImplementedError, match="no attention"):
        predictor.attention(tf.constant(["the"]))
    path = export_saved_model(predictor, str(tmp_path), "plain")
    assert "attention" not in tf.saved_model.load(path).signatures
    assert _warmup_signatures(path) == ["serving_default", "generate", "score", "complete"]
    assert not list(tmp_path.joinpath("plain").glob(".tmp-*"))  # atomic: nothing left over
