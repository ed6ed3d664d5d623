"""Time per prompt of the next-word beam over subword pieces, against one word-level top-k.

A subword model needs one model step per piece and beam to reach a word boundary
(``max_pieces`` steps of ``beam_width`` rows) where a word model needs none after the prompt.
This builds an untrained LSTM language model over a synthetic vocabulary of ``--vocab``
pieces (a quarter of them word-start pieces, SentencePiece style) and times, in a
``tf.function`` as the SavedModel runs them, :meth:`zoo.WordBeamSearch.top_k` and
:meth:`~zoo.WordBeamSearch.complete` against a word model's
:meth:`zoo.NextWordPredictor.top_k` with the same network, for batches of prompts of 10
words. Usage::

    python benchmarks/word_search.py [--vocab 8000] [--units 200] [--beam 8] [--pieces 8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from zoo import NextWordPredictor, WordBeamSearch, WordVectorizer, get_model  # noqa: E402

MARK = "\u2581"


class SyntheticPieces:
    """Pieces ``<pad> <unk> <eos>`` then ``▁w0 ▁w1 ...`` (word starts) and ``p0 p1 ...``;
    a prompt word ``w`` is the piece ``▁w`` (or ``<unk>``)."""

    kind = "sentencepiece"
    pad_id, unk_id, eos_id = 0, 1, 2

    def __init__(self, vocab):
        starts = vocab // 4
        self.pieces = (["<pad>", "<unk>", "<eos>"] + [f"{MARK}w{i}" for i in range(starts)]
                       + [f"p{i}" for i in range(vocab - 3 - starts)])
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(self.pieces), tf.range(vocab, dtype=tf.int64)), self.unk_id)

    def word_start_mask(self):
        return np.array([p.startswith(MARK) or i == self.eos_id
                         for i, p in enumerate(self.pieces)])

    def piece_text(self, i):
        return self.pieces[i].replace(MARK, "")

    def encode(self, text):
        return tf.cast(self.table.lookup(tf.strings.join([MARK, tf.strings.split(text)])),
                       tf.int32)


def timed(fn, text, rounds):
    fn(text)  # trace
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--vocab", type=int, default=8000)
    p.add_argument("--units", type=int, default=200)
    p.add_argument("--beam", type=int, default=8)
    p.add_argument("--pieces", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    args = p.parse_args(argv)
    front_end = SyntheticPieces(args.vocab)
    model = get_model("lstm", args.vocab, units=args.units, embedding_dim=args.units)
    model.build((None, 1))
    search = WordBeamSearch(front_end, model, args.beam, args.pieces)
    words = WordVectorizer(["<eos>"] + [f"w{i}" for i in range(args.vocab - 3)])
    predictor = NextWordPredictor(words, model)
    spec = [tf.TensorSpec([None], tf.string)]
    runs = {
        "word model top_k": tf.function(lambda t: predictor.top_k(t, 5), input_signature=spec),
        "subword beam top_k": tf.function(lambda t: search.top_k(t, 5), input_signature=spec),
        "subword beam complete": tf.function(lambda t: search.complete(t, 5),
                                             input_signature=spec),
    }
    print(f"LSTM 2x{args.units}, {args.vocab} pieces, beam {args.beam}, at most "
          f"{args.pieces} pieces a word; median of {args.rounds} runs, prompts of 10 words")
    for batch in args.batch:
        text = tf.constant([" ".join(f"w{(7 * r + i) % 50}" for i in range(9)) + " w1"
                            for r in range(batch)])
        for name, fn in runs.items():
            seconds = timed(fn, text, args.rounds)
            print(f"batch {batch:3d}  {name:22s} {1000 * seconds:8.1f} ms  "
                  f"({1000 * seconds / batch:.1f} ms a prompt)")


if __name__ == "__main__":
    main()
