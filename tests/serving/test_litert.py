"""The LiteRT road: every preset's one-step call as a builtins-only .tflite, checked against
the Keras step in ai_edge_litert; the bundle's runner against the SavedModel; bad input."""

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from serving import litert_export
from serving.export import export_saved_model
from serving.litert import BundleError, LiteRTPredictor
from serving.litert_export import ConversionError, QuantizationError, convert_step
from zoo import PRESETS, NextWordPredictor, get_model

from tests.conftest import ROOT, run_cli

V = 40
NOT_BUILTIN = ("CUSTOM", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


def _small(name, **extra):
    keras.utils.set_random_seed(5)
    if name == "transformer":
        kwargs = dict(model_dim=16, num_heads=2, ffn_dim=32, max_length=64)
    elif name in ("lstm-one-hot", "keyboard"):
        kwargs = dict(units=16)
    else:
        kwargs = dict(units=16, embedding_dim=8)
    model = get_model(name, V, **{**kwargs, **extra})
    model.build((None, 1))
    rng = np.random.default_rng(6)  # weights well away from their small initial values
    model.set_weights([rng.normal(scale=0.1, size=w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def _ops(content):
    return {op["op_name"] for op in Interpreter(model_content=content)._get_ops_details()}


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_converts_builtins_only_and_equals_the_keras_step(name):
    """50 steps at batch 1, the LiteRT state fed back; the reference is the Keras model's own
    (growing-state) step, so the fixed-shape states are checked too."""
    model = _small(name)
    content, spec = convert_step(model, "float32", window=64)
    ops = _ops(content)
    assert not [op for op in ops if op.startswith("Flex") or op in NOT_BUILTIN], ops
    assert "FULLY_CONNECTED" in ops or "BATCH_MATMUL" in ops
    assert len(content) >= 4 * model.count_params()  # the float32 weights are in the file
    runner = Interpreter(model_content=content, num_threads=1).get_signature_runner("step")
    states = {n: np.zeros(s, d) for n, s, d in spec}
    keras_states = model.initial_state(1)
    ids = np.random.default_rng(1).integers(0, V, 50)
    worst = 0.0
    for token in ids:
        ref, keras_states = model.step(tf.constant([token], tf.int32), keras_states)
        out = runner(token_ids=np.array([token], np.int32), **states)
        states = {n: out[n] for n in states}
        assert out["logits"].shape == (1, V)
        worst = max(worst, float(np.abs(out["logits"] - ref.numpy()).max()))
    assert worst <= 1e-4
    assert np.abs(ref.numpy()).max() > 1e-3  # not trivially zero


@pytest.mark.parametrize("quantization,bytes_per_weight", [("float16", 2),
                                                           ("dynamic-int8", 1)])
def test_quantized_files_are_builtins_only_hold_the_weights_and_stay_close(
        quantization, bytes_per_weight):
    model = _small("keyboard")
    content, spec = convert_step(model, quantization)
    reference, _ = convert_step(model, "float32")
    assert len(content) >= bytes_per_weight * model.count_params()
    assert len(content) < 0.7 * len(reference)
    assert not [op for op in _ops(content) if op.startswith("Flex") or op in NOT_BUILTIN]
    ids = np.random.default_rng(2).integers(2, V, 80)
    ppl_f, ppl_q, overlap = litert_export.compare_quantized(reference, content, spec, ids)
    assert abs(ppl_q / ppl_f - 1) < 0.02 and overlap >= 0.9


def test_an_op_without_a_builtin_kernel_is_named(monkeypatch):
    model = _small("rnn")
    real_step = model.fixed_step

    def step_with_a_flex_op(token_ids, states):
        logits, new = real_step(token_ids, states)
        return logits + tf.math.igamma(tf.abs(logits) + 1.0, tf.abs(logits) + 1.0), new

    monkeypatch.setattr(model, "fixed_step", step_with_a_flex_op)
    with pytest.raises(ConversionError, match="Igamma"):
        convert_step(model, "float32")


def test_unknown_quantization_and_int8_without_text_are_errors():
    model = _small("rnn")
    with pytest.raises(ValueError, match="Unknown quantization 'int4'"):
        convert_step(model, "int4")
    with pytest.raises(ValueError, match="representative"):
        convert_step(model, "int8")


# -- the bundle and its runner -------------------------------------------------------------

PROMPTS = ["", "the", "the value of the", "if the", "an unknownword here", "a, b; and (c)",
           "Hello World"]


@pytest.fixture(scope="module")
def bundle(tiny_run, tmp_path_factory):
    """The tiny run exported with a float32 LiteRT bundle in the same version folder."""
    base = tmp_path_factory.mktemp("litert_models")
    run_cli("serving.export", "--run", tiny_run, "--model_base_path", base, "--model_name",
            "nwp", "--litert", "--litert_quantization", "float32")
    return base / "nwp" / "1"


def test_bundle_sits_beside_the_saved_model_with_a_manifest(bundle):
    for name in ("saved_model.pb", "model.tflite", "litert.json", "tokenizer.json"):
        assert (bundle / name).exists(), name
    manifest = json.loads((bundle / "litert.json").read_text())
    assert manifest["signature"] == "step" and manifest["quantization"] == "float32"
    assert [i["name"] for i in manifest["inputs"]] == ["token_ids", "h_0", "c_0"]
    assert [o["name"] for o in manifest["outputs"]] == ["logits", "h_0", "c_0"]
    signature = Interpreter(str(bundle / "model.tflite")).get_signature_list()["step"]
    assert sorted(signature["inputs"]) == ["c_0", "h_0", "token_ids"]
    assert sorted(signature["outputs"]) == ["c_0", "h_0", "logits"]


def test_runner_top5_equals_the_saved_model_answer(bundle):
    served = tf.saved_model.load(str(bundle)).signatures["serving_default"]
    answer = served(text=tf.constant(PROMPTS))
    runner = LiteRTPredictor.load(str(bundle))
    for row, prompt in enumerate(PROMPTS):
        got = runner.suggest(prompt)
        words = [w.decode() for w in answer["words"][row].numpy()]
        assert [w for w, _ in got] == words, prompt
        np.testing.assert_allclose([p for _, p in got], answer["probabilities"][row],
                                   atol=1e-5)


@pytest.mark.parametrize("name", ["lstm-attention", "transformer", "gru"])
def test_runner_equals_the_saved_model_for_stateful_designs(name, tiny_run, tmp_path):
    """Attention window and Transformer cache: the runner's top-5 and probabilities equal
    the SavedModel's for prompts within the window."""
    from zoo.text import WordVectorizer

    vectorizer = WordVectorizer.load(str(tiny_run))
    keras.utils.set_random_seed(9)
    kwargs = (dict(model_dim=16, num_heads=2, ffn_dim=32, max_length=32)
              if name == "transformer" else dict(units=16, embedding_dim=8))
    model = get_model(name, vectorizer.vocab_size, **kwargs)
    model.build((None, 1))
    predictor = NextWordPredictor(vectorizer, model)
    path = export_saved_model(predictor, str(tmp_path), "m",
                              litert={"quantization": "float32", "window": 32})
    served = tf.saved_model.load(path).signatures["serving_default"]
    answer = served(text=tf.constant(PROMPTS))
    runner = LiteRTPredictor.load(path)
    for row, prompt in enumerate(PROMPTS):
        got = runner.suggest(prompt)
        assert [w for w, _ in got] == [w.decode() for w in answer["words"][row].numpy()]
        np.testing.assert_allclose([p for _, p in got], answer["probabilities"][row],
                                   atol=1e-5)


def test_runner_never_imports_tensorflow(bundle):
    code = ("import sys\n"
            "from serving.litert import LiteRTPredictor\n"
            f"p = LiteRTPredictor.load({str(bundle)!r})\n"
            "words = p.suggest('the value of')\n"
            "assert len(words) == 5, words\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_cli_prints_the_top_words(bundle):
    proc = run_cli("serving.litert", bundle, "the value of", "", "--k", "3", "--json")
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["the value of", ""]
    assert all(len(r["words"]) == 3 and r["probabilities"] == sorted(r["probabilities"],
                                                                      reverse=True)
               for r in rows)


def test_keyboard_use_keeps_the_state_between_key_presses(bundle):
    """Feeding the prompt in two parts equals reading it at once."""
    runner = LiteRTPredictor.load(str(bundle))
    whole = runner.suggest("the value of the")
    runner.reset()
    runner.feed_text("the value")
    runner.feed(runner.tokenizer.encode("of the"))
    assert runner.top_k(5) == whole


def test_transformer_runner_starts_again_when_its_positions_run_out(tiny_run, tmp_path):
    from zoo.text import WordVectorizer

    vectorizer = WordVectorizer.load(str(tiny_run))
    model = get_model("transformer", vectorizer.vocab_size, model_dim=16, num_heads=2,
                      ffn_dim=32, max_length=8)
    model.build((None, 1))
    path = export_saved_model(NextWordPredictor(vectorizer, model), str(tmp_path), "t",
                              max_prompt_tokens=6, litert={"quantization": "float32"})
    runner = LiteRTPredictor.load(path)
    runner.reset()
    runner.feed(list(range(2, 12)))  # 10 tokens through 8 positions
    assert runner.position <= 8
    with pytest.raises(ValueError, match="at most 8 tokens"):
        for _ in range(9):
            runner.step(3)


# -- bad input -----------------------------------------------------------------------------

def test_a_folder_that_is_not_a_bundle(tmp_path, exported):
    with pytest.raises(BundleError, match="not a LiteRT bundle"):
        LiteRTPredictor.load(str(exported[1]))  # a SavedModel without --litert
    with pytest.raises(BundleError, match="not a folder"):
        LiteRTPredictor.load(str(tmp_path / "missing"))
    proc = run_cli("serving.litert", tmp_path, "the", check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("nwp-litert: error:") and "Traceback" not in proc.stderr


def test_bad_prompts_and_ids(bundle):
    runner = LiteRTPredictor.load(str(bundle))
    with pytest.raises(TypeError, match="must be a str"):
        runner.suggest(None)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        runner.step(runner.vocab_size)
    runner.reset()
    with pytest.raises(ValueError, match="Feed a prompt first"):
        runner.top_k(3)


def test_int8_that_does_not_survive_is_refused_and_nothing_is_published(tiny_run, tmp_path,
                                                                       monkeypatch):
    """The int8 check compares against float32 on held-out calibration tokens; with an
    impossible bar it must refuse, and no version folder may appear."""
    monkeypatch.setattr(litert_export, "INT8_MAX_PERPLEXITY_RATIO", 0.5)
    predictor = NextWordPredictor.load(str(tiny_run))
    lines = (tiny_run / "calibration.txt").read_text().splitlines()
    with pytest.raises(QuantizationError, match="does not survive"):
        export_saved_model(predictor, str(tmp_path), "q",
                           litert={"quantization": "int8", "representative_lines": lines})
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == []


def test_export_cli_errors_are_one_line(tiny_run, tmp_path):
    proc = run_cli("serving.export", "--run", tiny_run, "--model_base_path", tmp_path,
                   "--litert", "--litert_quantization", "int8", "--representative_text",
                   tmp_path / "none.txt", check=False)
    assert proc.returncode == 2 and "none.txt does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run_cli("serving.export", "--run", tiny_run, "--model_base_path", tmp_path,
                   "--litert", "--litert_quantization", "int4", check=False)
    assert proc.returncode == 2 and "invalid choice: 'int4'" in proc.stderr
    assert not (tmp_path / "nwp").exists() or not any((tmp_path / "nwp").iterdir())


def test_a_tied_table_is_stored_once_in_dynamic_int8():
    """The converter writes a tied embedding twice (lookup and output layer); the export
    keeps one int8 copy: the file stays near one byte per parameter and the answers stay
    those of float32."""
    keras.utils.set_random_seed(4)
    model = get_model("keyboard", 3000, units=32)  # table 3000 x 96: most of the weights
    model.build((None, 1))
    content, spec = convert_step(model, "dynamic-int8")
    reference, _ = convert_step(model, "float32")
    table = 3000 * 96
    assert model.count_params() <= len(content) < model.count_params() + table // 2
    ids = np.random.default_rng(3).integers(2, 3000, 60)
    ppl_f, ppl_q, overlap = litert_export.compare_quantized(reference, content, spec, ids)
    assert abs(ppl_q / ppl_f - 1) < 0.01 and overlap >= 0.9
    untied = _small("lstm")
    plain, _ = convert_step(untied, "float32")
    assert litert_export.share_tied_table(plain) == plain  # nothing to share: unchanged


def test_transformer_int8_calibrates_past_max_length(tiny_run, tmp_path):
    """Calibration and the int8 check read more tokens than the Transformer's positions:
    both start again from zero states every max_length tokens instead of failing."""
    from zoo.text import WordVectorizer

    vectorizer = WordVectorizer.load(str(tiny_run))
    keras.utils.set_random_seed(2)
    model = get_model("transformer", vectorizer.vocab_size, model_dim=16, num_heads=2,
                      ffn_dim=32, max_length=16)
    model.build((None, 1))
    lines = (tiny_run / "calibration.txt").read_text().splitlines()
    path = export_saved_model(NextWordPredictor(vectorizer, model), str(tmp_path), "t8",
                              litert={"quantization": "int8", "representative_lines": lines})
    manifest = json.loads((tmp_path / "t8" / "1" / "litert.json").read_text())
    assert manifest["quantization"] == "int8" and manifest["int8_check"]["held_out_tokens"] > 16
    assert manifest["max_prompt_tokens"] == 16  # defaults to max_length when that is smaller
    assert len(LiteRTPredictor.load(path).suggest("the value of")) == 5


def test_max_prompt_tokens_beyond_a_transformers_positions_is_refused(tiny_run, tmp_path):
    from zoo.text import WordVectorizer

    vectorizer = WordVectorizer.load(str(tiny_run))
    model = get_model("transformer", vectorizer.vocab_size, model_dim=16, num_heads=2,
                      ffn_dim=32, max_length=16)
    model.build((None, 1))
    with pytest.raises(ValueError, match="max_length=16"):
        export_saved_model(NextWordPredictor(vectorizer, model), str(tmp_path), "t",
                           max_prompt_tokens=17)
    assert not (tmp_path / "t" / "1").exists()


def _corrupt(bundle, tmp_path, edit):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "litert.json").read_text())
    (copy / "litert.json").write_text(json.dumps(edit(manifest)))
    return copy


@pytest.mark.parametrize("edit,match", [
    (lambda m: [m], "format_version"),
    (lambda m: {k: v for k, v in m.items() if k != "inputs"}, "does not describe"),
    (lambda m: {**m, "inputs": [m["inputs"][0], {**m["inputs"][1], "dtype": "float64"}]
                + m["inputs"][2:]}, "h_0 is float64"),
    (lambda m: {**m, "inputs": [m["inputs"][0], {**m["inputs"][1], "shape": [1, 3]}]
                + m["inputs"][2:]}, r"h_0 is float32 \[1, 3\]"),
    (lambda m: {**m, "never_suggest_ids": [0, 10 ** 6]}, "never_suggest_ids"),
])
def test_a_damaged_manifest_is_a_bundle_error(bundle, tmp_path, edit, match):
    with pytest.raises(BundleError, match=match):
        LiteRTPredictor.load(str(_corrupt(bundle, tmp_path, edit)))


def test_cli_bad_numbers_and_a_model_folder(bundle):
    proc = run_cli("serving.litert", bundle, "the", "--k", "0", check=False)
    assert proc.returncode == 2 and "must be at least 1" in proc.stderr
    proc = run_cli("serving.litert", bundle.parent, "the", check=False)
    assert proc.returncode == 2 and f"{bundle.parent / '1'}" in proc.stderr
    proc = run_cli("serving.export", "--run", bundle, "--litert_quantization", "int8",
                   check=False)
    assert proc.returncode == 2 and "need --litert" in proc.stderr
    runner = LiteRTPredictor.load(str(bundle))
    with pytest.raises(TypeError, match="feed_text"):
        runner.feed("12")
    with pytest.raises(ValueError, match="must be an int"):
        runner.step(2.7)


def test_runner_completion_equals_the_saved_model_complete(bundle):
    prompts = ["the va", "The Va", "of the ", "t", "zzzq", "the value of t", "of\x0bthe\tva"]
    served = tf.saved_model.load(str(bundle)).signatures["complete"]
    answer = served(text=tf.constant(prompts))
    runner = LiteRTPredictor.load(str(bundle))
    for row, prompt in enumerate(prompts):
        got = runner.complete(prompt)
        words = [w.decode() for w in answer["words"][row].numpy() if w]
        assert [w for w, _ in got] == words, prompt
        np.testing.assert_allclose([p for _, p in got],
                                   answer["probabilities"][row].numpy()[:len(words)], atol=1e-5)
        assert runner.unfinished_word(prompt)[1] == answer["prefix"][row].numpy().decode()
    assert runner.complete("zzzq") == []  # no word starts with it: the documented answer
    with pytest.raises(ValueError, match="prompt is empty"):
        runner.complete("")
    proc = run_cli("serving.litert", bundle, "the va", "--complete", "--json")
    assert json.loads(proc.stdout)["words"] == [w for w, _ in runner.complete("the va")]
