"""The two Keras internals the zoo relies on, kept in one place (checked with Keras 3.15).

The zoo imports nothing else from ``keras.src``. These two have no public equivalent;
``tests/zoo/test_keras_compat.py`` fails when Keras changes either, or when a public way
appears.

1. :class:`DropoutRNNCell` (``keras/src/layers/rnn/dropout_rnn_cell.py``). ``keras.layers.RNN``
   draws a cell's dropout masks once per sequence, *before* its time loop, and clears them
   after (``RNN._maybe_config_dropout_masks`` and ``_maybe_reset_dropout_masks`` in
   ``keras/src/layers/rnn/rnn.py``), but only for cells that are instances of this mix-in:
   the check is ``isinstance(cell, DropoutRNNCell)`` and the class is not exported under
   ``keras.layers``. A custom cell that draws its own masks inside ``call`` would draw them
   inside the loop (a new mask at every step), so the zoo's cells inherit the mix-in, as
   Keras's ``SimpleRNNCell``, ``LSTMCell`` and ``GRUCell`` do. Relied on:
   ``get_dropout_mask(x)`` / ``get_recurrent_dropout_mask(h)`` return a mask of ``x``'s
   shape, 0 or ``1 / (1 - rate)``, drawn from ``self.seed_generator`` with ``self.dropout``
   / ``self.recurrent_dropout`` and cached until ``reset_dropout_mask()`` /
   ``reset_recurrent_dropout_mask()``.

2. :class:`SkipSymbolicBuildWhenBuilt`, an override of ``TensorFlowTrainer._maybe_symbolic_build``
   (``keras/src/backend/tensorflow/trainer.py``), which ``fit`` and ``evaluate`` call with
   ``iterator=`` before the first step. Under a distribution strategy it builds the model from
   a first batch *reduced across replicas* (``strategy.reduce("MEAN", ...)``), which fails for
   integer token ids under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585). There is
   no public switch; a model that is already built, with a built optimizer, has nothing left
   to build, so the override skips the call then.
"""

from __future__ import annotations

from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

__all__ = ["DropoutRNNCell", "SkipSymbolicBuildWhenBuilt"]


class SkipSymbolicBuildWhenBuilt:
    """Mix-in for a ``keras.Model`` subclass (put it before ``keras.Model`` in the bases):
    ``fit``/``evaluate`` skip Keras's symbolic build when the model is built and compiled
    with a built optimizer (build both before ``fit``: ``model.build(shape)``,
    ``model.optimizer.build(model.trainable_variables)``). Otherwise Keras's own
    ``_maybe_symbolic_build`` runs unchanged."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        optimizer = getattr(self, "optimizer", None)
        if self.built and optimizer is not None and optimizer.built:
            return
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)
