"""``nwp-train``: train a next-word language model with ``model.fit`` and save the run.

Example::

    nwp-train --corpus ptb --data-dir DIR --epochs 4 --output runs/ptb

The run folder gets ``model.keras`` and the text front end (``front_end.json`` and its files;
``--tokenizer word``, the default, also ``vocab.txt`` and ``text.json``: what ``nwp-export``,
``nwp-evaluate`` and ``nwp-serve`` need), ``history.json`` (per-epoch loss, perplexity,
pre-clip gradient norm) and ``metrics.json`` (valid and test perplexity per token, per-word
perplexity and bits per character (``training.evaluate.comparable_metrics``), top-1/top-3
next-word accuracy and keystroke savings on the test split for word-level runs, tokens/s,
wall time).
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

# The front-end kinds (zoo.front_ends.KINDS), without importing TensorFlow (keeps --help
# fast); a test keeps the two equal.
TOKENIZER_KINDS = ("word", "char", "wordpiece", "sentencepiece")

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
                   help="a model preset, a name in zoo.PRESETS (e.g. lstm, transformer); an "
                        "unknown name is refused with the list")
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
                   help="keep the most frequent tokens only (raw-text corpora; word "
                        "tokenizer)")
    p.add_argument("--tokenizer", choices=TOKENIZER_KINDS, default="word",
                   help="text front end (zoo.front_ends): word = whole words (the corpus's "
                        "own rules; characters for tiny-shakespeare-char), char = characters, "
                        "wordpiece = FastWordpieceTokenizer pieces, sentencepiece = a "
                        "SentencePiece unigram model")
    p.add_argument("--vocab-size", type=int, default=None,
                   help="ids in all, special tokens included: the number of pieces to learn "
                        "(required for wordpiece and sentencepiece; word: the same as "
                        "--max-vocab + 2; char: at most the text's characters)")
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
    p.add_argument("--mixed-precision", choices=PRECISIONS, default="float32",
                   help="Keras mixed-precision policy: bfloat16 or float16 compute with "
                        "float32 weights, logits and loss (float16 adds dynamic loss "
                        "scaling); says at start when this CPU has no native support")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                   help="0 quiet, 1 a live progress bar per epoch, 2 one line per epoch "
                        "(for log files) and TensorFlow's own C++ log lines")
    p.add_argument("--show-window-loss", action="store_true",
                   help="also show 'loss', the objective as optimised (under "
                        "sum_over_time: summed over a window's time steps), next to the "
                        "loss per token in nats")
    return p


def check_args(args):
    """Reject bad flags before any data is read or model built (``SystemExit`` via argparse)."""
    problems = []
    for name in ("embedding_dim", "units", "num_layers", "epochs", "batch_size", "bptt"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1")
    if args.dropout is not None and not 0 <= args.dropout < 1:
        problems.append("--dropout must be in [0, 1)")
    if not args.learning_rate > 0 or not math.isfinite(args.learning_rate):
        problems.append("--learning-rate must be a finite number > 0")
    if args.max_vocab is not None and args.max_vocab < 2:
        problems.append(f"--max-vocab must be >= 2 (<eos> and at least one word), got "
                        f"{args.max_vocab}")
    if args.tokenizer in ("wordpiece", "sentencepiece") and args.vocab_size is None:
        problems.append(f"--tokenizer {args.tokenizer} needs --vocab-size (e.g. 8000)")
    if args.vocab_size is not None and args.max_vocab is not None:
        problems.append("give --vocab-size or --max-vocab, not both")
    if args.tokenizer != "word" and args.max_vocab is not None:
        problems.append("--max-vocab is for --tokenizer word; use --vocab-size")
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


PRECISIONS = ("float32", "bfloat16", "float16")
# CPU flags (/proc/cpuinfo, as lscpu prints them) of native half-precision matmuls on x86:
# AVX-512 BF16 or AMX-BF16 for bfloat16, AVX-512 FP16 or AMX-FP16 for float16.
NATIVE_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"), "float16": ("avx512_fp16", "amx_fp16")}
# Measured with benchmarks/train_speed.py on a 2-vCPU AMD EPYC with avx512_bf16 and without
# avx512_fp16 (docs/benchmarks.md): the float16 step's time over the float32 step's.
FLOAT16_SLOWDOWN_WITHOUT_FP16 = 1.2


def _cpu_flags():
    """The CPU's feature flags from /proc/cpuinfo (an empty set where it is unreadable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def set_mixed_precision(mode, cpu_flags=None, has_gpu=None):
    """Set Keras's global dtype policy for ``--mixed-precision`` (``"float32"``,
    ``"bfloat16"`` -> ``mixed_bfloat16``, ``"float16"`` -> ``mixed_float16``: variables stay
    float32, layers compute in the half type; the zoo's output layer and loss stay float32).

    Returns None, or a note to print when training runs on a CPU without native support for
    ``mode`` (no ``avx512_bf16``/``amx_bf16`` for bfloat16, no ``avx512_fp16``/``amx_fp16``
    for float16): the half-precision matmuls are then emulated and slower than float32.
    ``cpu_flags`` and ``has_gpu`` default to this machine's.
    """
    import keras

    keras.config.set_dtype_policy({"float32": "float32", "bfloat16": "mixed_bfloat16",
                                   "float16": "mixed_float16"}[mode])
    if mode == "float32":
        return None
    if has_gpu is None:
        import tensorflow as tf

        has_gpu = bool(tf.config.list_physical_devices("GPU"))
    flags = _cpu_flags() if cpu_flags is None else set(cpu_flags)
    if has_gpu or flags & set(NATIVE_FLAGS[mode]):
        return None
    slower = (f" (measured: {FLOAT16_SLOWDOWN_WITHOUT_FP16:.1f}x the float32 step time on "
              "such a CPU)" if mode == "float16" else "")
    return (f"mixed precision {mode}: this CPU has none of {', '.join(NATIVE_FLAGS[mode])}, so "
            f"its {mode} matmuls are emulated and training is slower than float32{slower}; "
            "compare with python benchmarks/train_speed.py --precisions "
            f"float32,{mode} --cells lstm --shapes ptb-small --no-torch --no-builtin.")


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
    """Raise :class:`RunError` before building anything when the flags ask for more memory than
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
            raise RunError(f"These flags need about {need / gib:,.1f} GiB for {what} "
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


class RunError(ValueError):
    """A problem with the flags, the data or the run folder that the user fixes: ``main``
    prints its message in one line (exit status 2), without a traceback."""


def check_preset(name):
    """Raise :class:`RunError`, listing ``zoo.PRESETS``, unless ``name`` is one of them.
    (Here, not in :func:`check_args`: the presets' table imports TensorFlow.)"""
    from zoo import PRESETS

    if name not in PRESETS:
        raise RunError(f"--model must be one of {', '.join(PRESETS)}; got {name!r}.")


def load_data(args):
    """The corpus, the vocabulary fitted on its train split and the three splits as id
    streams. Returns ``(corpus, vectorizer, streams)`` with ``streams`` a dict ``{"train",
    "valid", "test"}`` of int ``np.ndarray`` ``(tokens,)``.

    Raises:
        CorpusError: a missing corpus file, or a split shorter than 2 tokens.
    """
    from zoo.front_ends import fit_front_end

    corpus = load_corpus(args.corpus, args.data_dir, allow_download=not args.no_download)
    print(f"corpus: {corpus.description}", flush=True)
    if args.tokenizer != "word" and corpus.split == "character":
        raise RunError(f"--corpus {args.corpus} is read as characters by the word front "
                       f"end; for --tokenizer {args.tokenizer} use --corpus "
                       "tiny-shakespeare.")
    vocab_size = args.vocab_size
    if args.tokenizer == "word" and args.max_vocab is not None:
        vocab_size = args.max_vocab + 2  # + padding and [UNK]
    word_options = ({"standardize": corpus.standardize, "split": corpus.split,
                     "min_count": args.min_count} if args.tokenizer == "word" else {})
    vectorizer = fit_front_end(args.tokenizer, corpus.train, vocab_size, **word_options)
    streams = {split: vectorizer.encode_lines(getattr(corpus, split))
               for split in ("train", "valid", "test")}
    if args.max_train_tokens:
        streams["train"] = streams["train"][: args.max_train_tokens]
    for split, ids in streams.items():
        if ids.size < 2:
            raise CorpusError(f"The {split} split has {ids.size} token(s); need at least 2.")
    print("tokens: " + ", ".join(f"{k} {v.size:,}" for k, v in streams.items())
          + f"; {args.tokenizer} vocabulary {vectorizer.vocab_size:,} ids", flush=True)
    return corpus, vectorizer, streams


def carries_state(args, replicas):
    """Whether the run carries the recurrent state across windows (``--carry-state``,
    default on for recurrent models), and whether the model is recurrent.

    Raises:
        RunError: ``--carry-state`` with several replicas or a model without state.
    """
    from zoo import PRESETS, RecurrentLanguageModel

    recurrent = issubclass(PRESETS[args.model][0], RecurrentLanguageModel)
    carry = recurrent if args.carry_state is None else args.carry_state
    if carry and replicas > 1:
        if args.carry_state:
            raise RunError("--carry-state works on one device only (the streams would be "
                           "split across replicas); use --no-carry-state with --strategy.")
        carry = False
    if carry and not recurrent:
        raise RunError(f"--carry-state needs a recurrent model; {args.model} has no state "
                       "to carry.")
    return carry, recurrent


def make_datasets(args, streams, carry):
    """``(train, valid, test)`` ``tf.data`` datasets of ``(inputs, targets)`` int windows
    ``(batch, bptt)``: contiguous streams (state carried, reset each epoch) or independent
    shuffled windows (each from a zero state).

    Raises:
        RunError: a split shorter than one window.
    """
    from training.data import stream_dataset, window_dataset

    try:  # their ValueErrors are the checks of --bptt and --batch-size against the text
        if carry:
            datasets = tuple(stream_dataset(streams[s], args.batch_size, args.bptt)
                             for s in ("train", "valid", "test"))
        else:
            eval_batch = max(args.batch_size, 64)
            datasets = (window_dataset(streams["train"], args.bptt, args.batch_size,
                                       shuffle=True, seed=args.seed),
                        window_dataset(streams["valid"], args.bptt, eval_batch),
                        window_dataset(streams["test"], args.bptt, eval_batch))
    except ValueError as err:
        raise RunError(str(err)) from err
    print(f"windows: bptt {args.bptt}, batch {args.batch_size}, "
          + ("state carried across windows" if carry else "independent shuffled windows"),
          flush=True)
    return datasets


def clipping(args):
    """``(clipnorm, clipvalue)`` for the model from ``--clipnorm``, ``--clipvalue`` (which
    replaces the global norm) and ``--no-clip`` (neither)."""
    clipnorm = None if (args.clipvalue is not None or args.no_clip) else args.clipnorm
    return clipnorm, None if args.no_clip else args.clipvalue


def build_model(args, vocab_size, carry, strategy, train_ids):
    """The preset with the flags' overrides, compiled and built inside ``strategy``; with
    ``--output-bias-init unigram`` its output bias starts at the log unigram distribution
    of ``train_ids`` (int ``(tokens,)``, the training stream).

    Raises:
        RunError: the model refuses the flags' values (its own message says which).
    """
    import keras

    from zoo import get_model

    overrides = {k: getattr(args, k) for k in ("embedding_dim", "units", "num_layers",
                                                "dropout", "init_scale")
                 if getattr(args, k) is not None}
    if carry:
        overrides["stateful"] = True
    clipnorm, clipvalue = clipping(args)
    with strategy.scope():
        try:
            model = get_model(args.model, vocab_size, clipnorm=clipnorm, clipvalue=clipvalue,
                              loss_reduction=args.loss_reduction, **overrides)
        except ValueError as err:  # the constructor's own checks of the flags' values
            raise RunError(f"--model {args.model}: {err}") from err
        optimizer = (keras.optimizers.Adam if args.optimizer == "adam"
                     else keras.optimizers.SGD)(args.learning_rate)
        if args.mixed_precision == "float16":  # dynamic loss scaling
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer)
        model.build((args.batch_size if carry else None, args.bptt))
        model.optimizer.build(model.trainable_variables)  # fit then needs no symbolic build
        if args.output_bias_init == "unigram":
            model.init_output_bias(train_ids)
    print(f"model: {args.model}, {model.count_params():,} parameters", flush=True)
    return model


