"""Every preset: one-step call vs full call, embeddings, fresh-process .keras round trip."""

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import PRESETS, get_model

V, B, T = 23, 3, 9
SMALL = {"transformer": dict(model_dim=16, num_heads=2, ffn_dim=32, max_length=16)}


def _small(name, **extra):
    keras.utils.set_random_seed(3)
    kwargs = SMALL.get(name, dict(units=12, embedding_dim=8) if name != "lstm-one-hot"
                       else dict(units=12))
    model = get_model(name, V, **{**kwargs, **extra})
    model.build((None, T))
    return model


def _ids(seed=0):
    return np.random.default_rng(seed).integers(1, V, size=(B, T)).astype("int32")


@pytest.mark.parametrize("name", list(PRESETS))
def test_one_step_call_iterated_equals_the_full_sequence_call(name):
    model = _small(name)
    x = _ids()
    full = np.asarray(model(x))
    assert full.shape == (B, T, V)
    states = model.initial_state(B)
    for t in range(T):
        logits, states = model.step(tf.constant(x[:, t]), states)
        np.testing.assert_allclose(logits, full[:, t], atol=2e-5, err_msg=f"step {t}")


@pytest.mark.parametrize("attention", ["additive", "dot", "general", "multi_head"])
def test_one_step_equals_full_call_for_every_attention_kind(attention):
    model = _small("lstm-attention", attention=attention)
    x = _ids(6)
    full = np.asarray(model(x))
    states = model.initial_state(B)
    for t in range(T):
        logits, states = model.step(tf.constant(x[:, t]), states)
        np.testing.assert_allclose(logits, full[:, t], atol=2e-5)


@pytest.mark.parametrize("name", ["lstm", "lstm-attention", "transformer"])
def test_step_runs_inside_tf_function_and_the_model_stays_callable(name):
    keras.utils.set_random_seed(3)
    kwargs = SMALL.get(name, dict(units=12, embedding_dim=8))
    model = get_model(name, V, **kwargs)  # not built: step() comes first
    step = tf.function(model.step, reduce_retracing=True)
    states = model.initial_state(2)
    x = _ids(7)[:2]
    for t in range(3):
        logits, states = step(tf.constant(x[:, t]), states)
    full = np.asarray(model(x[:, :3]))  # building after step() must work
    np.testing.assert_allclose(logits, full[:, 2], atol=2e-5)


@pytest.mark.parametrize("name", list(PRESETS))
def test_mixed_float16_training_and_float32_logits(name):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = _small(name)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        x = _ids(8)
        y = np.roll(x, -1, axis=1)
        assert keras.backend.standardize_dtype(model(x).dtype) == "float32"
        first = model.train_on_batch(x, y, return_dict=True)["loss"]
        for _ in range(10):
            last = model.train_on_batch(x, y, return_dict=True)["loss"]
        assert np.isfinite(last) and last < first
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name", list(PRESETS))
def test_train_step_runs_and_lowers_the_loss(name):
    model = _small(name)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    x = _ids(1)
    y = np.roll(x, -1, axis=1)
    first = model.train_on_batch(x, y, return_dict=True)["loss"]
    for _ in range(15):
        last = model.train_on_batch(x, y, return_dict=True)["loss"]
    assert np.isfinite(last) and last < first


def test_tied_embeddings_share_the_table():
    model = _small("lstm-tied", units=8, embedding_dim=8)
    names = [w.path for w in model.trainable_weights]
    assert sum("embeddings" in n for n in names) == 1 and not any("logits" in n for n in names)
    x = _ids(2)
    h = np.asarray(model.features(x))
    emb, bias = model.embedding.embeddings.numpy(), model.output_bias.numpy()
    np.testing.assert_allclose(model(x), h @ emb.T + bias, atol=1e-5)


def test_one_hot_input_makes_the_first_kernel_the_embedding():
    model = _small("lstm-one-hot")
    assert not hasattr(model, "embedding")
    assert model.rnn_layers[0].cell.kernel.shape == (V, 4 * 12)


