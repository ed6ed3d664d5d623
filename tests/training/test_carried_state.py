"""Truncated BPTT with carried state: windows of a stream equal one pass over it."""

import keras
import numpy as np
import pytest

from training.callbacks import ResetStates
from training.data import make_streams, stream_dataset
from zoo import get_model

V = 17


@pytest.mark.parametrize("preset", ["lstm", "gru", "rnn"])
def test_evaluating_in_windows_with_carried_state_equals_one_pass(preset):
    ids = np.random.default_rng(0).integers(2, V, size=161).astype("int32")
    batch, bptt = 4, 7
    keras.utils.set_random_seed(1)
    model = get_model(preset, V, units=6, embedding_dim=5, stateful=True)
    model.compile(optimizer="sgd")
    model.build((batch, bptt))
    logs = model.evaluate(stream_dataset(ids, batch, bptt), verbose=0, return_dict=True,
                          callbacks=[ResetStates()])

    # Independent computation: each stream in one pass through a stateless copy.
    inputs, targets = make_streams(ids, batch, bptt)
    rows_in = inputs.transpose(1, 0, 2).reshape(batch, -1)
    rows_out = targets.transpose(1, 0, 2).reshape(batch, -1)
    logits = np.asarray(model.stateless_copy()(rows_in), "float64")
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, rows_out[..., None], -1)[..., 0]
    mask = rows_out != 0
    assert mask.sum() == ids.size - 1
    assert logs["perplexity"] == pytest.approx(np.exp(nll[mask].mean()), rel=1e-5)


def test_reset_states_returns_to_zero_and_the_state_carries_between_batches():
    model = get_model("lstm", V, units=4, embedding_dim=3, num_layers=1, stateful=True)
    x = np.ones((2, 5), "int32")
    model.build((2, 5))
    first = np.asarray(model(x))
    second = np.asarray(model(x))
    assert not np.allclose(first, second)  # the state carried over
    model.reset_states()
    np.testing.assert_allclose(model(x), first, atol=1e-6)
    for state in model.rnn_layers[0].states:
        state.assign(np.zeros(state.shape, "float32"))
    np.testing.assert_allclose(model(x), first, atol=1e-6)
