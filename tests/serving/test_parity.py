"""nwp-parity: every runtime's top-5 for the same version, checked against the Keras model
answered here, independently of the report; its word-by-word comparison; bad input."""

import contextlib
import io
import json
import math
import shutil

import numpy as np
import pytest
import tensorflow as tf

from serving import parity
from serving.litert_export import QUANTIZATIONS, write_bundle
from zoo import NextWordPredictor

from tests.conftest import run_cli

PROMPTS = ["", "the", "the value of the", "an unknownword here", "a, b; and (c)"]
FLOAT_RUNTIMES = ("saved_model", "rest", "grpc", "litert-bundle", "litert-float32")


@pytest.fixture(scope="module")
def versions(exported, tiny_run, tmp_path_factory):
    """A copy of the exported version 1 with a float32 LiteRT bundle added, and a version 2
    beside it (so the server must be told to serve version 1, not the latest)."""
    base = tmp_path_factory.mktemp("parity_models")
    v1 = base / "nwp" / "1"
    shutil.copytree(exported[1], v1)
    write_bundle(NextWordPredictor.load(str(tiny_run)), str(v1), quantization="float32")
    shutil.copytree(exported[1], base / "nwp" / "2")
    return base, v1


@pytest.fixture(scope="module")
def cli(versions, tiny_run, tmp_path_factory):
    """``nwp-parity`` run once, in process: ``(exit status, stdout, report from --json)``."""
    base, _ = versions
    path = tmp_path_factory.mktemp("parity") / "report.json"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = parity.main(["--run", str(tiny_run), "--model_base_path", str(base),
                              "--model_name", "nwp", "--version", "1", "--prompts", *PROMPTS,
                              "--json", str(path)])
    assert status == 0, err.getvalue()[-3000:]
    return status, out.getvalue(), json.loads(path.read_text()), err.getvalue()


@pytest.fixture(scope="module")
def reference(tiny_run):
    """The Keras model's own answer, computed here: words, probabilities, full softmax."""
    predictor = NextWordPredictor.load(str(tiny_run))
    out = predictor.top_k(tf.constant(PROMPTS), k=5, max_prompt_tokens=256)
    full = predictor.next_word_distribution(tf.constant(PROMPTS), 256).numpy()
    index = {w: i for i, w in enumerate(predictor.vectorizer.vocabulary)}
    return ([[w.decode() for w in row] for row in out["words"].numpy()],
            out["probabilities"].numpy(), full, index)


def test_the_report_has_every_runtime(cli):
    _, _, report, _ = cli
    assert list(report["runtimes"]) == list(parity.RUNTIMES)
    assert [f"litert-{q}" for q in QUANTIZATIONS] == list(parity.RUNTIMES)[5:]
    assert report["version"] == 1 and report["prompts"] == PROMPTS and report["k"] == 5
    for name, row in report["runtimes"].items():
        if name == "litert-int8" and row["status"] == "refused":
            assert "does not survive" in row["message"]
            continue
        assert row["status"] == "ok", (name, row["message"])
        assert [a["prompt"] for a in row["answers"]] == PROMPTS
        assert all(len(a["words"]) == 5 == len(a["probabilities"]) for a in row["answers"])
        assert row["load_s"] >= 0 and row["answer_s"] >= 0


def test_keras_row_is_the_model_answered_here(cli, reference):
    words, probs, _, _ = reference
    row = cli[2]["runtimes"]["keras"]
    assert [a["words"] for a in row["answers"]] == words
    np.testing.assert_allclose([a["probabilities"] for a in row["answers"]], probs, atol=1e-7)
    assert row["max_abs_diff"] == 0.0 and row["top_k_mismatches"] == 0


@pytest.mark.parametrize("name", FLOAT_RUNTIMES)
def test_float_runtimes_agree_with_keras(cli, reference, name):
    """Same top-5 words and each probability within 1e-4 of the Keras answer computed here
    (the tiny model's probabilities are near 0.003, so also within 0.1% of it); the
    report's own max_abs_diff says so too."""
    words, probs, _, _ = reference
    row = cli[2]["runtimes"][name]
    worst = 0.0
    for i, answer in enumerate(row["answers"]):
        assert set(answer["words"]) == set(words[i]), (name, PROMPTS[i])
        mine = dict(zip(words[i], probs[i]))
        for word, p in zip(answer["words"], answer["probabilities"]):
            assert abs(p - mine[word]) <= 1e-4 and abs(p - mine[word]) <= 1e-3 * mine[word]
            worst = max(worst, abs(p - mine[word]))
    assert row["top_k_mismatches"] == 0 and row["prompts_with_mismatch"] == 0
    assert row["max_abs_diff"] <= 1e-4
    assert row["max_abs_diff"] == pytest.approx(worst, abs=1e-7)
    if name in ("saved_model", "rest", "grpc"):  # the same graph: the same order too
        assert [a["words"] for a in row["answers"]] == words
        assert row["order_differs"] == 0


def test_server_rows_name_the_server_and_it_is_stopped(cli):
    rows = cli[2]["runtimes"]
    assert rows["rest"]["detail"]["url"].startswith("http://127.0.0.1:")
    assert rows["grpc"]["detail"]["url"].startswith("127.0.0.1:")
    assert rows["rest"]["detail"]["server_start_s"] > 0
    import urllib.request

    with pytest.raises(OSError):  # stopped: nothing listens on its port any more
        urllib.request.urlopen(rows["rest"]["detail"]["url"] + "/v1/models/nwp", timeout=2)


