"""Fixtures of the zoo tests."""

import keras
import pytest

from zoo.cells import FusedRNN


@pytest.fixture(params=["keras.layers.RNN", "zoo.cells.FusedRNN"])
def rnn_layer(request, monkeypatch):
    """Runs a test twice: with ``keras.layers.RNN`` as written, then with
    ``keras.layers.RNN`` replaced by :class:`zoo.cells.FusedRNN` (the layer the zoo's
    language models use), so every comparison against Keras's built-in cells also covers the
    fused path. Built-in cells inside ``FusedRNN`` take Keras's own loop, so they stay the
    independent reference."""
    if request.param == "zoo.cells.FusedRNN":
        monkeypatch.setattr(keras.layers, "RNN", FusedRNN)
    return request.param
