"""nwp-train as a user runs it: a real run, and bad input that stops with a clear message."""

import json

import pytest

from tests.conftest import run_cli


def test_a_tiny_run_writes_a_complete_run_folder(tiny_run):
    for name in ("model.keras", "vocab.txt", "text.json", "history.json", "metrics.json"):
        assert (tiny_run / name).exists(), name
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1
    vocab = metrics["vocab_size"]
    # An untrained model is about uniform (ppl ~ vocab); one short epoch must stay finite
    # and below a few times that.
    assert 1 < metrics["test_perplexity"] < 3 * vocab
    history = json.loads((tiny_run / "history.json").read_text())
    assert {"loss", "perplexity", "gradient_norm", "val_perplexity"} <= set(history)


@pytest.mark.parametrize("flags, message", [
    (["--bptt", "0"], "--bptt must be >= 1"),
    (["--clipnorm", "-1"], "--clipnorm"),
    (["--dropout", "1.5"], "--dropout"),
    (["--corpus", "imdb"], "invalid choice"),
])
def test_bad_flags_stop_before_training(flags, message):
    proc = run_cli("training.cli", *flags, check=False, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_missing_corpus_files_give_a_message_not_a_traceback(tmp_path):
    proc = run_cli("training.cli", "--corpus", "ptb", "--data-dir", tmp_path, "--no-download",
                   "--output", tmp_path / "out", check=False, timeout=120)
    assert proc.returncode == 2
    assert "ptb.train.txt does not exist" in proc.stderr and "Traceback" not in proc.stderr