def test_attention_reads_only_the_past():
    model = _small("lstm-attention")
    x = _ids(3)
    changed = x.copy()
    changed[:, 6:] = (changed[:, 6:] + 1) % V
    np.testing.assert_allclose(np.asarray(model(x))[:, :6], np.asarray(model(changed))[:, :6],
                               atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"cell": "lstm", "embedding": "one_hot", "tie_embeddings": True}, "tie_embeddings"),
    ({"cell": "tree"}, "cell"),
    ({"attention": "cosine"}, "attention"),
    ({"embedding": "hashed"}, "embedding"),
    ({"recurrent_dropout": 1.0}, "recurrent_dropout"),
    ({"recurrent_dropout": -0.1}, "recurrent_dropout"),
])
def test_bad_recurrent_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        zoo.RecurrentLanguageModel(V, **kwargs)


def test_unknown_preset_and_unknown_override():
    with pytest.raises(ValueError, match="known: rnn, irnn"):
        get_model("lstm-xl", V)
    with pytest.raises(ValueError, match="does not take"):
        get_model("transformer", V, units=3)


def test_wrong_states_and_ranks_are_value_errors():
    model = _small("lstm")
    with pytest.raises(ValueError, match="state tensors"):
        model.step(tf.constant([1, 2, 3]), model.initial_state(3)[:1])
    with pytest.raises(ValueError, match=r"expected \(2, 12\)"):
        model.step(tf.constant([1, 2]), model.initial_state(3))
    attention = _small("lstm-attention")
    states = attention.initial_state(2)
    states[-1] = tf.zeros((2, 0, 5))
    with pytest.raises(ValueError, match="State 4"):
        attention.step(tf.constant([1, 2]), states)
    with pytest.raises(ValueError, match=r"\(batch,\)"):
        model.step(tf.constant([[1]]), model.initial_state(1))
    transformer = _small("transformer")
    with pytest.raises(ValueError, match="max_length"):
        transformer(np.ones((1, 17), "int32"))
    with pytest.raises(ValueError, match="Cache 0"):
        transformer.step(tf.constant([1, 2]), [tf.zeros((2, 0, 3))] * 4 + [tf.zeros(2, "int32")])
    with pytest.raises(ValueError, match="expects 5 state tensors"):
        transformer.step(tf.constant([1, 2]), transformer.initial_state(2)[1:])


def test_dtype_policy_and_initializer_objects_survive_get_config():
    model = get_model("irnn", V, units=4, embedding_dim=3, dtype="mixed_bfloat16",
                      recurrent_initializer=keras.initializers.Constant(0.25))
    clone = type(model).from_config(model.get_config())
    assert clone.dtype_policy.name == "mixed_bfloat16"
    clone.build((None, 2))
    np.testing.assert_allclose(clone.rnn_layers[0].cell.recurrent_kernel.numpy(),
                               np.full((4, 4), 0.25))


