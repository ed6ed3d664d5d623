"""Keras callbacks of the training road."""

from __future__ import annotations

import math
import os
import time

import keras
import numpy as np


class ResetStates(keras.callbacks.Callback):
    """Zero a stateful model's carried states at the start of every epoch and of every
    evaluation, so each pass over a text starts from the documented initial state."""

    def _reset(self):
        reset = getattr(self.model, "reset_states", None)
        if reset is not None:
            reset()

    def on_epoch_begin(self, epoch, logs=None):
        self._reset()

    def on_test_begin(self, logs=None):
        self._reset()


class Progress(keras.callbacks.Callback):
    """Counts training batches (for tokens/s) and stops ``fit`` after ``minutes`` (None: no
    limit); the epoch in progress then ends early."""

    def __init__(self, minutes=None):
        super().__init__()
        self.minutes = minutes
        self.batches = 0

    def on_train_begin(self, logs=None):
        self.deadline = None if self.minutes is None else time.monotonic() + 60 * self.minutes

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.model.stop_training = True


class BackupError(ValueError):
    """The backup of an interrupted run cannot be restored into this run's model (written
    with other flags, or cut off while being written). The message says to rerun with
    ``--fresh``."""


class RestorableBackup(keras.callbacks.BackupAndRestore):
    """``keras.callbacks.BackupAndRestore`` whose failure to *restore* an existing backup is
    a :class:`BackupError` that says what to do. Only the restore is relabelled: an error
    anywhere else in ``fit`` keeps its own type, message and traceback.

    Args:
        backup_dir: the backup folder (see ``keras.callbacks.BackupAndRestore``).
        **kwargs: passed to ``keras.callbacks.BackupAndRestore``.
    """

    def on_train_begin(self, logs=None):
        has_backup = os.path.isdir(self.backup_dir) and any(os.scandir(self.backup_dir))
        if not (has_backup and self.model.built):
            return super().on_train_begin(logs)
        try:
            return super().on_train_begin(logs)
        except (ValueError, OSError) as err:
            raise BackupError(
                f"Could not resume from the backup in {self.backup_dir} ({err}). It was "
                "written by a run with other flags or cut off while being written: rerun "
                "with --fresh to start over.") from err


def _number(value):
    """A log value as a float (a multi-worker run logs shape-(1,) arrays)."""
    return float(np.asarray(value, dtype=np.float64).reshape(-1)[0])


class ReadableProgress(keras.callbacks.Callback):
    """Progress that a person can read: ``Epoch i/n``, then a ``keras.utils.Progbar``
    (``verbose=1``: a live bar; ``verbose=2``: one line at the epoch's end; 0: nothing)
    showing the loss per token in nats (``nats/token``, the log of the perplexity), the
    perplexity, the global gradient norm before clipping and ``clipped_fraction``; at the
    epoch's end also their validation values. The objective as optimised (``loss``: summed
    over a window's time steps under ``sum_over_time``) only with ``show_window_loss``.

    The first time an epoch ends with ``clipped_fraction > clip_note_above``, one line says
    what that means (once per run; not at ``verbose=0``).

    Args:
        verbose: 0, 1 or 2, as ``model.fit``'s.
        show_window_loss: also show ``loss``.
        clipnorm: the clipping threshold, named in the explanation (None: not named).
        clip_note_above: the ``clipped_fraction`` above which the explanation is printed.
        print_fn: where lines go (default ``print`` with ``flush=True``).
    """

    KEYS = ("nats/token", "perplexity", "gradient_norm", "clipped_fraction", "loss")
    CLIP_NOTE = (
        "note: clipped_fraction {fraction:.2f} = the fraction of training steps whose "
        "gradient norm (gradient_norm, before clipping) was above the clipping threshold"
        "{threshold} and was scaled down to it (global-norm clipping, Pascanu et al. 2013). "
        "Common while a model is young; if it stays near 1 for many epochs, the threshold "
        "is doing the learning rate's job: try a lower --learning-rate or a higher "
        "--clipnorm.")

    def __init__(self, verbose=1, show_window_loss=False, clipnorm=None, clip_note_above=0.5,
                 print_fn=None):
        super().__init__()
        self.verbose, self.show_window_loss = verbose, show_window_loss
        self.clipnorm, self.clip_note_above = clipnorm, clip_note_above
        self.print_fn = print_fn or (lambda line: print(line, flush=True))
        self.clip_noted = False
        self.bar, self.seen = None, 0

    def readable(self, logs, prefix=""):
        """``[(label, value), ...]`` for the logs' entries with ``prefix`` (``""`` or
        ``"val_"``): ``nats/token`` = log(perplexity), perplexity, and the rest."""
        logs = logs or {}
        values = []
        if f"{prefix}perplexity" in logs:
            perplexity = _number(logs[f"{prefix}perplexity"])
            values += [(f"{prefix}nats/token", math.log(perplexity) if perplexity > 0
                        else math.nan), (f"{prefix}perplexity", perplexity)]
        for key in ("gradient_norm", "clipped_fraction") + (("loss",) if
                                                            self.show_window_loss else ()):
            if f"{prefix}{key}" in logs:
                values.append((f"{prefix}{key}", _number(logs[f"{prefix}{key}"])))
        return values

    def on_epoch_begin(self, epoch, logs=None):
        if not self.verbose:
            return
        self.print_fn(f"Epoch {epoch + 1}/{self.params.get('epochs')}")
        names = [f"{prefix}{key}" for prefix in ("", "val_") for key in self.KEYS]
        # stateful: every value shown is already the epoch's running mean, shown as is
        self.bar = keras.utils.Progbar(self.params.get("steps"), verbose=self.verbose,
                                       stateful_metrics=names, unit_name="step")
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is None:
            return
        self.seen = batch + 1
        if self.verbose == 1:  # the epoch's end finalises the bar, with validation values
            self.bar.update(self.seen, values=self.readable(logs), finalize=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            self.bar.update(self.seen, values=self.readable(logs) + self.readable(logs, "val_"),
                            finalize=True)
            self.bar = None
        fraction = (logs or {}).get("clipped_fraction")
        if (self.verbose and not self.clip_noted and fraction is not None
                and _number(fraction) > self.clip_note_above):
            self.clip_noted = True
            threshold = "" if self.clipnorm is None else f" (--clipnorm {self.clipnorm:g})"
            self.print_fn(self.CLIP_NOTE.format(fraction=_number(fraction),
                                                threshold=threshold))


class EverySeconds(keras.callbacks.Callback):
    """One progress line at most every ``seconds`` during ``fit`` (for commands whose fit
    runs with ``verbose=0``): ``<label>: step k/n, <nats> nats/token, perplexity <p>``.

    Args:
        label: the line's start (e.g. the model's name).
        seconds: the least time between two lines, > 0.
        print_fn: where lines go (default ``print`` with ``flush=True``).
    """

    def __init__(self, label, seconds=5.0, print_fn=None):
        super().__init__()
        self.label, self.seconds = label, seconds
        self.print_fn = print_fn or (lambda line: print(line, flush=True))

    def on_train_begin(self, logs=None):
        self.last = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self.last < self.seconds:
            return
        self.last = now
        steps = self.params.get("steps")
        line = f"{self.label}: step {batch + 1}" + (f"/{steps}" if steps else "")
        if logs and "perplexity" in logs:
            perplexity = _number(logs["perplexity"])
            line += f", {math.log(perplexity):.3f} nats/token, perplexity {perplexity:.1f}"
        self.print_fn(line)
