"""The training road's callbacks and nwp-train's error handling: output a person can read,
errors with their cause."""

import math

import keras
import numpy as np
import pytest

from training import cli
from training.callbacks import BackupError, EverySeconds, ReadableProgress, RestorableBackup
from zoo import get_model

V, T = 17, 6


def _model():
    keras.utils.set_random_seed(0)
    model = get_model("lstm", V, units=8, embedding_dim=8, num_layers=1)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.build((None, T))
    model.optimizer.build(model.trainable_variables)
    return model


def _data(n=32):
    x = np.random.default_rng(0).integers(1, V, size=(n, T)).astype("int32")
    return x, np.roll(x, -1, axis=1)


def _progress(**kwargs):
    lines = []
    progress = ReadableProgress(print_fn=lines.append, **kwargs)
    progress.set_params({"epochs": 4, "steps": 2})
    return progress, lines


def test_the_clipping_explanation_appears_once_the_first_time_the_fraction_is_high():
    progress, lines = _progress(verbose=2, clipnorm=5.0)
    for epoch, fraction in enumerate([0.2, 0.9, 1.0, 0.7]):
        progress.on_epoch_begin(epoch)
        progress.on_epoch_end(epoch, {"perplexity": 50.0, "clipped_fraction": fraction})
    notes = [line for line in lines if line.startswith("note: clipped_fraction")]
    assert len(notes) == 1 and notes[0].startswith("note: clipped_fraction 0.90")
    assert "--clipnorm 5" in notes[0]
    assert [line for line in lines if line.startswith("Epoch")] == [
        "Epoch 1/4", "Epoch 2/4", "Epoch 3/4", "Epoch 4/4"]


def test_no_explanation_while_the_fraction_stays_low_or_when_quiet():
    progress, lines = _progress(verbose=1)
    progress.on_epoch_end(0, {"perplexity": 9.0, "clipped_fraction": 0.5})
    quiet, quiet_lines = _progress(verbose=0)
    quiet.on_epoch_end(0, {"perplexity": 9.0, "clipped_fraction": 1.0})
    assert not [line for line in lines + quiet_lines if "clipped_fraction" in line]


def test_values_shown_are_nats_per_token_and_perplexity_and_the_window_loss_only_if_asked():
    logs = {"loss": 122.4, "perplexity": math.e ** 2, "gradient_norm": np.array([3.0]),
            "clipped_fraction": 0.25, "val_loss": 130.0, "val_perplexity": math.e ** 3}
    shown = dict(_progress(verbose=1)[0].readable(logs))
    assert shown == pytest.approx({"nats/token": 2.0, "perplexity": math.e ** 2,
                                   "gradient_norm": 3.0, "clipped_fraction": 0.25})
    assert dict(_progress(verbose=1)[0].readable(logs, "val_")) == pytest.approx(
        {"val_nats/token": 3.0, "val_perplexity": math.e ** 3})
    asked = dict(_progress(verbose=1, show_window_loss=True)[0].readable(logs))
    assert asked["loss"] == pytest.approx(122.4)


def test_a_real_fit_shows_a_live_bar_in_nats_per_token_without_the_window_loss(capsys):
    model = _model()
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[ReadableProgress(1)])
    out = capsys.readouterr().out
    assert "Epoch 1/1" in out and "4/4" in out
    assert "nats/token:" in out and "perplexity:" in out and "clipped_fraction:" in out
    assert " loss:" not in out


def test_every_seconds_prints_step_lines_with_nats_per_token():
    lines = []
    model = _model()
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[EverySeconds("lstm", seconds=0.0, print_fn=lines.append)])
    assert [line.split(",")[0] for line in lines] == [f"lstm: step {k}/4" for k in range(1, 5)]
    assert all("nats/token" in line for line in lines)


def test_an_unreadable_backup_is_a_backup_error_that_asks_for_fresh(tmp_path):
    (tmp_path / "latest.weights.h5").write_bytes(b"cut off while writing")
    model = _model()
    x, y = _data()
    with pytest.raises(BackupError, match="--fresh"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[RestorableBackup(str(tmp_path))])


class _Bug(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        raise ValueError("a bug in a callback")


class _StopAfterBackup(keras.callbacks.Callback):
    """Ends fit with an exception after the first epoch's backup, as a kill would, so the
    backup stays (BackupAndRestore deletes it when fit ends normally)."""

    def on_epoch_end(self, epoch, logs=None):
        raise KeyboardInterrupt


def _interrupted(model, x, y, path):
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[RestorableBackup(str(path)),
                                                        _StopAfterBackup()])


def test_a_value_error_after_a_good_restore_keeps_its_own_type_and_message(tmp_path):
    model = _model()
    x, y = _data()
    _interrupted(model, x, y, tmp_path)
    assert any(tmp_path.iterdir())  # a real backup to resume from
    with pytest.raises(ValueError, match="a bug in a callback") as caught:
        model.fit(x, y, epochs=3, verbose=0, callbacks=[RestorableBackup(str(tmp_path)),
                                                        _Bug()])
    assert not isinstance(caught.value, BackupError) and "--fresh" not in str(caught.value)


@pytest.fixture
def _cli_args(tmp_path):
    return ["--corpus", "default", "--output", str(tmp_path)]


def test_main_lets_a_bug_value_error_through_with_its_traceback(monkeypatch, _cli_args):
    def buggy(args):
        raise ValueError("an index went wrong")

    monkeypatch.setattr(cli, "train", buggy)
    with pytest.raises(ValueError, match="an index went wrong"):
        cli.main(_cli_args)


@pytest.mark.parametrize("error", [cli.RunError("lower --bptt"), BackupError("use --fresh"),
                                   FloatingPointError("Training diverged")])
def test_main_prints_a_user_error_in_one_line(monkeypatch, capsys, _cli_args, error):
    def refuses(args):
        raise error

    monkeypatch.setattr(cli, "train", refuses)
    assert cli.main(_cli_args) == 2
    err = capsys.readouterr().err
    assert err == f"nwp-train: error: {error}\n"


@pytest.mark.slow
def test_a_bug_during_a_resumed_fit_is_not_relabelled_rerun_with_fresh(monkeypatch, tmp_path):
    """Before, any ValueError during a resumed fit became "rerun with --fresh"."""
    (tmp_path / "backup").mkdir()  # a run to resume (nothing in it to restore)
    make_callbacks = cli.make_callbacks

    def with_a_bug(*args):
        callbacks, budget = make_callbacks(*args)
        return callbacks + [_Bug()], budget

    monkeypatch.setattr(cli, "make_callbacks", with_a_bug)
    with pytest.raises(ValueError, match="a bug in a callback") as caught:
        cli.main(["--corpus", "default", "--epochs", "1", "--max-train-tokens", "600",
                  "--units", "8", "--embedding-dim", "8", "--num-layers", "1",
                  "--max-vocab", "100", "--bptt", "10", "--verbose", "0",
                  "--no-keyboard-metrics", "--output", str(tmp_path)])
    assert "--fresh" not in str(caught.value)
