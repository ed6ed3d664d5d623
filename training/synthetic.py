"""Long-range synthetic tasks that show vanishing gradients: the adding problem and copying.

* **Adding problem** (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015, section 4.1):
  inputs ``(T, 2)``: a random number in [0, 1) and a marker; exactly two steps are marked
  (one in each half); the target is the sum of the two marked numbers. Always answering 1
  gives mean squared error 1/6 (the sum of two U(0,1) has variance 1/6): a model must beat
  that to have carried information across up to ``T`` steps.
* **Copy task** (Hochreiter & Schmidhuber 1997; Arjovsky, Shah & Bengio 2016): ``S`` symbols
  from 1..8, ``T`` blanks (0), a delimiter (9), then ``S`` blanks; the target is blank
  everywhere except the last ``S`` steps, which must repeat the symbols. Outputting blanks
  and then guessing gives cross-entropy ``S ln 8 / (T + 2S)`` nats per step.

``python -m training.synthetic --task adding --length 100`` trains each of the zoo's cells
on a task and prints a table against the baseline.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np


def adding_problem(n, length, seed=0):
    """``n`` adding-problem sequences.

    Returns:
        ``(x, y)``: float32 ``(n, length, 2)`` and ``(n, 1)``.

    Raises:
        ValueError: ``length < 2`` or ``n < 1``.
    """
    if length < 2 or n < 1:
        raise ValueError(f"Need length >= 2 and n >= 1, got {length} and {n}.")
    rng = np.random.default_rng(seed)
    values = rng.random((n, length)).astype("float32")
    half = length // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    markers = np.zeros((n, length), "float32")
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values[np.arange(n), first] + values[np.arange(n), second])[:, None]
    return x, y.astype("float32")


def copy_task(n, delay, symbols=10, seed=0):
    """``n`` copy-task sequences of length ``delay + 2 * symbols``.

    Returns:
        ``(x, y)``: int32 ``(n, delay + 2*symbols)`` each; ids 0 blank, 1..8 symbols,
        9 delimiter.

    Raises:
        ValueError: ``delay < 0``, ``symbols < 1`` or ``n < 1``.
    """
    if delay < 0 or symbols < 1 or n < 1:
        raise ValueError(f"Need delay >= 0, symbols >= 1, n >= 1; got {delay}, {symbols}, {n}.")
    rng = np.random.default_rng(seed)
    length = delay + 2 * symbols
    data = rng.integers(1, 9, size=(n, symbols))
    x = np.zeros((n, length), "int32")
    y = np.zeros((n, length), "int32")
    x[:, :symbols] = data
    x[:, symbols + delay - 1] = 9
    y[:, -symbols:] = data
    return x, y


def baseline(task, length, symbols=10):
    """The trivial baseline: MSE 1/6 (adding), ``S ln 8 / (T + 2S)`` nats (copy)."""
    if task == "adding":
        return 1.0 / 6.0
    return symbols * math.log(8) / (length + 2 * symbols)


CELLS = {
    "tanh RNN": ("rnn", dict(activation="tanh")),
    "IRNN": ("rnn", dict(activation="relu", recurrent_initializer="identity")),
    "LSTM": ("lstm", {}),
    "GRU": ("gru", {}),
}


def build(task, cell, kwargs, units):
    """A sequence model from a zoo cell: adding -> ``RNN -> Dense(1)``; copy ->
    ``one-hot -> RNN(return_sequences) -> Dense(10) logits``."""
    import keras

    from zoo import GRUCell, LSTMCell, RNNCell

    cls = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}[cell]
    if task == "adding":
        inputs = keras.Input((None, 2))
        h = keras.layers.RNN(cls(units, **kwargs))(inputs)
        return keras.Model(inputs, keras.layers.Dense(1)(h))
    inputs = keras.Input((None,), dtype="int32")
    h = keras.layers.RNN(cls(units, **kwargs), return_sequences=True)(
        keras.ops.one_hot(inputs, 10))
    return keras.Model(inputs, keras.layers.Dense(10)(h))


def run(task, length, steps, units, batch, seed, learning_rate):
    """Train every cell of :data:`CELLS`; returns ``{name: (test_loss, seconds)}``."""
    import keras

    make = adding_problem if task == "adding" else copy_task
    x_train, y_train = make(steps * batch, length, seed=seed)
    x_test, y_test = make(1000, length, seed=seed + 1)
    results = {}
    for name, (cell, kwargs) in CELLS.items():
        keras.utils.set_random_seed(seed)
        model = build(task, cell, kwargs, units)
        loss = ("mse" if task == "adding"
                else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=1.0),
                      loss=loss)
        start = time.monotonic()
        model.fit(x_train, y_train, batch_size=batch, epochs=1, verbose=0)
        results[name] = (float(model.evaluate(x_test, y_test, verbose=0)),
                         time.monotonic() - start)
        print(f"{name:10s} test loss {results[name][0]:.4f}  ({results[name][1]:.0f} s)",
              flush=True)
    return results


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = argparse.ArgumentParser(prog="python -m training.synthetic", description=__doc__
                                .split("\n")[0], formatter_class=argparse
                                .ArgumentDefaultsHelpFormatter)
    p.add_argument("--task", choices=("adding", "copy"), default="adding")
    p.add_argument("--length", type=int, default=100,
                   help="sequence length T (adding) or delay T (copy)")
    p.add_argument("--steps", type=int, default=1500, help="training steps (one epoch)")
    p.add_argument("--units", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if min(args.length, args.steps, args.units, args.batch) < 1:
        p.error("--length, --steps, --units and --batch must be >= 1")
    results = run(args.task, args.length, args.steps, args.units, args.batch, args.seed,
                  args.learning_rate)
    base = baseline(args.task, args.length)
    unit = "MSE" if args.task == "adding" else "nats/step"
    print(f"\n{args.task}, T={args.length}, {args.steps} steps of batch {args.batch}, "
          f"{args.units} units; baseline {base:.4f} {unit}")
    print(f"| cell | test {unit} | / baseline | solved (< 10% of baseline) | train s |")
    print("|---|---:|---:|---|---:|")
    for name, (loss, seconds) in results.items():
        print(f"| {name} | {loss:.4f} | {loss / base:.3f} | "
              f"{'yes' if loss < 0.1 * base else 'no'} | {seconds:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
