"""Whole-training-step speed: the zoo's recurrent LMs against keras.layers and torch.nn.

One training step is the same for every contender: embedding lookup, two recurrent layers,
the output layer over all ``batch * bptt`` positions, the cross-entropy summed over time and
averaged over the batch (``loss_reduction="sum_over_time"``, Zaremba et al. 2014), the
gradient clipped to global norm 5, and one SGD update with learning rate 1. The contenders:

* ``zoo``: ``zoo.RecurrentLanguageModel`` (its ``train_step``, ``train_on_batch``), with the
  recurrent layers on the fused path (``zoo.cells.FusedRNN``);
* ``zoo plain loop`` (``--plain``): the same model with ``FusedRNN(fused=False)``, Keras's
  step-by-step loop over the cell, as before the fused path existed;
* ``keras.layers.LSTM`` / ``GRU`` / ``SimpleRNN``: the same zoo model with its recurrent
  layers replaced by the built-in layer (same embedding, head, loss, clipping and update);
* ``torch.nn.LSTM`` / ``GRU`` / ``RNN``: the same model written in PyTorch (as its
  ``word_language_model`` example: ``nn.Embedding``, the recurrent module, ``nn.Linear``;
  ``F.cross_entropy(reduction="sum") / batch``, ``clip_grad_norm_(5)``, ``optim.SGD(lr=1)``).

Shapes (``--shapes``): ``ptb-small`` (vocabulary 10k, 2 x 200, BPTT 20, batch 20, no
dropout) and ``ptb-5m`` (vocabulary 10k, 2 x 300, tied 300-d embeddings, dropout 0.4, BPTT
35, batch 20), as ``training/configs.py``. Every step starts from a zero state (no carried
state, for every contender). Random token ids; the same batches for everyone.

The contenders run in one process, alternating timed rounds, so machine noise hits all of
them; TensorFlow and PyTorch are each given the same thread count (``--threads``). Printed:
a markdown table per shape and cell (median tokens/s, min, max) and the per-round ratios,
with the machine's load (``uptime``) before and after. ``--precisions float32,bfloat16``
adds zoo rows under Keras's ``mixed_bfloat16`` / ``mixed_float16`` policies;
``bfloat16-logits`` also runs the output layer (float32 in the zoo) in bfloat16, to measure
what that would give.

Usage::

    pip install -e '.[bench]'        # PyTorch, for the torch.nn rows
    python benchmarks/train_speed.py [--quick] [--cells lstm,gru,rnn]
        [--shapes ptb-small,ptb-5m] [--rounds 3] [--steps 30] [--plain]
        [--precisions float32,bfloat16] [--no-torch] [--omp-wait-policy PASSIVE]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from training.configs import CONFIGS  # noqa: E402  (plain dicts, no TensorFlow import)

def _shape(config):
    """The benchmark's shape of a named training configuration (PTB: 10k words + <eos>,
    rounded to 10,000 ids)."""
    return dict(vocab=10_000, units=config["units"], layers=config["num_layers"],
                bptt=config["bptt"], batch=config["batch_size"],
                tied=config["model"] == "lstm-tied", dropout=config["dropout"])


SHAPES = {name: _shape(CONFIGS[name]) for name in ("ptb-small", "ptb-5m")}
PRECISIONS = ("float32", "bfloat16", "float16", "bfloat16-logits")
KERAS_LAYERS = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}
TORCH_MODULES = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "uptime unavailable"


def import_torch():
    """``torch``, or exit with what to install when the benchmark extra is missing."""
    try:
        import torch
        # Loaded lazily by torch.optim otherwise: after TensorFlow is in the process, its
        # import of triton crashes (two LLVMs), so it is loaded first, while nothing else is.
        import torch._dynamo  # noqa: F401
    except ImportError:
        sys.exit("PyTorch is not installed; it is a benchmark-only extra: run "
                 "pip install -e '.[bench]' (or pass --no-torch to leave the torch.nn rows "
                 "out).")
    return torch


# -- Keras contenders ---------------------------------------------------------------------
def build_keras(cell, shape, kind, precision="float32"):
    """A compiled zoo LM; ``kind`` picks its recurrent layers (see the module docstring)."""
    import keras

    from zoo import get_model

    keras.utils.set_random_seed(0)
    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16", "bfloat16-logits":
              "mixed_bfloat16", "float16": "mixed_float16"}[precision]
    keras.config.set_dtype_policy(policy)
    try:
        preset = "lstm-tied" if shape["tied"] else cell
        model = get_model(preset, shape["vocab"], cell=cell, units=shape["units"],
                          embedding_dim=shape["units"], num_layers=shape["layers"],
                          dropout=shape["dropout"], clipnorm=5.0,
                          loss_reduction="sum_over_time")
        if kind == "plain":
            for rnn in model.rnn_layers:
                rnn.fused = False
        elif kind == "builtin":
            layer = getattr(keras.layers, KERAS_LAYERS[cell])
            model.rnn_layers = [layer(shape["units"], return_sequences=True,
                                      name=f"builtin_{cell}_{i}")
                                for i in range(shape["layers"])]
        if precision == "bfloat16-logits":
            # What-if: the output layer's matmul in bfloat16 too (the zoo's own head
            # computes in float32); the loss still casts the logits to float32.
            if shape["tied"]:
                raise ValueError("bfloat16-logits is measured on untied shapes only")
            model.head = keras.layers.Dense(shape["vocab"], name="logits")
        optimizer = keras.optimizers.SGD(1.0)
        if precision == "float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer)
        model.build((None, shape["bptt"]))
    finally:
        keras.config.set_dtype_policy("float32")
    return model


def keras_runner(model, batches):
    """A function running ``n`` training steps and returning once the last one is done."""
    import tensorflow as tf

    batches = [(tf.constant(x), tf.constant(y)) for x, y in batches]

    def run(n):
        for i in range(n):
            x, y = batches[i % len(batches)]
            logs = model.train_on_batch(x, y, return_dict=True)
        float(logs["loss"])
    return run


# -- PyTorch contender --------------------------------------------------------------------
def torch_runner(torch, cell, shape, batches):
    """The same LM and step in PyTorch (word_language_model's layout)."""
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(0)
    units, vocab = shape["units"], shape["vocab"]

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Embedding(vocab, units)
            self.rnn = getattr(nn, TORCH_MODULES[cell])(units, units, shape["layers"],
                                                        batch_first=True,
                                                        dropout=shape["dropout"])
            self.drop = nn.Dropout(shape["dropout"])
            self.decoder = nn.Linear(units, vocab)
            if shape["tied"]:
                self.decoder.weight = self.encoder.weight

        def forward(self, x):
            h, _ = self.rnn(self.drop(self.encoder(x)))
            return self.decoder(self.drop(h))

    model = Model()
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    batches = [(torch.from_numpy(x).long(), torch.from_numpy(y).long()) for x, y in batches]

    def run(n):
        for i in range(n):
            x, y = batches[i % len(batches)]
            optimizer.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, vocab), y.reshape(-1),
                                   reduction="sum") / x.shape[0]
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
        float(loss.detach())
    return run


