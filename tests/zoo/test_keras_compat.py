"""The Keras internals of ``zoo._keras_compat`` still exist and behave as the zoo relies on.

If one of these fails after a Keras upgrade, read ``zoo/_keras_compat.py`` and the Keras
source it names before changing anything else."""

import inspect

import keras
import numpy as np

from zoo import LanguageModel, LSTMCell, RNNCell, get_model
from zoo._keras_compat import DropoutRNNCell, SkipSymbolicBuildWhenBuilt


def test_there_is_still_no_public_dropout_mix_in():
    # When Keras exports one, use it and drop the private import.
    assert not hasattr(keras.layers, "DropoutRNNCell")


def test_keras_own_cells_and_the_zoo_cells_share_the_mix_in():
    for cell in (keras.layers.SimpleRNNCell(2), keras.layers.LSTMCell(2), RNNCell(2),
                 LSTMCell(2)):
        assert isinstance(cell, DropoutRNNCell)


class _Cell(DropoutRNNCell, keras.layers.Layer):
    """A one-unit-per-feature cell that records how RNN drives the mix-in."""

    def __init__(self, units, dropout):
        super().__init__()
        self.units = self.state_size = self.output_size = units
        self.dropout, self.recurrent_dropout = dropout, dropout
        self.seed_generator = keras.random.SeedGenerator(3)
        self.log = []

    def get_dropout_mask(self, step_input):
        self.log.append(("get", tuple(step_input.shape)))
        return super().get_dropout_mask(step_input)

    def reset_dropout_mask(self):
        self.log.append(("reset",))
        super().reset_dropout_mask()

    def call(self, inputs, states, training=False):
        if training:
            inputs = inputs * self.get_dropout_mask(inputs)
        h = states[0] + inputs
        return h, [h]


def test_the_mask_is_cached_scaled_and_reset():
    cell = _Cell(1000, dropout=0.25)
    x = keras.ops.ones((2, 1000))
    first = keras.ops.convert_to_numpy(cell.get_dropout_mask(x))
    again = keras.ops.convert_to_numpy(cell.get_dropout_mask(x))
    assert first.shape == (2, 1000)
    np.testing.assert_array_equal(first, again)  # cached
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.75)}  # inverted dropout
    assert 0.15 < np.mean(first == 0) < 0.35
    recurrent = cell.get_recurrent_dropout_mask(x)
    assert recurrent is cell.get_recurrent_dropout_mask(x)
    cell.reset_dropout_mask()
    cell.reset_recurrent_dropout_mask()
    fresh = keras.ops.convert_to_numpy(cell.get_dropout_mask(x))
    assert not np.array_equal(first, fresh)  # a new draw from the seed generator
    assert cell.get_recurrent_dropout_mask(x) is not recurrent


def test_rnn_draws_the_masks_before_its_loop_and_resets_them_after():
    cell = _Cell(4, dropout=0.5)
    layer = keras.layers.RNN(cell, return_sequences=True)
    x = np.ones((3, 6, 4), "float32")
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    assert cell.log[0] == ("get", (3, 4))  # drawn from the first step before the loop
    assert cell.log[-1] == ("reset",)
    assert cell._dropout_mask is None
    # One mask for the whole sequence: h_t = t * (x * mask), so every step is a multiple of
    # the first.
    np.testing.assert_allclose(out, out[:, :1] * np.arange(1, 7)[None, :, None], rtol=1e-6)


def test_fit_and_evaluate_call_the_symbolic_build_hook():
    params = inspect.signature(keras.Model._maybe_symbolic_build).parameters
    assert list(params) == ["self", "iterator", "data_batch"]
    calls = []

    class Recorder(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(1)

        def call(self, x):
            return self.dense(x)

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            calls.append(iterator is not None)
            super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    class Skipping(SkipSymbolicBuildWhenBuilt, Recorder):
        pass

    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    model = Recorder()
    model.compile("sgd", "mse")
    model.fit(x, y, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert calls == [True, True]

    calls.clear()
    model = Skipping()
    model.compile("sgd", "mse")
    model.fit(x, y, verbose=0)  # not built yet: Keras's hook runs
    assert calls == [True]
    model.fit(x, y, verbose=0)  # built, optimizer built: skipped
    model.evaluate(x, y, verbose=0)
    assert calls == [True]


def test_the_language_model_uses_the_compat_override():
    assert issubclass(LanguageModel, SkipSymbolicBuildWhenBuilt)
    model = get_model("rnn", 12, embedding_dim=4, units=4, num_layers=1)
    model.compile(optimizer="sgd")
    model.build((None, 5))
    model.optimizer.build(model.trainable_variables)
    ids = np.random.default_rng(0).integers(2, 12, (4, 6)).astype("int32")
    history = model.fit(ids[:, :-1], ids[:, 1:], verbose=0, epochs=1)
    assert np.isfinite(history.history["loss"][0])


def test_no_other_module_reaches_into_keras_internals():
    import pathlib

    import zoo

    for path in pathlib.Path(zoo.__file__).parent.glob("*.py"):
        if path.name != "_keras_compat.py":
            text = path.read_text(encoding="utf-8")
            assert "keras.src" not in text and "_maybe_symbolic_build" not in text, path
