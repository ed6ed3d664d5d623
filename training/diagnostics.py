"""Gradient-flow diagnostics: how much the loss at the last step still "hears" step k.

For a batch of token windows of ``T`` steps, :func:`hidden_state_gradient_norms` runs the
model's one-step call and measures ``g_k = || dL_T / dh_k ||``, the norm of the gradient of
the cross-entropy at the last step ``T`` with respect to the top recurrent layer's hidden
state ``h_k`` (mean over the batch), for every ``k``. Through the recurrence alone,
``dL_T/dh_k = dL_T/dh_T * prod_{j=k+1..T} dh_j/dh_{j-1}``: for a tanh RNN each factor is
``diag(1 - h_j^2) W_hh`` and the product shrinks geometrically with the distance ``T - k``
when the largest singular value of ``W_hh`` is below 1 (the vanishing gradient; Bengio,
Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013, section 2). Gates (LSTM) and
attention over past states (a direct path from ``h_k`` to step ``T``) keep it larger.

``python -m training.diagnostics`` trains the tanh RNN, the IRNN, the LSTM and the LSTM with
attention briefly on the same data and writes the curves side by side as CSV and PNG.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

if __name__ == "__main__":  # the command: TensorFlow's C++ log quiet, set before its import
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf


def _top_hidden_index(model):
    """Index, in ``model.step``'s states, of the top recurrent layer's ``h``."""
    return (model.num_layers - 1) * model.states_per_layer


def hidden_state_gradient_norms(model, token_ids, targets):
    """``g_k = mean_b || dL_T / dh_k ||_2`` for ``k = 1..T``.

    Args:
        model: a ``zoo.RecurrentLanguageModel`` (with a one-step call).
        token_ids: int ``(batch, T)``.
        targets: int ``(batch, T)``; only the last column (the target of step ``T``) is used.

    Returns:
        float64 ``np.ndarray`` ``(T,)``: entry ``k - 1`` is ``g_k`` (nats per unit of ``h``).
        The last entry is the gradient at distance 0.

    Raises:
        ValueError: a model without recurrent layers, or inputs that are not ``(batch, T)``.
    """
    if not hasattr(model, "cell_type"):
        raise ValueError(f"{type(model).__name__} has no recurrent hidden state to probe.")
    token_ids = np.asarray(token_ids, np.int32)
    targets = np.asarray(targets, np.int32)
    if token_ids.ndim != 2 or token_ids.shape != targets.shape:
        raise ValueError(f"token_ids and targets must both be (batch, T), got "
                         f"{token_ids.shape} and {targets.shape}.")
    batch, steps = token_ids.shape
    index = _top_hidden_index(model)
    with tf.GradientTape() as tape:
        states = model.initial_state(batch)
        hidden = []
        for t in range(steps):
            logits, states = model.step(tf.constant(token_ids[:, t]), states)
            hidden.append(states[index])
        loss = keras.ops.mean(keras.ops.sparse_categorical_crossentropy(
            targets[:, -1], logits, from_logits=True))
    grads = tape.gradient(loss, hidden)
    return np.array([0.0 if g is None else float(tf.reduce_mean(tf.norm(g, axis=-1)))
                     for g in grads], np.float64)


class GradientFlow(keras.callbacks.Callback):
    """Keras callback: at the end of every ``every``-th epoch, measure
    :func:`hidden_state_gradient_norms` on a fixed batch and write ``<prefix>.csv`` (one
    row per epoch and step ``k``) and ``<prefix>.png`` (one curve per epoch).

    Args:
        token_ids, targets: int ``(batch, T)``, the fixed probe batch.
        prefix: output path without extension.
        every: epochs between measurements, >= 1.

    Raises:
        ValueError: ``every < 1``.
    """

    def __init__(self, token_ids, targets, prefix, every=1):
        super().__init__()
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}.")
        self.token_ids, self.targets, self.prefix, self.every = token_ids, targets, prefix, every
        self.curves = {}

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        model = (self.model.stateless_copy() if getattr(self.model, "stateful", False)
                 else self.model)
        self.curves[f"epoch {epoch + 1}"] = hidden_state_gradient_norms(
            model, self.token_ids, self.targets)
        os.makedirs(os.path.dirname(self.prefix) or ".", exist_ok=True)
        write_csv(self.prefix + ".csv", self.curves)
        plot(self.prefix + ".png", self.curves, "Gradient flow through time, by epoch")


MODELS = {
    "tanh RNN": ("rnn", {}),
    "IRNN": ("irnn", {}),
    "LSTM": ("lstm", {}),
    "LSTM + attention": ("lstm-attention", {}),
}


def write_csv(path, curves):
    """One row per (curve, k): ``model, k, distance, gradient_norm, relative``."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "k", "distance", "gradient_norm", "relative_to_distance_0"])
        for name, norms in curves.items():
            steps = len(norms)
            for k, g in enumerate(norms, start=1):
                writer.writerow([name, k, steps - k, f"{g:.6e}", f"{g / norms[-1]:.6e}"])


