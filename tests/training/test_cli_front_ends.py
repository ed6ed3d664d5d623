"""nwp-train --tokenizer / --vocab-size: bad flags stop first; a subword run saves its front end
and reports per-word perplexity and bits per character, which nwp-evaluate reproduces."""

import json
import math

import pytest

from tests.conftest import assert_train_flags_refused, run_cli
from training.cli import TOKENIZER_KINDS


def test_the_cli_knows_every_front_end_kind():
    from zoo.front_ends import KINDS

    assert TOKENIZER_KINDS == KINDS


@pytest.mark.parametrize("flags, message", [
    (["--tokenizer", "bpe"], "invalid choice: 'bpe'"),
    (["--tokenizer", "wordpiece"], "--tokenizer wordpiece needs --vocab-size"),
    (["--tokenizer", "sentencepiece", "--vocab-size", "100", "--max-vocab", "90"],
     "not both"),
    (["--tokenizer", "char", "--max-vocab", "90"], "--max-vocab is for --tokenizer word"),
])
def test_bad_tokenizer_flags_are_one_line_errors(flags, message, capsys, tmp_path):
    assert_train_flags_refused(flags, message, capsys, tmp_path)


def test_a_vocabulary_too_small_for_the_specials_is_a_clear_error(tmp_path):
    proc = run_cli("training.cli", "--corpus", "default", "--tokenizer", "sentencepiece",
                   "--vocab-size", "3", "--output", tmp_path, check=False, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "too small for the sentencepiece front end" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_sentencepiece_run_saves_its_front_end_and_comparable_numbers(tmp_path):
    from training.corpora import load_corpus
    from zoo.front_ends import count_characters, count_words, load_front_end

    run_cli("training.cli", "--corpus", "default", "--tokenizer", "sentencepiece",
            "--vocab-size", "300", "--epochs", "1", "--max-train-tokens", "3000", "--units",
            "8", "--embedding-dim", "8", "--num-layers", "1", "--bptt", "10",
            "--output", tmp_path, timeout=600)
    front_end = load_front_end(tmp_path)
    assert front_end.kind == "sentencepiece" and front_end.vocab_size == 300
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["tokenizer"] == "sentencepiece"
    test = load_corpus("default").test
    tokens = front_end.encode_lines(test).size
    nats = metrics["test_loss_nats_per_token"] * (tokens - 1)  # every token after the first
    assert metrics["test_per_word_perplexity"] == pytest.approx(
        math.exp(nats / count_words(test)), rel=1e-6)
    assert metrics["test_bits_per_character"] == pytest.approx(
        nats / math.log(2) / count_characters(test), rel=1e-6)
    # nwp-evaluate reads the run's front end and gives the same per-token perplexity
    proc = run_cli("training.evaluate", "--run", tmp_path, timeout=600)
    report = json.loads((tmp_path / "keyboard_metrics.json").read_text())
    assert report["tokenizer"] == "sentencepiece"
    assert report["perplexity"] == pytest.approx(metrics["test_perplexity"], rel=1e-3)
    assert report["per_word_perplexity"] == pytest.approx(
        metrics["test_per_word_perplexity"], rel=1e-3)
    assert report["ksr_next_word"] is None  # pieces: no keystroke savings
    assert "per-word perplexity" in proc.stdout
