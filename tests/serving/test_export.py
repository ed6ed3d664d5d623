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