# -- the measurement ----------------------------------------------------------------------
def measure(runners, tokens_per_step, steps, rounds, warmup):
    """Alternating rounds; returns ``{name: [(tokens/s, tokens per CPU-second), ...]}``.

    Tokens per CPU-second divides by the CPU time of the whole process (every thread) in the
    round: on a machine shared with other jobs it varies less than the wall-clock rate."""
    for run in runners.values():
        run(warmup)
    rates = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            wall, cpu = time.perf_counter(), time.process_time()
            run(steps)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            rates[name].append((steps * tokens_per_step / wall,
                                steps * tokens_per_step / max(cpu, 1e-9)))
    return rates


def table(title, rates, reference):
    """A markdown table: wall-clock and per-CPU-second rates, per-round ratios."""
    lines = [f"\n### {title}", "",
             "| contender | median tokens/s | min | max | ratio to "
             f"{reference} per round | median ratio | tokens per CPU-s | CPU-s ratio |",
             "|---|---:|---:|---:|---|---:|---:|---:|"]
    ref_wall = [w for w, _ in rates[reference]]
    ref_cpu = statistics.median(c for _, c in rates[reference])
    for name, r in rates.items():
        wall = [w for w, _ in r]
        cpu = statistics.median(c for _, c in r)
        ratios = [a / b for a, b in zip(wall, ref_wall)]
        lines.append(f"| {name} | {statistics.median(wall):,.0f} | {min(wall):,.0f} | "
                     f"{max(wall):,.0f} | {', '.join(f'{q:.2f}' for q in ratios)} | "
                     f"{statistics.median(ratios):.2f} | {cpu:,.0f} | {cpu / ref_cpu:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", default="lstm,gru,rnn", help="comma list of lstm, gru, rnn")
    p.add_argument("--shapes", default="ptb-small,ptb-5m",
                   help=f"comma list of {', '.join(SHAPES)}")
    p.add_argument("--precisions", default="float32",
                   help="comma list of float32, bfloat16, float16 (Keras's mixed_* "
                        "policies) and bfloat16-logits (mixed_bfloat16 with the output layer "
                        "in bfloat16 too, untied shapes only): zoo rows; put float32 first")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=30, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2,
                   help="intra-op threads for TensorFlow and PyTorch alike")
    p.add_argument("--omp-wait-policy", default="PASSIVE", choices=("PASSIVE", "ACTIVE", "unset"),
                   help="OpenMP wait policy of PyTorch's threads (OMP_WAIT_POLICY). PASSIVE "
                        "(default): idle threads sleep; ACTIVE spins, which on a machine "
                        "shared with other jobs made torch.nn.LSTM 5x slower and, in this "
                        "one process, takes the cores from TensorFlow's rounds; unset: "
                        "the OpenMP runtime's own default (spin briefly, then sleep)")
    p.add_argument("--plain", action="store_true",
                   help="add the zoo model on Keras's step-by-step loop (no fused path)")
    p.add_argument("--no-torch", action="store_true", help="leave the torch.nn rows out")
    p.add_argument("--no-builtin", action="store_true",
                   help="leave the keras.layers rows out")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 2 rounds of 5 steps, 2 warm-up steps")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 2, 5, 2
    cells = [c for c in args.cells.split(",") if c]
    shapes = [s for s in args.shapes.split(",") if s]
    precisions = [q for q in args.precisions.split(",") if q]
    for label, values, known in (("cell", cells, KERAS_LAYERS), ("shape", shapes, SHAPES),
                                 ("precision", precisions,
                                  PRECISIONS)):
        bad = [v for v in values if v not in known]
        if bad:
            p.error(f"unknown {label} {bad}; choose from {', '.join(known)}")

    if args.omp_wait_policy == "unset":
        os.environ.pop("OMP_WAIT_POLICY", None)
    else:
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy  # read when torch loads OpenMP
    torch = None if args.no_torch else import_torch()
    import keras
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)

    print(f"# {' '.join(['python', 'benchmarks/train_speed.py'] + sys.argv[1:])}")
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs; TensorFlow {tf.__version__} "
          f"(intra-op {args.threads}, inter-op {args.threads}), Keras {keras.__version__}"
          + ("" if torch is None else f", PyTorch {torch.__version__} "
             f"(set_num_threads({args.threads}), OMP_WAIT_POLICY={args.omp_wait_policy})"))
    print(f"# {args.rounds} alternating rounds of {args.steps} steps after {args.warmup} "
          "warm-up steps; SGD lr 1, global-norm clip 5, loss summed over time / batch")
    print(f"# load before: {_uptime()}", flush=True)
    rng = np.random.default_rng(0)
    for shape_name in shapes:
        shape = SHAPES[shape_name]
        batches = [(rng.integers(1, shape["vocab"], (shape["batch"], shape["bptt"]),
                                 dtype=np.int64).astype("int32"),
                    rng.integers(1, shape["vocab"], (shape["batch"], shape["bptt"]),
                                 dtype=np.int64).astype("int32")) for _ in range(4)]
        for cell in cells:
            if shape["tied"] and cell != "lstm":
                continue  # ptb-5m is an LSTM configuration
            runners = {}
            for precision in precisions:
                if precision == "bfloat16-logits" and shape["tied"]:
                    continue
                suffix = "" if precision == "float32" else f" {precision}"
                runners[f"zoo {cell}{suffix}"] = keras_runner(
                    build_keras(cell, shape, "fused", precision), batches)
            if args.plain:
                runners[f"zoo {cell} plain loop"] = keras_runner(
                    build_keras(cell, shape, "plain"), batches)
            if not args.no_builtin:
                runners[f"keras.layers.{KERAS_LAYERS[cell]}"] = keras_runner(
                    build_keras(cell, shape, "builtin"), batches)
            if torch is not None:
                runners[f"torch.nn.{TORCH_MODULES[cell]}"] = torch_runner(torch, cell, shape,
                                                                         batches)
            reference = (f"torch.nn.{TORCH_MODULES[cell]}" if torch is not None
                         else next(iter(runners)))
            rates = measure(runners, shape["batch"] * shape["bptt"], args.steps, args.rounds,
                            args.warmup)
            dims = (f"vocab {shape['vocab']:,}, {shape['layers']} x {shape['units']}"
                    f"{' tied' if shape['tied'] else ''}, dropout {shape['dropout']}, "
                    f"BPTT {shape['bptt']}, batch {shape['batch']}")
            print(table(f"{shape_name} {cell}: {dims}", rates, reference), flush=True)
    print(f"\n# load after: {_uptime()}")


if __name__ == "__main__":
    main()