def test_every_layer_and_model_round_trips_through_keras_files_in_a_fresh_process(tmp_path):
    x = _ids(4)
    seq = np.random.default_rng(5).normal(size=(B, T, 6)).astype("float32")
    objects = {name: _small(name) for name in PRESETS}
    for name, cls in (("rnn_cell", zoo.RNNCell), ("lstm_cell", zoo.LSTMCell),
                      ("gru_cell", zoo.GRUCell)):
        inp = keras.Input((T, 6))
        objects[name] = keras.Model(inp, keras.layers.RNN(cls(5), return_sequences=True)(inp))
    for name, layer in (("additive", zoo.AdditiveAttention(units=4)),
                        ("general", zoo.DotProductAttention("general")),
                        ("multi_head", zoo.MultiHeadAttention(2, 3))):
        inp = keras.Input((T, 6))
        objects[name] = keras.Model(inp, layer(inp, inp, causal=True))
    for name, obj in objects.items():
        obj.save(tmp_path / f"{name}.keras")
        np.save(tmp_path / f"{name}.npy", np.asarray(obj(x if name in PRESETS else seq)))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "seq.npy", seq)
    script = textwrap.dedent(f"""
        import pathlib, numpy as np, keras, zoo
        d = pathlib.Path({str(tmp_path)!r})
        x, seq = np.load(d / "x.npy"), np.load(d / "seq.npy")
        for path in sorted(d.glob("*.keras")):
            m = keras.saving.load_model(path, safe_mode=True)
            inp = x if path.stem in {sorted(PRESETS)!r} else seq
            np.testing.assert_allclose(m(inp), np.load(d / (path.stem + ".npy")), atol=1e-6,
                                       err_msg=path.stem)
            print("ok", path.stem)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ok ") == len(objects)


@pytest.mark.parametrize("name", list(PRESETS))
def test_fixed_state_step_equals_the_full_sequence_call(name):
    """The fixed-shape states of the LiteRT export give the full call's logits, for a window
    (attention) or cache (Transformer) at least as long as the text."""
    model = _small(name)
    x = _ids(4)
    full = np.asarray(model(x))
    spec = model.fixed_state_spec(B, window=T)
    assert all(None not in shape for _, shape, _ in spec)
    states = [tf.zeros(shape, dtype) for _, shape, dtype in spec]
    for t in range(T):
        logits, states = model.fixed_step(tf.constant(x[:, t]), states)
        assert [tuple(s.shape) for s in states] == [shape for _, shape, _ in spec]
        np.testing.assert_allclose(logits, full[:, t], atol=2e-5, err_msg=f"step {t}")


def test_fixed_attention_window_slides_over_the_last_outputs():
    """Window K < time: attention sees only the last K outputs (the growing-memory step fed
    only its last K - 1 past outputs, to which it adds the new one, is the reference)."""
    model, window = _small("lstm-attention"), 3
    x = _ids(5)
    states = model.initial_state(B)
    fixed = [tf.zeros(shape, dtype) for _, shape, dtype in model.fixed_state_spec(B, window)]
    for t in range(T):
        states[-1] = states[-1][:, -(window - 1):]
        ref, states = model.step(tf.constant(x[:, t]), states)
        got, fixed = model.fixed_step(tf.constant(x[:, t]), fixed)
        np.testing.assert_allclose(got, ref, atol=2e-5, err_msg=f"step {t}")
    np.testing.assert_array_equal(fixed[-1], [window] * B)


def test_transformer_generate_fits_prompt_and_new_tokens_in_max_length():
    """Greedy generation past max_length: the prompt is cut to its last max_length -
    max_new_tokens tokens and every asked token comes back; the reference is the full-call
    model run on that cut prompt, token by token."""
    from zoo.predictor import NextWordPredictor
    from zoo.text import WordVectorizer

    words = [f"w{i}" for i in range(V - 3)] + ["<eos>"]
    vectorizer = WordVectorizer(words)
    model = _small("transformer")  # max_length 16
    predictor = NextWordPredictor(vectorizer, model)
    prompt = " ".join(f"w{i % 7}" for i in range(30))
    out = predictor.generate(tf.constant([prompt]), tf.constant([10]), tf.constant([0.0]),
                             tf.constant([0]), tf.constant([1.0]), tf.constant([1], tf.int64))
    assert int(out["num_tokens"][0]) == 10
    ids = list(vectorizer.prompt_ids(tf.constant([prompt]))[0][0].numpy())[-(16 - 10):]
    expected = []
    for _ in range(10):
        logits = np.array(model(np.array([ids], "int32")))[0, -1]
        logits[[0, 1]] = -np.inf  # padding and [UNK] are never generated
        ids.append(int(np.argmax(logits)))
        expected.append(vectorizer.vocabulary[ids[-1]])
    assert out["continuation"][0].numpy().decode().split() == expected


def test_transformer_step_projects_only_the_new_position():
    """The key/value cache: each step's caches are the previous ones plus one position, and
    their contents equal the attention layer's projections of the full call's normalised
    inputs (keys and values of earlier positions are never recomputed)."""
    model = _small("transformer")
    x = _ids(7)
    states = model.initial_state(B)
    for t in range(T):
        before = [np.asarray(s) for s in states[:-1]]
        _, states = model.step(tf.constant(x[:, t]), states)
        for old, new in zip(before, states[:-1]):
            assert new.shape[2] == t + 1
            np.testing.assert_array_equal(np.asarray(new)[:, :, :t], old)
    block = model.blocks[0]
    embedded = model.embedding(x) + model.positions(np.arange(T))[None]
    h = block.ln_1(embedded)
    np.testing.assert_allclose(states[0], block.attention.project("key", h), atol=1e-5)
    np.testing.assert_allclose(states[1], block.attention.project("value", h), atol=1e-5)
