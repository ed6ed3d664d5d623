"""Keras callbacks of the training road."""

from __future__ import annotations

import time

import keras


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
