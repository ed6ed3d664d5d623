"""``nwp-evaluate``: keyboard metrics of a trained run on its corpus's test split.

Example::

    nwp-evaluate --run runs/ptb

Runs the run's model over the test text and reports, next to perplexity per token, the
per-word perplexity and bits per character (comparable across tokenizers:
:func:`comparable_metrics`), the top-1 and top-3 next-word accuracy (for a subword front end:
of the next *piece*, and no keystroke savings) and the keystroke savings of a 3-word suggestion strip (next-word
and with prefix completion); the definitions are in :class:`zoo.keyboard_metrics.
KeyboardMetrics` and ``docs/results.md``. The numbers are printed and written to
``<run>/keyboard_metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from training.corpora import CORPORA, CorpusError, load_corpus

KEYBOARD_FIELDS = ("top1_accuracy", "top3_accuracy", "ksr_next_word", "ksr_prefix")


def comparable_metrics(nats_per_token, targets, lines):
    """Per-word perplexity and bits per character of a token-level loss, so models with
    different tokenizers (word, char, WordPiece, SentencePiece) compare on the same text.

    The total loss is ``nats_per_token * targets`` (nats over the split's predicted tokens,
    ``<eos>`` included; the stream's first token is not predicted). Words are the split's
    whitespace words plus one end of line per line, and characters its characters with white
    space collapsed plus one per line (:func:`zoo.front_ends.count_words`,
    :func:`~zoo.front_ends.count_characters`), whatever the tokenizer.

    Args:
        nats_per_token: float, mean cross-entropy in nats per predicted token.
        targets: int, number of predicted tokens.
        lines: list of ``str``, the split's lines.

    Returns:
        dict: ``per_word_perplexity`` = ``exp(total nats / words)``, ``bits_per_character``
        = ``total nats / ln 2 / characters``, ``words``, ``characters``, ``total_nats``.
    """
    import math

    from zoo.front_ends import count_characters, count_words

    words, characters = count_words(lines), count_characters(lines)
    if words < 1 or characters < 1:
        raise ValueError("No words in the split: nothing to normalise the loss by.")
    total = float(nats_per_token) * int(targets)
    return {"per_word_perplexity": math.exp(total / words),
            "bits_per_character": total / math.log(2) / characters,
            "words": words, "characters": characters, "total_nats": total}


def _progress(done, total, started, out):
    print(f"keyboard metrics: {done:,}/{total:,} tokens ({100 * done / max(total, 1):.0f}%), "
          f"{time.monotonic() - started:.0f} s", file=out, flush=True)


def _copy(model, stateful=None, batch_size=None):
    """The same model and weights, built outside any distribution strategy; ``stateful``
    (recurrent models) True or False, or None to keep the model's."""
    if not model.built:  # an untrained model gets its initial weights now
        model.build(((batch_size or 1) if getattr(model, "stateful", False) else None, 1))
    config = model.get_config()
    if stateful is not None:
        config["stateful"] = stateful
    copy = type(model).from_config(config)
    copy.build((batch_size if config.get("stateful") else None, 1))
    copy.set_weights(model.get_weights())
    return copy


def _overlapping_windows(ids, bptt, context, batch_size):
    """Yield ``(inputs, targets)`` batches, int32 ``(batch_size, context + bptt)``: window
    ``i`` predicts the targets of input positions ``s = i*bptt .. s+bptt-1`` from the inputs
    ``ids[c : s+bptt]``, ``c = max(0, s - context)``, right-padded; the targets outside the
    predicted part are 0 (masked), as are the rows past the last window."""
    import numpy as np

    x, y = ids[:-1], ids[1:]
    width = context + bptt
    starts = list(range(0, x.size, bptt))
    for first in range(0, len(starts), batch_size):
        inputs = np.zeros((batch_size, width), np.int32)
        targets = np.zeros((batch_size, width), np.int32)
        for row, s in enumerate(starts[first:first + batch_size]):
            c, e = max(0, s - context), min(s + bptt, x.size)
            inputs[row, :e - c] = x[c:e]
            targets[row, s - c:e - c] = y[s:e]
        yield inputs, targets


def keyboard_report(model, vectorizer, test_ids, bptt=35, batch_size=32, carry_state=None,
                    progress_seconds=5.0, out=None):
    """Keyboard metrics of a language model over a token stream.

    Args:
        model: a :class:`zoo.LanguageModel`; ``model(token_ids)`` gives logits ``(batch,
            time, vocab_size)``. A copy with the same weights runs (built outside any
            distribution strategy; stateful to carry state); the model itself is only built,
            if it was not yet.
        vectorizer: the run's :class:`zoo.WordVectorizer` (vocabulary, ``eos_id``,
            ``unk_id``, ``split``).
        test_ids: int array ``(tokens,)``, the stream from ``vectorizer.encode_lines(lines)``
            (``<eos>`` after every line); at least 2 tokens. Every token after the first is
            a target exactly once; a target id 0 (padding) is skipped, as in the loss.
        bptt: window length in time steps.
        batch_size: windows per model call (with carried state: the number of streams).
        carry_state: True: lay the text out as ``batch_size`` contiguous streams and carry
            the recurrent state from window to window (as ``nwp-train`` evaluates a
            ``--carry-state`` run, so the perplexity equals its test perplexity); False:
            overlapping windows from a fresh state, every target predicted with at least
            ``bptt`` previous tokens of context (``min(bptt, max_length - bptt)`` for a
            Transformer with ``max_length``; fewer at the start of the text). None (default):
            carry for recurrent models (those with a ``stateless_copy``), else overlap.
        progress_seconds: print a progress line to ``out`` at least this often.
        out: text stream for progress lines (default ``sys.stderr``).

    Returns:
        dict: :meth:`zoo.keyboard_metrics.KeyboardMetrics.result` (``perplexity``,
        ``top1_accuracy``, ``top3_accuracy``, ``ksr_next_word``, ``ksr_prefix``, the counts),
        with special ids ``{0, 1, eos_id, unk_id}`` and a 3-word strip, plus ``context`` (how
        windows were read) and ``seconds``. For a character-level vectorizer
        (``split == "character"``) the keystroke fields are None.

    Raises:
        ValueError: ``test_ids`` not 1-D or too short for one window; ``bptt`` or
            ``batch_size`` < 1; vocabulary sizes of model and vectorizer differ;
            ``carry_state=True`` for a model without recurrent state.
    """
    import numpy as np
    import tensorflow as tf

    from training.data import make_streams
    from zoo.keyboard_metrics import KeyboardMetrics
    from zoo.text import OOV_ID, PAD_ID

    out = sys.stderr if out is None else out
    ids = np.asarray(test_ids, np.int32)
    if ids.ndim != 1 or ids.size < 2:
        raise ValueError(f"test_ids must be a 1-D stream of at least 2 tokens, got shape "
                         f"{ids.shape}.")
    if bptt < 1 or batch_size < 1:
        raise ValueError(f"bptt and batch_size must be >= 1, got {bptt} and {batch_size}.")
    if model.vocab_size != vectorizer.vocab_size:
        raise ValueError(f"The model predicts over {model.vocab_size} ids but the vocabulary "
                         f"has {vectorizer.vocab_size}: they come from different runs.")
    recurrent = hasattr(model, "stateless_copy")
    carry = recurrent if carry_state is None else bool(carry_state)
    if carry and not recurrent:
        raise ValueError(f"carry_state=True needs a recurrent model; {type(model).__name__} "
                         "has no state to carry.")
    special = {PAD_ID, OOV_ID, vectorizer.eos_id, vectorizer.unk_id}
    metrics = KeyboardMetrics(vectorizer.vocabulary, special, k=3,
                              keystrokes=vectorizer.split == "whitespace")
    if carry:
        runner = _copy(model, stateful=True, batch_size=batch_size)
        batches = zip(*make_streams(ids, batch_size, bptt))
        context = f"{batch_size} contiguous streams, windows of {bptt}, state carried"
    else:
        runner = _copy(model, stateful=False if recurrent else None)
        max_length = getattr(runner, "max_length", None)
        step, before = bptt, bptt
        if max_length is not None:  # a window must fit in the position embeddings
            step = min(bptt, max_length)
            before = min(bptt, max_length - step)
        batches = _overlapping_windows(ids, step, before, batch_size)
        context = (f"overlapping windows: {step} predicted positions after {before} tokens "
                   "of context (fewer at the start), fresh state")

    @tf.function
    def next_token_probs(x):
        return tf.nn.softmax(tf.cast(runner(x, training=False), tf.float32), axis=-1)

    total = int((ids[1:] != PAD_ID).sum())
    started = last = time.monotonic()
    done = 0
    for inputs, targets in batches:
        probs = next_token_probs(tf.constant(inputs)).numpy().reshape(-1, metrics.vocab_size)
        targets = targets.reshape(-1)
        keep = targets != PAD_ID
        metrics.update(probs[keep], targets[keep])
        done += int(keep.sum())
        if time.monotonic() - last >= progress_seconds:
            _progress(done, total, started, out)
            last = time.monotonic()
    _progress(done, total, started, out)
    return {**metrics.result(), "context": context,
            "seconds": time.monotonic() - started}


def build_parser():
    p = argparse.ArgumentParser(
        prog="nwp-evaluate",
        description="Keyboard metrics of a training run on its corpus's test split: "
                    "perplexity, top-1 and top-3 next-word accuracy, keystroke savings of a "
                    "3-word suggestion strip (next word, and with prefix completion). "
                    "Writes <run>/keyboard_metrics.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--run", required=True, help="run folder written by nwp-train")
    p.add_argument("--corpus", choices=CORPORA, default=None,
                   help="corpus whose test split to read (default: the run's, from "
                        "metrics.json)")
    p.add_argument("--data-dir", default=None,
                   help="corpus folder (default: the run's --data-dir, else as nwp-train)")
    p.add_argument("--no-download", action="store_true",
                   help="fail instead of downloading a missing corpus file")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="evaluate the first N tokens of the test stream only")
    p.add_argument("--bptt", type=int, default=None,
                   help="window length (default: the run's, else 35)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="windows per call (default: the run's, else 32)")
    return p


def evaluate_run(args, out=None):
    """Evaluate the run named by parsed flags; writes and returns the report dict."""
    import math

    import numpy as np

    from zoo import NextWordPredictor

    out = sys.stdout if out is None else out
    if not os.path.isdir(args.run):
        raise FileNotFoundError(f"{args.run} is not a folder: give the run folder nwp-train "
                                "--output wrote.")
    recorded = {}
    metrics_path = os.path.join(args.run, "metrics.json")
    if os.path.exists(metrics_path):
        with open(metrics_path) as f:
            recorded = json.load(f)
    flags = recorded.get("flags", {})
    corpus_name = args.corpus or recorded.get("corpus")
    if corpus_name is None:
        raise ValueError(f"{metrics_path} is missing and gives no corpus: pass --corpus.")
    data_dir = args.data_dir if args.data_dir is not None else flags.get("data_dir")
    bptt = args.bptt or flags.get("bptt") or 35
    batch_size = args.batch_size or flags.get("batch_size") or 32
    carry = flags.get("carry_state")  # None: carried for recurrent models
    predictor = NextWordPredictor.load(args.run)
    corpus = load_corpus(corpus_name, data_dir,
                         allow_download=not (args.no_download or flags.get("no_download")))
    if predictor.front_end.kind == "word" and corpus.split != predictor.vectorizer.split:
        raise ValueError(f"The corpus {corpus_name!r} is split into {corpus.split} tokens but "
                         f"the run's vocabulary into {predictor.vectorizer.split} tokens.")
    ids = predictor.vectorizer.encode_lines(corpus.test)
    if args.max_tokens:
        ids = ids[:args.max_tokens]
    print(f"{args.run}: {corpus_name} test split, {ids.size:,} tokens, vocabulary "
          f"{predictor.vectorizer.vocab_size:,} ids", file=out, flush=True)
    report = keyboard_report(predictor.model, predictor.vectorizer, ids, bptt=bptt,
                             batch_size=batch_size, carry_state=carry)
    lines = corpus.test
    if args.max_tokens:  # the lines the evaluated tokens cover
        eos = np.flatnonzero(ids == predictor.front_end.eos_id)
        lines = lines[:max(1, int(eos.size))]
    comparable = comparable_metrics(math.log(report["perplexity"]), report["tokens"], lines)
    report = {"corpus": corpus_name, "split": "test", "max_tokens": args.max_tokens,
              "bptt": bptt, "batch_size": batch_size, "tokenizer": predictor.front_end.kind,
              **report, **comparable}
    with open(os.path.join(args.run, "keyboard_metrics.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(format_report(report), file=out, flush=True)
    return report


def format_keyboard(report):
    """``top-1 ..% | top-3 ..%`` and, at word level, ``| KSR next word ..% | KSR prefix ..%``
    from the :data:`KEYBOARD_FIELDS` of a report."""
    line = (f"top-1 {100 * report['top1_accuracy']:.2f}% | "
            f"top-3 {100 * report['top3_accuracy']:.2f}%")
    if report.get("ksr_next_word") is not None:
        line += (f" | KSR next word {100 * report['ksr_next_word']:.2f}% | "
                 f"KSR prefix {100 * report['ksr_prefix']:.2f}%")
    return line


def format_report(report):
    """One line: perplexity, accuracies, keystroke savings (word level), counts."""
    words = (f", {report['typed_words']:,} typed words" if report.get("typed_words") is not None
             else "")
    comparable = (f" | per-word perplexity {report['per_word_perplexity']:.2f} | "
                  f"{report['bits_per_character']:.3f} bits/char"
                  if report.get("per_word_perplexity") is not None else "")
    unit = f" per {report['tokenizer']} token" if report.get("tokenizer") else ""
    return (f"perplexity {report['perplexity']:.2f}{unit}{comparable} | "
            f"{format_keyboard(report)} | "
            f"{report['tokens']:,} tokens{words}")


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("max_tokens", "bptt", "batch_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    try:
        evaluate_run(args)
    except (CorpusError, ValueError, OSError) as err:
        print(f"nwp-evaluate: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
