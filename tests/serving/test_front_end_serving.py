"""Subword front ends from export to TF Serving to the phone: every tensorflow-text op of an
export is one that TF Serving's linked tensorflow-text 2.20.0 registers; nwp-serve refuses,
with a clear message, a model whose op library it cannot load; the REST answer of a subword
model equals the in-process one; the LiteRT bundle tokenizes like training."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

pytest.importorskip("tensorflow_text")
pytest.importorskip("sentencepiece")

import tensorflow as tf  # noqa: E402

from tests.conftest import ROOT, running_server  # noqa: E402

SUBWORD = ("wordpiece", "sentencepiece", "char")
OPS_FILE = pathlib.Path(__file__).resolve().parents[1] / "data" / \
    "tensorflow_text_2.20.0_ops.tsv"


def tf_serving_tftext_ops():
    """Op names from the checked-in list (its header cites how it was derived)."""
    names = set()
    for line in OPS_FILE.read_text().splitlines():
        if line and not line.startswith("#"):
            names.add(line.split("\t")[0])
    return names


@pytest.fixture(scope="module")
def exports(shared_data, tmp_path_factory):
    """``{kind: (predictor, version_dir, held-out lines)}``: a tiny LSTM on each front end
    (fitted on 300 PTB lines), exported with its LiteRT bundle."""
    from serving.export import export_saved_model
    from training.corpora import load_corpus
    from zoo import NextWordPredictor, fit_front_end, get_model

    corpus = load_corpus("ptb", shared_data, allow_download=False)
    train, held_out = corpus.train[:300], corpus.test[:40]
    base = tmp_path_factory.mktemp("subword_exports")
    out = {}
    for kind in ("word",) + SUBWORD:
        front_end = fit_front_end(kind, train, None if kind in ("word", "char") else 300)
        model = get_model("lstm", front_end.vocab_size, embedding_dim=8, units=8,
                          num_layers=1)
        model.build((None, 4))
        predictor = NextWordPredictor(front_end, model)
        path = export_saved_model(predictor, str(base), f"nwp-{kind}",
                                  litert={"quantization": "float32"})
        out[kind] = (predictor, path, held_out)
    return out


@pytest.mark.slow
def test_every_tensorflow_text_op_is_in_tf_servings_tensorflow_text(exports):
    # In a fresh process that never imports tensorflow_text, the ops TensorFlow does not
    # know are exactly the tensorflow-text ops of the export.
    allowed = tf_serving_tftext_ops()
    assert "FastWordpieceTokenizeWithOffsets" in allowed and len(allowed) == 38
    script = (
        "import json, sys\n"
        "from tensorflow.python.framework import op_def_registry\n"
        "from serving.op_libraries import graph_ops, read_meta_graph\n"
        "out = {}\n"
        "for kind, path in json.load(sys.stdin).items():\n"
        "    ops = graph_ops(read_meta_graph(path))\n"
        "    out[kind] = [sorted(ops), sorted(o for o in ops if op_def_registry.get(o) is None)]\n"
        "assert 'tensorflow_text' not in sys.modules\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          input=json.dumps({k: v[1] for k, v in exports.items()}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = json.loads(proc.stdout.strip().split("\n")[-1])
    assert found["word"][1] == []  # the word front end is core TensorFlow only
    expected = {"wordpiece": {"FastWordpieceTokenizeWithOffsets",
                              "TFText>WhitespaceTokenizeWithOffsetsV2"},
                "sentencepiece": {"TFText>FastSentencepieceTokenize"},
                "char": {"TFText>FastSentencepieceTokenize"}}
    for kind in SUBWORD:
        all_ops, unknown = found[kind]
        assert set(unknown) == expected[kind], (kind, unknown)
        assert set(unknown) <= allowed, kind
        assert len(all_ops) > 20  # the whole graph was listed, not just the signature


@pytest.mark.slow
def test_nwp_serve_refuses_a_model_whose_op_library_cannot_load(exports):
    # Simulate a server without tensorflow-text: its import fails.
    base = os.path.dirname(exports["wordpiece"][1])
    script = ("import sys; sys.modules['tensorflow_text'] = None\n"
              "from serving.server import main\n"
              f"sys.exit(main(['--model_name=nwp', '--model_base_path={base}', "
              "'--rest_api_port=0', '--port=0']))\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "needs TensorFlow ops this server cannot load" in proc.stderr
    assert "FastWordpieceTokenizeWithOffsets" in proc.stderr
    assert "importing tensorflow_text failed" in proc.stderr
    assert "Traceback" not in proc.stderr


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())


@pytest.mark.slow
def test_rest_round_trip_of_subword_models_equals_in_process(exports):
    prompts = ["the company said", "profits of"]
    for kind in ("wordpiece", "sentencepiece"):
        predictor, path, held_out = exports[kind]
        base = os.path.dirname(path)
        with running_server(f"--model_name={kind}", f"--model_base_path={base}",
                            model=kind) as (url, _):
            answer = _post(f"{url}/v1/models/{kind}:predict", {"instances": prompts})
            ids = _post(f"{url}/v1/models/{kind}:predict",
                        {"signature_name": "tokenize", "inputs": {"text": held_out}})
        direct = predictor.top_k(tf.constant(prompts), k=5, max_prompt_tokens=256)
        for row, words, probs in zip(answer["predictions"], direct["words"].numpy(),
                                     direct["probabilities"].numpy()):
            assert row["words"] == [w.decode() for w in words]
            np.testing.assert_allclose(row["probabilities"], probs, rtol=1e-5, atol=1e-7)
        want = predictor.front_end.encode(held_out).to_list()
        got = [row[:n] for row, n in zip(ids["outputs"]["ids"], ids["outputs"]["num_tokens"])]
        assert got == want


@pytest.mark.slow
def test_litert_bundle_tokenizes_like_training_and_answers_like_the_saved_model(exports,
                                                                                tmp_path):
    from serving.litert import LiteRTPredictor

    for kind in SUBWORD:
        predictor, path, held_out = exports[kind]
        with open(os.path.join(path, "litert.json")) as f:
            manifest = json.load(f)
        assert manifest["tokenizer"]["format"] == "tflite"
        assert os.path.exists(os.path.join(path, manifest["tokenizer"]["file"]))
        runner = LiteRTPredictor(path)
        training_ids = predictor.front_end.encode(held_out).to_list()
        assert runner.tokenizer.encode_batch(held_out) == training_ids, kind
        # The runner answers whole next words by the SavedModel's word beam, in NumPy.
        assert manifest["word_search"]["beam_width"] == predictor.word_search.beam_width
        direct = predictor.top_k(tf.constant(["the company"]), k=5)
        got = runner.suggest("the company", k=5)
        assert len(got) == 5, (kind, got)
        assert [w for w, _ in got] == [w.decode() for w in direct["words"].numpy()[0]]
        np.testing.assert_allclose([p for _, p in got], direct["probabilities"].numpy()[0],
                                   rtol=1e-4)
        with pytest.raises(ValueError, match="complete needs a word-level bundle"):
            runner.complete("the comp")
    # A subword bundle written before the word_search entry existed answers next pieces.
    predictor, path, _ = exports["wordpiece"]
    old = tmp_path / "old"
    shutil.copytree(path, old)
    manifest = json.loads((old / "litert.json").read_text())
    del manifest["word_search"]
    (old / "litert.json").write_text(json.dumps(manifest))
    direct = predictor.top_k_tokens(tf.constant(["the company"]), k=5)
    got = LiteRTPredictor(str(old)).suggest("the company", k=5)
    assert [w for w, _ in got] == [w.decode() for w in direct["words"].numpy()[0]]
    np.testing.assert_allclose([p for _, p in got], direct["probabilities"].numpy()[0],
                               rtol=1e-4)
    # the word kind keeps its TF-free tokenizer.json (and its words need no search)
    with open(os.path.join(exports["word"][1], "litert.json")) as f:
        manifest = json.load(f)
    assert manifest["tokenizer"] == {"kind": "word", "format": "json", "file": "tokenizer.json"}
    assert "word_search" not in manifest
