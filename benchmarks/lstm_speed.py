"""Training-step speed of the zoo's LSTM LM against the same model on keras.layers.LSTM.

Both models are the same ``zoo.RecurrentLanguageModel`` (same embedding, output layer,
``train_step``, loss and clipping); only the recurrent layers differ:
``zoo.cells.FusedRNN(zoo.LSTMCell)`` (its fused path) versus the built-in
``keras.layers.LSTM`` (``use_cudnn=False``). ``benchmarks/train_speed.py`` adds PyTorch,
the GRU and Elman cells and mixed precision. Shapes default to Penn Treebank "small" (Zaremba et
al. 2014): vocabulary 10k, 2 layers of 200, 20 steps, batch 20, fp32.

The two run side by side in one process, alternating timed rounds, so machine noise hits
both; the table gives the median tokens/s of each and their ratio. A step is forward +
backward + update (``train_on_batch``). Usage::

    python benchmarks/lstm_speed.py [--rounds 5] [--steps 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo import get_model  # noqa: E402


def build(kind, vocab, units, layers, bptt):
    keras.utils.set_random_seed(0)
    model = get_model("lstm", vocab, units=units, embedding_dim=units, num_layers=layers)
    if kind == "keras.layers.LSTM":
        model.rnn_layers = [keras.layers.LSTM(units, return_sequences=True, use_cudnn=False,
                                              name=f"builtin_lstm_{i}") for i in range(layers)]
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    model.build((None, bptt))
    return model


def time_steps(model, x, y, steps):
    start = time.perf_counter()
    for _ in range(steps):
        logs = model.train_on_batch(x, y, return_dict=True)
    float(logs["loss"])  # wait for the last step
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--units", type=int, default=200)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--bptt", type=int, default=20)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--steps", type=int, default=50, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--warmup", type=int, default=10)
    args = p.parse_args(argv)

    rng = np.random.default_rng(0)
    x = rng.integers(1, args.vocab, size=(args.batch, args.bptt)).astype("int32")
    y = rng.integers(1, args.vocab, size=(args.batch, args.bptt)).astype("int32")
    kinds = ("zoo.LSTMCell", "keras.layers.LSTM")
    models = {k: build(k, args.vocab, args.units, args.layers, args.bptt) for k in kinds}
    for model in models.values():
        time_steps(model, x, y, args.warmup)
    rates = {k: [] for k in kinds}
    tokens = args.steps * args.batch * args.bptt
    for _ in range(args.rounds):
        for kind in kinds:
            rates[kind].append(tokens / time_steps(models[kind], x, y, args.steps))

    print(f"# LSTM LM training steps, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, TF {tf.__version__}, Keras {keras.__version__}, "
          f"devices {[d.device_type for d in tf.config.list_logical_devices()]}")
    print(f"# vocab {args.vocab}, {args.layers}x{args.units}, bptt {args.bptt}, batch "
          f"{args.batch}, fp32; {args.rounds} alternating rounds of {args.steps} steps")
    print("| recurrent layer | median tokens/s | min | max |")
    print("|---|---:|---:|---:|")
    for kind in kinds:
        r = rates[kind]
        print(f"| {kind} | {statistics.median(r):,.0f} | {min(r):,.0f} | {max(r):,.0f} |")
    ratio = statistics.median(rates[kinds[0]]) / statistics.median(rates[kinds[1]])
    per_round = [a / b for a, b in zip(rates[kinds[0]], rates[kinds[1]])]
    print(f"\nzoo / built-in: {ratio:.2f}x (per round: "
          f"{', '.join(f'{r:.2f}' for r in per_round)})")


if __name__ == "__main__":
    main()
