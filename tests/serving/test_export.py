"""The exported SavedModel: signature, answers checked by hand, padding, atomic versions."""

import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from serving.export import export_saved_model
from serving.servable import list_versions
from zoo import NextWordPredictor


@pytest.fixture(scope="module")
def signature(exported):
    return tf.saved_model.load(str(exported[1])).signatures["serving_default"]


def test_signature_names_dtypes_and_shapes(exported):
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((exported[1] / "saved_model.pb").read_bytes())
    sig = proto.meta_graphs[0].signature_def["serving_default"]
    assert sig.method_name == "tensorflow/serving/predict"
    assert list(sig.inputs) == ["text"]
    assert sig.inputs["text"].dtype == tf.string.as_datatype_enum
    assert [d.size for d in sig.inputs["text"].tensor_shape.dim] == [-1]
    assert sorted(sig.outputs) == ["probabilities", "words"]
    assert sig.outputs["words"].dtype == tf.string.as_datatype_enum
    assert sig.outputs["probabilities"].dtype == tf.float32.as_datatype_enum
    for name in ("words", "probabilities"):
        assert [d.size for d in sig.outputs[name].tensor_shape.dim] == [-1, 5]


def test_no_gpu_only_ops_in_the_graph(exported):
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((exported[1] / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    ops = {n.op for n in graph.node} | {n.op for f in graph.library.function
                                         for n in f.node_def}
    assert not {op for op in ops if "Cudnn" in op}, ops


def test_answer_equals_a_hand_computed_top_5(tiny_run, signature):
    """Tokenise by hand, run the Keras model on the ids, softmax in NumPy, rank."""
    predictor = NextWordPredictor.load(tiny_run)
    vocab = predictor.vectorizer.vocabulary
    prompt = "the value of the"
    ids = [vocab.index("<eos>")] + [vocab.index(w) if w in vocab else 1 for w in prompt.split()]
    logits = np.asarray(predictor.model(np.array([ids], "int32")))[0, -1].astype("float64")
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    probs[[0, 1]] = -1  # padding and [UNK] are never proposed
    order = np.argsort(-probs)[:5]

    out = signature(text=tf.constant([prompt]))
    assert [w.decode() for w in out["words"].numpy()[0]] == [vocab[i] for i in order]
    np.testing.assert_allclose(out["probabilities"].numpy()[0], probs[order], rtol=1e-5)


def test_padding_does_not_change_the_answer(signature):
    alone = signature(text=tf.constant(["the name"]))
    batch = signature(text=tf.constant(
        ["the name", "a much longer prompt that pads the first one with many zeros ."]))
    np.testing.assert_array_equal(alone["words"].numpy()[0], batch["words"].numpy()[0])
    np.testing.assert_allclose(alone["probabilities"].numpy()[0],
                               batch["probabilities"].numpy()[0], rtol=1e-6)


def test_empty_and_unknown_prompts_have_a_documented_answer(signature):
    """An empty prompt is the start of a line; unknown words are the OOV token."""
    out = signature(text=tf.constant(["", "qwxz zzqv", "   "]))
    words, probs = out["words"].numpy(), out["probabilities"].numpy()
    assert words.shape == (3, 5)
    assert all(w not in (b"", b"[UNK]") for w in words.ravel())
    np.testing.assert_array_equal(words[0], words[2])  # only-space == empty
    assert np.all(np.diff(probs, axis=1) <= 0) and np.all(probs > 0)


def test_versions_are_numbered_atomic_and_never_overwritten(tiny_run, tmp_path):
    predictor = NextWordPredictor.load(tiny_run)
    base = tmp_path / "models"
    (base / "nwp" / ".tmp-9-1").mkdir(parents=True)  # a crashed export's leftovers
    first = export_saved_model(predictor, base, "nwp", top_k=3)
    second = export_saved_model(predictor, base, "nwp", top_k=3)
    assert (os.path.basename(first), os.path.basename(second)) == ("1", "2")
    assert sorted(list_versions(base / "nwp")) == [1, 2]
    with pytest.raises(FileExistsError):
        export_saved_model(predictor, base, "nwp", version=2)
    leftovers = [p for p in os.listdir(base / "nwp") if p.startswith(".tmp") and p != ".tmp-9-1"]
    assert leftovers == []


@pytest.mark.parametrize("kwargs, match", [
    ({"model_name": "a/b"}, "model_name"), ({"top_k": 0}, "top_k"),
    ({"version": 0}, "version")])
def test_bad_export_arguments(tiny_run, tmp_path, kwargs, match):
    predictor = NextWordPredictor.load(tiny_run)
    args = {"model_name": "nwp", **kwargs}
    with pytest.raises(ValueError, match=match):
        export_saved_model(predictor, tmp_path, **args)


def _graph_ops(version_dir):
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    return proto, {n.op for n in graph.node} | {n.op for f in graph.library.function
                                                 for n in f.node_def}


def test_every_op_is_a_stock_tensorflow_op(exported):
    from tensorflow.python.framework import op_def_registry

    _, ops = _graph_ops(exported[1])
    assert {"StringSplitV2", "TopKV2"} <= ops  # really the front end and the top-k
    missing = sorted(op for op in ops if op_def_registry.get(op) is None)
    assert not missing, f"ops stock TensorFlow does not register: {missing}"


def test_generate_and_score_signatures(exported):
    proto, _ = _graph_ops(exported[1])
    sigs = proto.meta_graphs[0].signature_def
    assert {"serving_default", "generate", "score"} <= set(sigs)
    gen = sigs["generate"]
    assert {k: v.dtype for k, v in gen.inputs.items()} == {
        "text": tf.string.as_datatype_enum, "max_new_tokens": tf.int32.as_datatype_enum,
        "temperature": tf.float32.as_datatype_enum, "top_k": tf.int32.as_datatype_enum,
        "top_p": tf.float32.as_datatype_enum, "seed": tf.int64.as_datatype_enum}
    assert all([d.size for d in v.tensor_shape.dim] == [-1] for v in gen.inputs.values())
    assert sorted(gen.outputs) == ["continuation", "num_tokens"]
    assert sorted(sigs["score"].outputs) == ["num_tokens", "perplexity", "token_log_probs"]
    assert (exported[1] / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    assert 'name: "nwp"' in (exported[0].parent / "models.config").read_text()


def test_greedy_generation_equals_the_python_sampler(tiny_run, exported):
    from zoo.sampling import generate

    predictor = NextWordPredictor.load(tiny_run)
    vocab = predictor.vectorizer.vocabulary
    prompt = "the value of"
    ids = [[vocab.index("<eos>")] + [vocab.index(w) for w in prompt.split()]]
    sig = tf.saved_model.load(str(exported[1])).signatures["generate"]
    out = sig(text=tf.constant([prompt]), max_new_tokens=tf.constant([6]),
              temperature=tf.constant([0.0]), top_k=tf.constant([0]),
              top_p=tf.constant([1.0]), seed=tf.constant([0], tf.int64))
    # The Python loop may pick padding/[UNK]; ban them the same way for the comparison.
    model = predictor.model
    real_step = model.step

    def banned_step(token_ids, states):
        logits, states = real_step(token_ids, states)
        return tf.concat([tf.fill([tf.shape(logits)[0], 2], -1e9), logits[:, 2:]], 1), states

    model.step = banned_step
    try:
        expected = generate(model, np.array(ids), max_new_tokens=6)[0]
    finally:
        model.step = real_step
    assert out["continuation"].numpy()[0].decode() == " ".join(vocab[i] for i in expected)
    assert out["num_tokens"].numpy().tolist() == [6]


def test_sampling_is_seeded(exported):
    sig = tf.saved_model.load(str(exported[1])).signatures["generate"]

    def run(seed):
        return sig(text=tf.constant(["the", "the"]), max_new_tokens=tf.constant([8, 8]),
                   temperature=tf.constant([1.0, 1.0]), top_k=tf.constant([20, 20]),
                   top_p=tf.constant([0.95, 0.95]),
                   seed=tf.constant(seed, tf.int64))["continuation"].numpy()

    a = run([3, 4])
    np.testing.assert_array_equal(a, run([3, 4]))
    assert a[0] != a[1]  # another seed, another text


def test_score_equals_log_probs_computed_by_hand(tiny_run, exported):
    predictor = NextWordPredictor.load(tiny_run)
    vocab = predictor.vectorizer.vocabulary
    text = "the value of the"
    ids = [vocab.index("<eos>")] + [vocab.index(w) for w in text.split()]
    logits = np.asarray(predictor.model(np.array([ids], "int32")))[0].astype("float64")
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = [logp[t, ids[t + 1]] for t in range(len(ids) - 1)]
    out = tf.saved_model.load(str(exported[1])).signatures["score"](
        text=tf.constant([text, ""]))
    np.testing.assert_allclose(out["token_log_probs"].numpy()[0], expected, atol=1e-4)
    assert out["num_tokens"].numpy().tolist() == [4, 0]
    np.testing.assert_allclose(out["perplexity"].numpy(), [np.exp(-np.mean(expected)), 1.0],
                               rtol=1e-4)


def test_complete_signature_equals_the_in_process_answer_and_numpy(tiny_run, exported):
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((exported[1] / "saved_model.pb").read_bytes())
    sig = proto.meta_graphs[0].signature_def["complete"]
    assert {k: ([d.size for d in v.tensor_shape.dim], v.dtype) for k, v in sig.inputs.items()} \
        == {"text": ([-1], tf.string.as_datatype_enum)}
    assert {k: [d.size for d in v.tensor_shape.dim] for k, v in sig.outputs.items()} == {
        "words": [-1, 5], "probabilities": [-1, 5], "prefix": [-1]}
    predictor = NextWordPredictor.load(tiny_run)
    prompts = ["the va", "the ", "of t", "zzzq"]
    direct = predictor.complete(tf.constant(prompts), k=5)
    complete = tf.saved_model.load(str(exported[1])).signatures["complete"]
    out = complete(text=tf.constant(prompts))
    assert (out["words"].numpy() == direct["words"].numpy()).all()
    assert out["prefix"].numpy().tolist() == [b"va", b"", b"t", b"zzzq"]
    np.testing.assert_allclose(out["probabilities"], direct["probabilities"], rtol=1e-5)
    # "the va": the model's distribution after "<eos> the", kept to the words starting with
    # "va" (no marker), renormalised, in NumPy.
    vocab = predictor.vectorizer.vocabulary
    ids = np.array([[vocab.index("<eos>"), vocab.index("the")]], "int32")
    logits = np.asarray(predictor.model(ids))[0, -1].astype("float64")
    p = np.exp(logits - logits.max())
    keep = {w: p[i] for i, w in enumerate(vocab) if w.startswith("va")
            and w not in ("", "[UNK]", "<eos>", "<unk>")}
    assert keep, "the tiny run's vocabulary has no word starting with 'va'"
    expected = sorted(keep.items(), key=lambda kv: -kv[1])[:5]
    total = sum(keep.values())
    n = len(expected)
    assert [w.decode() for w in out["words"].numpy()[0][:n]] == [w for w, _ in expected]
    np.testing.assert_allclose(out["probabilities"].numpy()[0][:n],
                               [q / total for _, q in expected], rtol=1e-4)
    assert (out["words"].numpy()[3] == b"").all() and (out["probabilities"].numpy()[3] == 0).all()
    with pytest.raises(tf.errors.InvalidArgumentError, match="a prompt is empty"):
        complete(text=tf.constant(["the", ""]))


def test_only_signatures_with_fixed_output_shapes_are_batched(exported):
    from serving.servable import Servable

    servable = Servable("nwp", 1, str(exported[1]))
    assert servable.batchable("") and servable.batchable("generate")
    assert not servable.batchable("score")  # token_log_probs [-1, -1]: padding would leak


def test_score_in_bounded_chunks_equals_one_run(exported):
    from serving.servable import Servable

    servable = Servable("nwp", 1, str(exported[1]))
    texts = np.array([b"the name of the", b"", b"return the value of the first line of the",
                      b"a", b"in the", b"the module"], dtype=object)
    servable.tokens_per_run = 10 ** 9
    whole = servable.predict("score", {"text": texts})
    servable.tokens_per_run = 12  # several runs of a few rows each
    chunked = servable.predict("score", {"text": texts})
    assert whole["token_log_probs"].shape == chunked["token_log_probs"].shape
    np.testing.assert_array_equal(whole["num_tokens"], chunked["num_tokens"])
    np.testing.assert_allclose(chunked["token_log_probs"], whole["token_log_probs"], atol=1e-5)
    np.testing.assert_allclose(chunked["perplexity"], whole["perplexity"], rtol=1e-5)