def prepare_output(args, corpus, vectorizer):
    """Create the run folder, decide whether to resume (a ``backup/`` from an interrupted
    run, unless ``--fresh`` deletes it), and write what a resumed run and ``nwp-export``
    read before training: ``vocab.txt``, ``text.json``, ``calibration.txt``. Returns
    whether the run resumes.

    Raises:
        RunError: the backup belongs to a run with another vocabulary.
    """
    from zoo.front_ends import load_front_end

    os.makedirs(args.output, exist_ok=True)
    backup_dir = os.path.join(args.output, "backup")
    if args.fresh:
        shutil.rmtree(backup_dir, ignore_errors=True)
    elif os.path.isdir(backup_dir):  # written by BackupAndRestore at each epoch end
        try:
            previous = load_front_end(args.output).vocabulary
        except FileNotFoundError:
            previous = None
        if previous is not None and previous != vectorizer.vocabulary:
            raise RunError(
                f"The interrupted run in {args.output} has a vocabulary of {len(previous):,} "
                f"ids that differs from this corpus's ({vectorizer.vocab_size:,} ids): its "
                "checkpoint cannot continue on this text. Use another --output, or --fresh.")
        print(f"resuming the interrupted run from {backup_dir} (--fresh starts over)", flush=True)
    resuming = os.path.isdir(backup_dir)
    vectorizer.save(args.output)  # before training: a resumed run checks it (word kind:
    # vocab.txt and text.json, as before; every kind: front_end.json)
    write_calibration_text(corpus.train, os.path.join(args.output, "calibration.txt"))
    return resuming


