"""nwp-train as a user runs it: a real run, and bad input that stops with a clear message."""

import json

import pytest

from tests.conftest import assert_train_flags_refused, run_cli
from zoo import PRESETS


@pytest.mark.slow
def test_an_unknown_model_is_refused_with_the_presets_before_any_data_is_read(tmp_path):
    proc = run_cli("training.cli", "--model", "lstn", "--corpus", "ptb", "--data-dir",
                   tmp_path, "--no-download", "--output", tmp_path / "out", check=False,
                   timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"--model must be one of {', '.join(PRESETS)}; got 'lstn'" in proc.stderr
    assert "does not exist" not in proc.stderr  # refused before the corpus is looked for


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
    (["--clipnorm", "0"], "--no-clip turns clipping off"),
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


TINY = ["--corpus", "default", "--epochs", "1", "--max-train-tokens", "3000", "--units", "8",
        "--embedding-dim", "8", "--num-layers", "1", "--max-vocab", "200", "--bptt", "10"]


def test_a_diverging_run_stops_with_a_message_and_saves_what_the_readme_says(tmp_path):
    proc = run_cli("training.cli", *TINY, "--learning-rate", "1e9", "--no-clip",
                   "--optimizer", "sgd", "--output", tmp_path, check=False)
    assert proc.returncode == 2 and "diverged" in proc.stderr, proc.stderr[-500:]
    for name in ("model.keras", "history.json", "metrics.json"):
        assert not (tmp_path / name).exists(), name
    for name in ("vocab.txt", "text.json", "calibration.txt", "history.csv", "checkpoints"):
        assert (tmp_path / name).exists(), name


def test_an_unreadable_backup_asks_for_fresh_and_fresh_starts_over(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "latest.weights.h5").write_bytes(b"cut off while writing")
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 0, "batch": -1}')
    proc = run_cli("training.cli", *TINY, "--output", tmp_path, check=False)
    assert proc.returncode == 2 and "--fresh" in proc.stderr, proc.stderr[-800:]
    assert "Traceback" not in proc.stderr
    run_cli("training.cli", *TINY, "--output", tmp_path, "--fresh")
    assert (tmp_path / "model.keras").exists() and not (tmp_path / "backup").exists()


def test_a_corpus_shorter_than_one_window_is_refused_before_training(tmp_path):
    proc = run_cli("training.cli", *TINY[:-2], "--bptt", "5000", "--output", tmp_path,
                   check=False)
    assert proc.returncode == 2 and "shorter than one window" in proc.stderr


def test_a_run_killed_mid_epoch_resumes_without_losing_or_repeating_an_epoch(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    args = [sys.executable, "-m", "training.cli", "--corpus", "default", "--epochs", "3",
            "--max-train-tokens", "100000", "--units", "48", "--embedding-dim", "48",
            "--num-layers", "1", "--max-vocab", "500", "--verbose", "2", "--output",
            str(tmp_path)]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    deadline = time.monotonic() + 300
    while not (tmp_path / "checkpoints" / "epoch-001.weights.h5").exists():
        assert first.poll() is None and time.monotonic() < deadline, "epoch 1 never ended"
        time.sleep(0.05)
    # BackupAndRestore runs before ModelCheckpoint at epoch end: the epoch-1 backup is
    # complete, and epoch 2 has just begun.
    assert not (tmp_path / "checkpoints" / "epoch-002.weights.h5").exists(), "epoch 2 too fast"
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert not (tmp_path / "model.keras").exists()

    second = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    output = second.stdout + second.stderr
    assert "resuming the interrupted run" in output
    assert "Epoch 1/3" not in output and "Epoch 2/3" in output and "Epoch 3/3" in output
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch-001.weights.h5", "epoch-002.weights.h5", "epoch-003.weights.h5"]
    assert (tmp_path / "model.keras").exists() and not (tmp_path / "backup").exists()
    # The history covers the epoch of the killed process too, not only the two after it.
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["val_perplexity"]) == 3 and len(history["loss"]) == 3
    assert all(1 < v < 600 for v in history["val_perplexity"])  # real values, vocab 502
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs_run"] == 3


def test_resuming_on_a_corpus_with_another_vocabulary_is_refused(tmp_path):
    from zoo import WordVectorizer

    WordVectorizer(["some", "other", "words", "<eos>"]).save(tmp_path)
    (tmp_path / "backup").mkdir()
    proc = run_cli("training.cli", *TINY, "--output", tmp_path, check=False)
    assert proc.returncode == 2 and "vocabulary" in proc.stderr and "--fresh" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_configuration_sets_real_flags_and_a_known_model():
    from training.cli import build_parser
    from training.configs import CONFIGS

    dests = {a.dest for a in build_parser()._actions}
    for name, config in CONFIGS.items():
        assert set(config) <= dests, (name, set(config) - dests)
        assert config["model"] in PRESETS


def test_gradient_flow_callback_writes_a_curve_per_epoch(tmp_path):
    run_cli("training.cli", *TINY[:-2], "--bptt", "12", "--epochs", "2", "--gradient-flow",
            "--output", tmp_path)
    rows = (tmp_path / "gradient_flow.csv").read_text().strip().split("\n")[1:]
    assert {r.split(",")[0] for r in rows} == {"epoch 1", "epoch 2"}
    assert len(rows) == 2 * 12 and all(float(r.split(",")[3]) >= 0 for r in rows)
    assert (tmp_path / "gradient_flow.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("flags, message", [
    (["--max-vocab", "0"], "--max-vocab must be >= 2"),
    (["--max-vocab", "-5"], "--max-vocab must be >= 2"),
    (["--lr-decay", "-0.5"], "--lr-decay must be a finite number > 0"),
    (["--lr-decay", "nan"], "--lr-decay must be a finite number > 0"),
    (["--time-budget-minutes", "-1"], "--time-budget-minutes must be a finite number > 0"),
    (["--time-budget-minutes", "inf"], "--time-budget-minutes must be a finite number > 0"),
    (["--learning-rate", "nan"], "--learning-rate must be a finite number > 0"),
    (["--decay-after", "-1"], "--decay-after must be >= 0"),
    (["--min-count", "0"], "--min-count must be >= 1"),
])
def test_bad_numbers_are_one_line_errors_before_any_work(flags, message, capsys, tmp_path):
    assert_train_flags_refused(flags, message, capsys, tmp_path)


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "1000000000"], "logits of one batch"),
    (["--units", "200000"], "weights and their optimizer state"),
])
def test_flags_that_need_more_memory_than_the_machine_has_stop_before_building(tmp_path, flags,
                                                                               message):
    proc = run_cli("training.cli", "--corpus", "default", "--max-train-tokens", "3000",
                   "--output", tmp_path, *flags, check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "model.keras").exists()


@pytest.mark.slow
def test_default_output_is_a_bar_in_nats_per_token_and_tensorflow_stays_quiet(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "training.cli", *TINY, "--output",
                           str(tmp_path), "--no-keyboard-metrics"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Epoch 1/1" in proc.stdout and "nats/token: " in proc.stdout
    assert "val_perplexity: " in proc.stdout and " loss: " not in proc.stdout
    assert "\r" in proc.stdout or "\b" in proc.stdout  # a live bar, redrawn in place
    assert not [line for line in proc.stderr.splitlines() if line[:5] in ("W0000", "E0000")]