def plot(path, curves, title):
    """Log-scale plot of ``g_k / g_T`` against the distance ``T - k`` (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for name, norms in curves.items():
        distance = np.arange(len(norms))[::-1]
        ax.semilogy(distance, np.maximum(norms / norms[-1], 1e-30), label=name, linewidth=2)
    ax.set_xlabel("distance T - k (time steps back from the loss)")
    ax.set_ylabel("|| dL_T / dh_k ||  relative to k = T")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m training.diagnostics",
                                description="Gradient flow through time, model by model.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--corpus", default="ptb")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--steps", type=int, default=60, help="T, the window probed")
    p.add_argument("--train-steps", type=int, default=300,
                   help="Adam steps of training (bptt 35, batch 32) before probing")
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--probe-batch", type=int, default=16)
    p.add_argument("--output", default="docs/gradient_flow", help="writes OUTPUT.csv/.png")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    from training.callbacks import EverySeconds
    from training.corpora import CorpusError, load_corpus
    from training.data import make_windows, window_dataset
    from zoo import WordVectorizer, get_model

    try:
        corpus = load_corpus(args.corpus, args.data_dir)
    except CorpusError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    vec = WordVectorizer.fit(corpus.train, corpus.standardize, max_tokens=10_000)
    train = vec.encode_lines(corpus.train)
    probe_x, probe_y = make_windows(vec.encode_lines(corpus.valid), args.steps)
    probe_x, probe_y = probe_x[:args.probe_batch], probe_y[:args.probe_batch]
    curves = {}
    for i, (name, (preset, extra)) in enumerate(MODELS.items(), start=1):
        keras.utils.set_random_seed(args.seed)
        model = get_model(preset, vec.vocab_size, units=args.units, embedding_dim=args.units,
                          num_layers=1, **extra)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        print(f"[{i}/{len(MODELS)}] {name}: {args.train_steps} Adam steps, then the gradient "
              f"of the last of {args.steps} steps", flush=True)
        if args.train_steps:
            data = window_dataset(train, 35, 32, shuffle=True, seed=args.seed).repeat()
            model.fit(data, steps_per_epoch=args.train_steps, epochs=1, verbose=0,
                      callbacks=[EverySeconds(f"  {name}")])
        start = time.monotonic()
        curves[name] = hidden_state_gradient_norms(model, probe_x, probe_y)
        print(f"  {name}: probed in {time.monotonic() - start:.0f} s; g_T "
              f"{curves[name][-1]:.3e}, g_1/g_T {curves[name][0] / curves[name][-1]:.3e}",
              flush=True)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    write_csv(args.output + ".csv", curves)
    plot(args.output + ".png", curves,
         f"Gradient flow through time ({args.corpus}, 1 x {args.units} units, "
         f"after {args.train_steps} Adam steps)")
    print(f"wrote {args.output}.csv and {args.output}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