def test_quantized_rows_are_measured_against_keras(cli, reference):
    """dynamic-int8 (and float16, int8 if not refused) rows exist with numbers; their
    max_abs_diff covers at least the words both lists share, recomputed here."""
    words, probs, full, index = reference
    rows = cli[2]["runtimes"]
    assert rows["litert-dynamic-int8"]["status"] == "ok"
    assert rows["litert-dynamic-int8"]["detail"]["quantization"] == "dynamic-int8"
    for name in ("litert-float16", "litert-dynamic-int8", "litert-int8"):
        row = rows[name]
        if row["status"] != "ok":
            continue
        shared = [abs(p - full[i][index[w]]) for i, a in enumerate(row["answers"])
                  for w, p in zip(a["words"], a["probabilities"])]
        assert math.isfinite(row["max_abs_diff"])
        assert row["max_abs_diff"] >= max(shared) - 1e-7
        assert row["max_abs_diff"] < 0.05  # quantized, but the same model
        assert row["unresolved"] == 0  # LiteRT gives its full distribution


def test_table_on_stdout(cli):
    _, text, report, err = cli
    lines = text.splitlines()
    assert lines[0].startswith("nwp-parity: nwp version 1")
    for prompt in PROMPTS:
        assert f"prompt {prompt!r}" in lines
    header = next(i for i, line in enumerate(lines) if line.startswith("runtime "))
    summary = {line.split()[0]: line for line in lines[header + 1:header + 1 + 9]}
    assert list(summary) == list(parity.RUNTIMES)
    assert "reference" in summary["keras"]
    assert f"{report['runtimes']['saved_model']['max_abs_diff']:.2e}" in summary["saved_model"]
    assert "starting nwp-serve" in err and "stopping nwp-serve" in err  # progress on stderr


def test_compare_answers_finds_differences_and_missing_words():
    vocab = ["", "[UNK]", "a", "b", "c", "d"]
    full = np.array([[0, 0, 0.4, 0.3, 0.2, 0.1]])
    ref = {"words": [["a", "b", "c"]], "probabilities": [[0.4, 0.3, 0.2]], "full": full,
           "vocabulary": vocab}
    same = parity.compare_answers(ref, {"words": [["a", "b", "c"]],
                                        "probabilities": [[0.4, 0.3, 0.2]]})
    assert same == {"max_abs_diff": 0.0, "top_k_mismatches": 0, "unresolved": 0,
                    "prompts_with_mismatch": 0, "order_differs": 0}
    # 'c' left the top 3 for 'd'; no full answer: 'c' cannot be compared, 'd' can (keras)
    moved = parity.compare_answers(ref, {"words": [["a", "b", "d"]],
                                         "probabilities": [[0.4, 0.25, 0.15]]})
    assert moved["max_abs_diff"] == pytest.approx(0.05)
    assert (moved["top_k_mismatches"], moved["unresolved"], moved["prompts_with_mismatch"]) \
        == (1, 1, 1)
    # with the runtime's full answer 'c' is compared too
    with_full = parity.compare_answers(ref, {
        "words": [["a", "b", "d"]], "probabilities": [[0.4, 0.25, 0.15]],
        "full": np.array([[0, 0, 0.4, 0.25, 0.05, 0.15]]), "vocabulary": vocab})
    assert with_full["max_abs_diff"] == pytest.approx(0.15)
    assert (with_full["top_k_mismatches"], with_full["unresolved"]) == (1, 0)
    swapped = parity.compare_answers(ref, {"words": [["b", "a", "c"]],
                                           "probabilities": [[0.3, 0.4, 0.2]]})
    assert swapped["order_differs"] == 1 and swapped["top_k_mismatches"] == 0


def test_int8_without_calibration_text_is_skipped_with_a_reason(tiny_run, versions, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("calibration.txt",
                                                                 "checkpoints", "logs"))
    report = parity.parity_report(run, versions[1], ["the"], runtimes=["litert-int8"])
    assert list(report["runtimes"]) == ["keras", "litert-int8"]
    row = report["runtimes"]["litert-int8"]
    assert row["status"] == "skipped" and "calibration.txt does not exist" in row["message"]


def test_bad_input_is_one_line_and_exit_2(tiny_run, versions, tmp_path, capsys):
    base, _ = versions
    proc = run_cli("serving.parity", "--run", tmp_path / "none", "--model_base_path", base,
                   check=False, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("nwp-parity: error:") and proc.stderr.count("\n") == 1
    assert "does not exist" in proc.stderr

    def fails(*argv):
        assert parity.main(["--run", str(tiny_run), "--model_base_path", str(base),
                            *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("nwp-parity: error:") and err.count("\n") == 1, err
        return err

    assert "has no version 7 (it has 1, 2)" in fails("--version", "7")
    assert "no version folders" in fails("--model_name", "other")
    assert "unknown runtime 'tflite'" in fails("--skip", "rest,tflite")
    assert "is not a training run folder" in fails("--run", str(tmp_path))
    with pytest.raises(parity.ParityError, match="not an exported version folder"):
        parity.parity_report(tiny_run, base / "nwp", ["the"])
