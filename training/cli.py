"""``nwp-train``: train a next-word language model with ``model.fit`` and save the run.

Example::

    nwp-train --corpus ptb --data-dir DIR --epochs 4 --output runs/ptb

The run folder gets ``model.keras``, ``vocab.txt``, ``text.json`` (what ``nwp-export``
needs), ``history.json`` (per-epoch loss, perplexity, pre-clip gradient norm) and
``metrics.json`` (valid and test perplexity, top-1/top-3 next-word accuracy and keystroke
savings on the test split at word level, tokens/s, wall time).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

from training.configs import CONFIGS
from training.corpora import CORPORA, DATA_DIR_ENV, CorpusError, load_corpus

# The preset names, without importing TensorFlow (keeps --help fast); checked against
# zoo.PRESETS by the tests.
PRESET_NAMES = ("rnn", "irnn", "lstm", "gru", "lstm-one-hot", "lstm-tied", "lstm-attention",
                "keyboard", "transformer")


def build_parser():
    p = argparse.ArgumentParser(
        prog="nwp-train",
        description="Train a next-word language model (BPTT train_step with explicit "
                    "global-norm clipping) and report valid and test perplexity.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", choices=sorted(CONFIGS), default=None,
                   help="a named configuration (e.g. ptb-small, Zaremba et al. 2014); other "
                        "flags override its values")
    p.add_argument("--corpus", choices=CORPORA, default="default",
                   help="'default' is the English text shipped with CPython (offline).")
    p.add_argument("--data-dir", default=None,
                   help=f"folder with ptb/, wikitext-2/, tinyshakespeare/ "
                        f"(default: ${DATA_DIR_ENV}, else ~/.cache/nwp-zoo/data)")
    p.add_argument("--no-download", action="store_true",
                   help="fail instead of downloading a missing corpus file")
    p.add_argument("--output", default="runs/default", help="run folder to write")
    p.add_argument("--model", default="lstm",
                   help="model preset: " + ", ".join(PRESET_NAMES))
    p.add_argument("--embedding-dim", type=int, default=None,
                   help="overrides the preset's (recurrent models)")
    p.add_argument("--units", type=int, default=None, help="overrides the preset's")
    p.add_argument("--num-layers", type=int, default=None, help="overrides the preset's")
    p.add_argument("--dropout", type=float, default=None, help="overrides the preset's")
    p.add_argument("--init-scale", type=float, default=None,
                   help="uniform init range for all weights (Zaremba small: 0.1)")
    p.add_argument("--output-bias-init", choices=("unigram", "zeros"), default="unigram",
                   help="start the output bias at the log unigram distribution of the training "
                        "text (the model starts at the unigram entropy; without it Adam with a "
                        "tied embedding can collapse the embeddings and stay there) or at 0")
    p.add_argument("--max-vocab", type=int, default=None,
                   help="keep the most frequent tokens only (raw-text corpora)")
    p.add_argument("--min-count", type=int, default=1)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bptt", type=int, default=35, help="time steps per training window")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--lr-decay", type=float, default=1.0,
                   help="multiply the learning rate by this each epoch after --decay-after")
    p.add_argument("--decay-after", type=int, default=0)
    p.add_argument("--clipnorm", type=float, default=5.0,
                   help="global-norm clip threshold (Pascanu et al. 2013), > 0")
    p.add_argument("--no-clip", action="store_true", help="train without any clipping")
    p.add_argument("--clipvalue", type=float, default=None,
                   help="clip every gradient element to [-v, v] instead of the global norm")
    p.add_argument("--loss-reduction", choices=("sum_over_time", "mean"),
                   default="sum_over_time")
    p.add_argument("--max-train-tokens", type=int, default=None,
                   help="train on the first N tokens only (quick runs)")
    p.add_argument("--time-budget-minutes", type=float, default=None,
                   help="stop training after this many minutes (the epoch in progress ends "
                        "early), then evaluate")
    p.add_argument("--carry-state", action=argparse.BooleanOptionalAction, default=None,
                   help="lay the text out as --batch-size contiguous streams and carry the "
                        "recurrent state from window to window (truncated BPTT); default: on "
                        "for recurrent models")
    p.add_argument("--fresh", action="store_true",
                   help="ignore and delete the backup of an interrupted run in --output/backup "
                        "instead of resuming from it")
    p.add_argument("--gradient-flow", action="store_true",
                   help="after every epoch, write <output>/gradient_flow.csv/.png: the norm "
                        "of dL_T/dh_k at every step k of a fixed validation batch (recurrent "
                        "models)")
    p.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation perplexity "
                        "and keep the best weights")
    p.add_argument("--strategy", choices=("default", "mirrored", "multi-worker"),
                   default="default",
                   help="tf.distribute strategy: mirrored = data parallel over all local GPUs; "
                        "multi-worker = MultiWorkerMirroredStrategy, cluster from $TF_CONFIG")
    p.add_argument("--keyboard-metrics", action=argparse.BooleanOptionalAction, default=True,
                   help="after training, add top-1/top-3 next-word accuracy and keystroke "
                        "savings on the test split to metrics.json (word-level corpora; "
                        "see nwp-evaluate)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--verbose", type=int, default=2, choices=(0, 1, 2),
                   help="Keras fit verbosity: 1 progress bar, 2 one line per epoch")
    return p


def check_args(args):
    """Reject bad flags before any data is read or model built (``SystemExit`` via argparse)."""
    problems = []
    for name in ("embedding_dim", "units", "num_layers", "epochs", "batch_size", "bptt"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1")
    if args.model not in PRESET_NAMES:
        problems.append(f"--model must be one of {', '.join(PRESET_NAMES)}")
    if args.dropout is not None and not 0 <= args.dropout < 1:
        problems.append("--dropout must be in [0, 1)")
    if not args.learning_rate > 0 or not math.isfinite(args.learning_rate):
        problems.append("--learning-rate must be a finite number > 0")
    if args.max_vocab is not None and args.max_vocab < 2:
        problems.append(f"--max-vocab must be >= 2 (<eos> and at least one word), got "
                        f"{args.max_vocab}")
    if args.min_count < 1:
        problems.append(f"--min-count must be >= 1, got {args.min_count}")
    if not (args.lr_decay > 0 and math.isfinite(args.lr_decay)):
        problems.append(f"--lr-decay must be a finite number > 0 (1: no decay), got "
                        f"{args.lr_decay}")
    if args.decay_after < 0:
        problems.append(f"--decay-after must be >= 0, got {args.decay_after}")
    if args.time_budget_minutes is not None and not (
            args.time_budget_minutes > 0 and math.isfinite(args.time_budget_minutes)):
        problems.append(f"--time-budget-minutes must be a finite number > 0, got "
                        f"{args.time_budget_minutes}")
    if not args.clipnorm > 0:
        problems.append(f"--clipnorm must be > 0 (got {args.clipnorm}); --no-clip turns "
                        "clipping off")
    if args.clipvalue is not None and not args.clipvalue > 0:
        problems.append("--clipvalue must be > 0")
    if args.early_stopping is not None and args.early_stopping < 1:
        problems.append("--early-stopping must be >= 1")
    if args.max_train_tokens is not None and args.max_train_tokens < 2:
        problems.append("--max-train-tokens must be >= 2")
    return problems


def make_strategy(name):
    """The ``tf.distribute`` strategy for ``--strategy``."""
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _physical_memory():
    """Bytes of RAM on this machine (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(args, vocab_size):
    """Raise ``ValueError`` before building anything when the flags ask for more memory than
    the machine has: the logits of one batch (``batch x bptt x vocabulary`` float32, about 4
    copies alive in a training step: logits, softmax, their gradients) or the weights (4
    copies: weights, gradients, 2 optimizer slots). A rough lower bound, from the flags."""
    memory = _physical_memory()
    if not memory:
        return
    units = args.units or 650
    width = args.embedding_dim or units
    layers = args.num_layers or 2
    logits = 4 * 4 * args.batch_size * args.bptt * vocab_size
    weights = 4 * 4 * (layers * 4 * units * (units + width) + vocab_size * (width + units))
    gib = 1 << 30
    for what, need, flags in (("the logits of one batch", logits, "--batch-size or --bptt"),
                              ("the weights and their optimizer state", weights,
                               "--units, --embedding-dim or --num-layers")):
        if need > 0.8 * memory:
            raise ValueError(f"These flags need about {need / gib:,.1f} GiB for {what} "
                             f"alone, more than this machine's {memory / gib:,.1f} GiB: lower "
                             f"{flags}.")


def write_calibration_text(lines, path, max_tokens=2000):
    """Write evenly spaced training lines (about ``max_tokens`` whitespace tokens) to ``path``:
    the representative text that ``nwp-export --litert --litert_quantization int8``
    calibrates on."""
    lines = [line for line in lines if line.strip()]
    head = lines[:1000]
    per_line = max(1.0, sum(len(line.split()) for line in head) / max(1, len(head)))
    count = max(1, min(len(lines), int(max_tokens / per_line)))
    stride = max(1, len(lines) // count)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines[::stride][:count]) + "\n")


def read_history(path):
    """``{metric: [value per epoch]}`` from the CSV that ``keras.callbacks.CSVLogger`` wrote
    (every epoch of the run, across resumes), or ``{}`` if it is missing or empty."""
    import csv

    if not os.path.exists(path):
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [k for k in (rows[0] if rows else {}) if k != "epoch"]

    def number(text):  # a multi-worker run logs shape-(1,) values, written as "[x]"
        return float(text.strip("[] ")) if text not in (None, "") else math.nan

    try:
        return {k: [number(row.get(k)) for row in rows] for k in keys}
    except ValueError:  # not the CSV this run writes: fall back to this process's History
        return {}


def train(args):
    """Run one training job from parsed flags; returns the metrics dict it saved."""
    import keras
    import numpy as np

    from training.callbacks import Progress, ResetStates
    from training.data import stream_dataset, window_dataset
    from zoo import PRESETS, NextWordPredictor, RecurrentLanguageModel, WordVectorizer, \
        get_model

    keras.utils.set_random_seed(args.seed)
    started = time.monotonic()
    strategy = make_strategy(args.strategy)
    corpus = load_corpus(args.corpus, args.data_dir, allow_download=not args.no_download)
    print(f"corpus: {corpus.description}", flush=True)
    vectorizer = WordVectorizer.fit(corpus.train, corpus.standardize,
                                    max_tokens=args.max_vocab, min_count=args.min_count,
                                    split=corpus.split)
    streams = {split: vectorizer.encode_lines(getattr(corpus, split))
               for split in ("train", "valid", "test")}
    if args.max_train_tokens:
        streams["train"] = streams["train"][: args.max_train_tokens]
    for split, ids in streams.items():
        if ids.size < 2:
            raise CorpusError(f"The {split} split has {ids.size} token(s); need at least 2.")
    print("tokens: " + ", ".join(f"{k} {v.size:,}" for k, v in streams.items())
          + f"; vocabulary {vectorizer.vocab_size:,} ids", flush=True)

    check_memory(args, vectorizer.vocab_size)
    recurrent = issubclass(PRESETS[args.model][0], RecurrentLanguageModel)
    carry = recurrent if args.carry_state is None else args.carry_state
    if carry and strategy.num_replicas_in_sync > 1:
        if args.carry_state:
            raise ValueError("--carry-state works on one device only (the streams would be "
                             "split across replicas); use --no-carry-state with --strategy.")
        carry = False
    if carry and not recurrent:
        raise ValueError(f"--carry-state needs a recurrent model; {args.model} has no state "
                         "to carry.")
    if carry:  # contiguous streams, state carried across windows, reset each epoch
        train_ds, valid_ds, test_ds = (stream_dataset(streams[s], args.batch_size, args.bptt)
                                       for s in ("train", "valid", "test"))
    else:  # independent windows, shuffled, each from a zero state
        train_ds = window_dataset(streams["train"], args.bptt, args.batch_size, shuffle=True,
                                  seed=args.seed)
        eval_batch = max(args.batch_size, 64)
        valid_ds = window_dataset(streams["valid"], args.bptt, eval_batch)
        test_ds = window_dataset(streams["test"], args.bptt, eval_batch)
    print(f"windows: bptt {args.bptt}, batch {args.batch_size}, "
          + ("state carried across windows" if carry else "independent shuffled windows"),
          flush=True)

    overrides = {k: getattr(args, k) for k in ("embedding_dim", "units", "num_layers",
                                                "dropout", "init_scale")
                 if getattr(args, k) is not None}
    if carry:
        overrides["stateful"] = True
    clipnorm = None if (args.clipvalue is not None or args.no_clip) else args.clipnorm
    clipvalue = None if args.no_clip else args.clipvalue
    with strategy.scope():
        model = get_model(args.model, vectorizer.vocab_size, clipnorm=clipnorm,
                          clipvalue=clipvalue, loss_reduction=args.loss_reduction,
                          **overrides)
        if args.optimizer == "adam":
            optimizer = keras.optimizers.Adam(args.learning_rate)
        else:
            optimizer = keras.optimizers.SGD(args.learning_rate)
        model.compile(optimizer=optimizer)
        model.build((args.batch_size if carry else None, args.bptt))
        model.optimizer.build(model.trainable_variables)  # fit then needs no symbolic build
        if args.output_bias_init == "unigram":
            model.init_output_bias(streams["train"])
    params = model.count_params()
    print(f"model: {args.model}, {params:,} parameters", flush=True)

    os.makedirs(args.output, exist_ok=True)
    backup_dir = os.path.join(args.output, "backup")
    if args.fresh:
        shutil.rmtree(backup_dir, ignore_errors=True)
    elif os.path.isdir(backup_dir):  # written by BackupAndRestore at each epoch end
        try:
            previous = WordVectorizer.load(args.output).vocabulary
        except FileNotFoundError:
            previous = None
        if previous is not None and previous != vectorizer.vocabulary:
            raise ValueError(
                f"The interrupted run in {args.output} has a vocabulary of {len(previous):,} "
                f"ids that differs from this corpus's ({vectorizer.vocab_size:,} ids): its "
                "checkpoint cannot continue on this text. Use another --output, or --fresh.")
        print(f"resuming the interrupted run from {backup_dir} (--fresh starts over)", flush=True)
    resuming = os.path.isdir(backup_dir)
    history_csv = os.path.join(args.output, "history.csv")
    vectorizer.save(args.output)  # before training: a resumed run checks it
    write_calibration_text(corpus.train, os.path.join(args.output, "calibration.txt"))
    progress = Progress(args.time_budget_minutes)
    callbacks = [
        keras.callbacks.BackupAndRestore(backup_dir), progress, ResetStates(),
        # one row per epoch, appended across resumes, so history.json covers every epoch
        keras.callbacks.CSVLogger(history_csv, append=resuming),
        keras.callbacks.ModelCheckpoint(
            os.path.join(args.output, "checkpoints", "epoch-{epoch:03d}.weights.h5"),
            save_weights_only=True),
        keras.callbacks.TensorBoard(os.path.join(args.output, "logs")),
    ]
    if args.gradient_flow:
        if not recurrent:
            raise ValueError(f"--gradient-flow needs a recurrent model; {args.model} has no "
                             "hidden state to probe.")
        from training.data import make_windows
        from training.diagnostics import GradientFlow

        probe_x, probe_y = make_windows(streams["valid"], args.bptt)
        callbacks.append(GradientFlow(probe_x[:8], probe_y[:8],
                                      os.path.join(args.output, "gradient_flow")))
    if args.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            "val_perplexity", patience=args.early_stopping, mode="min",
            restore_best_weights=True))
    if args.lr_decay != 1.0:
        def schedule(epoch, lr):
            return args.learning_rate * args.lr_decay ** max(0, epoch + 1 - args.decay_after)
        callbacks.append(keras.callbacks.LearningRateScheduler(schedule))
    callbacks.append(keras.callbacks.TerminateOnNaN())

    fit_start = time.monotonic()
    try:
        history = model.fit(train_ds, validation_data=valid_ds, epochs=args.epochs,
                            callbacks=callbacks, verbose=args.verbose, shuffle=False)
    except (ValueError, OSError) as err:
        if not resuming:
            raise
        raise ValueError(
            f"Could not resume from the backup in {backup_dir} ({err}). It was written by a "
            "run with other flags or cut off while being written: rerun with --fresh to "
            "start over.") from None
    fit_seconds = time.monotonic() - fit_start
    epochs = read_history(history_csv) or history.history  # every epoch, resumes included
    epochs_run = len(epochs.get("loss", []))

    results = {}
    for split, ds in (("valid", valid_ds), ("test", test_ds)):
        logs = model.evaluate(ds, verbose=0, return_dict=True, callbacks=[ResetStates()])
        results[f"{split}_perplexity"] = float(logs["perplexity"])
        results[f"{split}_loss_nats_per_token"] = float(np.log(logs["perplexity"]))
    if corpus.split == "character":
        for split in ("valid", "test"):
            results[f"{split}_bits_per_character"] = (results[f"{split}_loss_nats_per_token"]
                                                      / np.log(2))
    if not all(math.isfinite(v) for v in results.values()):
        raise FloatingPointError(
            f"Training diverged (valid perplexity {results['valid_perplexity']}); the model "
            f"was not saved (the weights of earlier epochs are in "
            f"{os.path.join(args.output, 'checkpoints')}). Lower --learning-rate or "
            "--clipnorm.")
    predictor = NextWordPredictor(vectorizer, model)
    predictor.save(args.output)
    if args.keyboard_metrics and corpus.split != "character":
        from training.evaluate import KEYBOARD_FIELDS, keyboard_report

        report = keyboard_report(model, vectorizer, streams["test"], bptt=args.bptt,
                                 batch_size=args.batch_size, carry_state=carry)
        results.update({k: report[k] for k in KEYBOARD_FIELDS})

    tokens_trained = progress.batches * args.batch_size * args.bptt  # whole windows
    metrics = {
        "corpus": args.corpus,
        "model": args.model,
        "parameters": params,
        "vocab_size": vectorizer.vocab_size,
        "epochs_run": epochs_run,
        "train_tokens_per_second": tokens_trained / fit_seconds if tokens_trained else None,
        "fit_seconds": fit_seconds,
        "wall_seconds": time.monotonic() - started,
        **results,
        "flags": vars(args),
    }
    with open(os.path.join(args.output, "history.json"), "w") as f:
        json.dump({k: [float(x) if math.isfinite(x) else None for x in v]
                   for k, v in epochs.items()}, f, indent=1)
    with open(os.path.join(args.output, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    print(f"valid loss {results['valid_loss_nats_per_token']:.4f} nats/token | "
          f"valid perplexity {results['valid_perplexity']:.2f} | "
          f"test perplexity {results['test_perplexity']:.2f} | "
          f"{metrics['train_tokens_per_second'] or 0:,.0f} train tokens/s | "
          f"wall {metrics['wall_seconds']:.0f} s | saved {args.output}", flush=True)
    if "top1_accuracy" in results:
        from training.evaluate import format_keyboard

        print(f"test next word: {format_keyboard(results)}", flush=True)
    return metrics


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    if known.config:  # the configuration's values become defaults that flags override
        parser.set_defaults(**CONFIGS[known.config])
    args = parser.parse_args(argv)
    problems = check_args(args)
    if problems:
        parser.error("; ".join(problems))
    try:
        train(args)
    except (CorpusError, FloatingPointError, ValueError, OSError) as err:
        print(f"nwp-train: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