def make_callbacks(args, streams, recurrent, resuming):
    """The run's callbacks: backup and restore, progress for a person, the time budget,
    state resets, the per-epoch CSV history, weight checkpoints, TensorBoard logs, and
    those the flags ask for. Returns ``(callbacks, budget)``; ``budget`` counts the
    training batches.

    Raises:
        RunError: ``--gradient-flow`` with a model without recurrent state.
    """
    import keras

    from training.callbacks import Progress, ReadableProgress, ResetStates, RestorableBackup

    budget = Progress(args.time_budget_minutes)
    callbacks = [
        RestorableBackup(os.path.join(args.output, "backup")),
        ReadableProgress(args.verbose, show_window_loss=args.show_window_loss,
                         clipnorm=clipping(args)[0]),
        budget, ResetStates(),
        # one row per epoch, appended across resumes, so history.json covers every epoch
        keras.callbacks.CSVLogger(os.path.join(args.output, "history.csv"), append=resuming),
        keras.callbacks.ModelCheckpoint(
            os.path.join(args.output, "checkpoints", "epoch-{epoch:03d}.weights.h5"),
            save_weights_only=True),
        keras.callbacks.TensorBoard(os.path.join(args.output, "logs")),
    ]
    if args.gradient_flow:
        if not recurrent:
            raise RunError(f"--gradient-flow needs a recurrent model; {args.model} has no "
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
    return callbacks, budget


def fit(args, model, train_ds, valid_ds, callbacks):
    """``model.fit`` (Keras's own progress off: :class:`ReadableProgress` shows it).
    Returns ``(epochs, seconds)``: ``{metric: [value per epoch]}`` over every epoch of the
    run, resumes included, and the wall time of this fit."""
    start = time.monotonic()
    history = model.fit(train_ds, validation_data=valid_ds, epochs=args.epochs,
                        callbacks=callbacks, verbose=0, shuffle=False)
    seconds = time.monotonic() - start
    epochs = read_history(os.path.join(args.output, "history.csv")) or history.history
    return epochs, seconds


def evaluate(model, corpus, streams, valid_ds, test_ds, output):
    """Valid and test perplexity and loss in nats per token, and the numbers that compare
    across front ends: per-word perplexity and bits per character
    (:func:`training.evaluate.comparable_metrics`).

    Raises:
        FloatingPointError: a value is not finite (training diverged); nothing more is
            saved.
    """
    import numpy as np

    from training.callbacks import ResetStates
    from training.evaluate import comparable_metrics

    results = {}
    for split, ds in (("valid", valid_ds), ("test", test_ds)):
        logs = model.evaluate(ds, verbose=0, return_dict=True, callbacks=[ResetStates()])
        results[f"{split}_perplexity"] = float(logs["perplexity"])
        results[f"{split}_loss_nats_per_token"] = float(np.log(logs["perplexity"]))
    if corpus.split == "character":
        for split in ("valid", "test"):
            results[f"{split}_bits_per_character"] = (results[f"{split}_loss_nats_per_token"]
                                                      / np.log(2))
    for split in ("valid", "test"):  # per word and per character, whatever the tokenizer
        comparable = comparable_metrics(results[f"{split}_loss_nats_per_token"],
                                        streams[split].size - 1, getattr(corpus, split))
        results[f"{split}_per_word_perplexity"] = comparable["per_word_perplexity"]
        if corpus.split != "character":
            results[f"{split}_bits_per_character"] = comparable["bits_per_character"]
    if not all(math.isfinite(v) for v in results.values()):
        raise FloatingPointError(
            f"Training diverged (valid perplexity {results['valid_perplexity']}); the model "
            f"was not saved (the weights of earlier epochs are in "
            f"{os.path.join(output, 'checkpoints')}). Lower "
            "--learning-rate or --clipnorm.")
    return results


def save_model(args, model, vectorizer, corpus, streams, carry):
    """Save ``model.keras`` with the text settings (:class:`zoo.NextWordPredictor`), then
    add the keyboard metrics of the test split (word-level corpora, unless
    ``--no-keyboard-metrics``). Returns those metrics (``{}`` when skipped)."""
    from zoo import NextWordPredictor

    NextWordPredictor(vectorizer, model).save(args.output)
    if not args.keyboard_metrics or corpus.split == "character" or args.tokenizer != "word":
        return {}
    from training.evaluate import KEYBOARD_FIELDS, keyboard_report

    report = keyboard_report(model, vectorizer, streams["test"], bptt=args.bptt,
                             batch_size=args.batch_size, carry_state=carry)
    return {k: report[k] for k in KEYBOARD_FIELDS}


def report(args, metrics, epochs):
    """Write ``history.json`` and ``metrics.json`` and print the summary lines."""
    with open(os.path.join(args.output, "history.json"), "w") as f:
        json.dump({k: [float(x) if math.isfinite(x) else None for x in v]
                   for k, v in epochs.items()}, f, indent=1)
    with open(os.path.join(args.output, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    print(f"valid loss {metrics['valid_loss_nats_per_token']:.4f} nats/token | "
          f"valid perplexity {metrics['valid_perplexity']:.2f} | "
          f"test perplexity {metrics['test_perplexity']:.2f} per {args.tokenizer} token, "
          f"{metrics['test_per_word_perplexity']:.2f} per word, "
          f"{metrics['test_bits_per_character']:.3f} bits/char | "
          f"{metrics['train_tokens_per_second'] or 0:,.0f} train tokens/s | "
          f"wall {metrics['wall_seconds']:.0f} s | saved {args.output}", flush=True)
    if "top1_accuracy" in metrics:
        from training.evaluate import format_keyboard

        print(f"test next word: {format_keyboard(metrics)}", flush=True)


def train(args):
    """Run one training job from parsed flags; returns the metrics dict it saved.

    Raises:
        CorpusError, RunError, training.callbacks.BackupError: a problem the user fixes
            (the message says how).
        FloatingPointError: training diverged.
    """
    import keras

    check_preset(args.model)
    keras.utils.set_random_seed(args.seed)
    started = time.monotonic()
    precision_note = set_mixed_precision(args.mixed_precision)
    if precision_note:
        print(precision_note, flush=True)
    strategy = make_strategy(args.strategy)
    corpus, vectorizer, streams = load_data(args)
    check_memory(args, vectorizer.vocab_size)
    carry, recurrent = carries_state(args, strategy.num_replicas_in_sync)
    train_ds, valid_ds, test_ds = make_datasets(args, streams, carry)
    model = build_model(args, vectorizer.vocab_size, carry, strategy, streams["train"])
    resuming = prepare_output(args, corpus, vectorizer)
    callbacks, budget = make_callbacks(args, streams, recurrent, resuming)
    epochs, fit_seconds = fit(args, model, train_ds, valid_ds, callbacks)
    results = evaluate(model, corpus, streams, valid_ds, test_ds, args.output)
    results.update(save_model(args, model, vectorizer, corpus, streams, carry))
    tokens_trained = budget.batches * args.batch_size * args.bptt  # whole windows
    metrics = {
        "corpus": args.corpus,
        "model": args.model,
        "parameters": model.count_params(),
        "tokenizer": args.tokenizer,
        "vocab_size": vectorizer.vocab_size,
        "epochs_run": len(epochs.get("loss", [])),
        "train_tokens_per_second": tokens_trained / fit_seconds if tokens_trained else None,
        "fit_seconds": fit_seconds,
        "wall_seconds": time.monotonic() - started,
        **results,
        "flags": vars(args),
    }
    report(args, metrics, epochs)
    return metrics


def main(argv=None):
    """``nwp-train``. Returns the exit status: 0, or 2 after a one-line message for a
    problem the user fixes (flags, data, run folder, a diverged run). Any other exception,
    a bug, propagates with its traceback."""
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    if known.config:  # the configuration's values become defaults that flags override
        parser.set_defaults(**CONFIGS[known.config])
    args = parser.parse_args(argv)
    problems = check_args(args)
    if problems:
        parser.error("; ".join(problems))
    if args.verbose < 2:  # before TensorFlow is imported; an explicit setting wins
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from training.callbacks import BackupError
    from zoo.front_ends import FrontEndError

    try:
        train(args)
    except (CorpusError, RunError, BackupError, FrontEndError, FloatingPointError,
            OSError) as err:
        print(f"nwp-train: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
