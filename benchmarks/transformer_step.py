"""Time per new token of the Transformer's cached one-step call, early and late in a text.

With a key/value cache a decoding step projects only the new position (``O(d^2 + t d)`` at
position ``t``); re-projecting every cached position would cost ``O(t d^2)`` and grow with
``t``. This times ``TransformerLanguageModel.step`` (in a ``tf.function``, as the exported
``generate`` runs it) at position 10 and at position 200 of a 256-position model, in
alternating rounds, and prints the ratio (issue 12's bound: within 1.5x). Usage::

    python benchmarks/transformer_step.py [--vocab 10000] [--rounds 5] [--steps 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo import get_model  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=200, help="timed steps per position and round")
    args = p.parse_args(argv)
    model = get_model("transformer", args.vocab)  # 2 blocks, 128 wide, 4 heads, 256 positions
    model.build((None, 1))
    step = tf.function(model.step, reduce_retracing=True)
    token = tf.constant([3], tf.int32)

    def states_at(position):  # feed `position` tokens, so the next step is at that position
        states = model.initial_state(1)
        for _ in range(position):
            _, states = step(token, states)
        return states

    prepared = {position: states_at(position) for position in (10, 200)}
    for states in prepared.values():  # trace each cache length once before timing
        step(token, states)
    medians = {10: [], 200: []}
    for _ in range(args.rounds):
        for position, states in prepared.items():
            times = []
            for _ in range(args.steps):
                start = time.perf_counter()
                logits, _ = step(token, states)
                logits.numpy()
                times.append((time.perf_counter() - start) * 1000)
            medians[position].append(statistics.median(times))
    early, late = statistics.median(medians[10]), statistics.median(medians[200])
    print(f"# transformer preset, vocabulary {args.vocab:,}, {model.count_params():,} parameters;"
          f" tf.function step at batch 1; {args.rounds} alternating rounds x {args.steps} steps")
    print("| position | median ms per step | per round |")
    print("|---:|---:|---|")
    for position in (10, 200):
        rounds = ", ".join(f"{m:.3f}" for m in medians[position])
        print(f"| {position} | {statistics.median(medians[position]):.3f} | {rounds} |")
    print(f"position 200 / position 10: {late / early:.2f}x")


if __name__ == "__main__":
    np.random.seed(0)
    main()
