"""``nwp-export``: write a trained run as a SavedModel in TF Serving's layout.

The SavedModel holds the text front end (``zoo.front_ends``: the word kind's
``keras.layers.TextVectorization``, or tensorflow-text's WordPiece/SentencePiece ops, which
need ``import tensorflow_text`` before loading; ``tensorflow_model_server`` links them) and
the language model in one graph, with five signatures, six for a model with attention (every
input has batch dimension -1, so TF Serving's row format works)::

    serving_default
      inputs:  text            DT_STRING [-1]       raw prompts
      outputs: words           DT_STRING [-1, k]    the k most likely next words
               probabilities   DT_FLOAT  [-1, k]    their model probabilities, most likely first
    generate
      inputs:  text DT_STRING [-1], max_new_tokens DT_INT32 [-1] (at most 256),
               temperature DT_FLOAT [-1] (<= 0: greedy), top_k DT_INT32 [-1] (<= 0: all),
               top_p DT_FLOAT [-1] (>= 1: all), seed DT_INT64 [-1]
      outputs: continuation DT_STRING [-1], num_tokens DT_INT32 [-1]
    score
      inputs:  text DT_STRING [-1]
      outputs: token_log_probs DT_FLOAT [-1, -1] (nats, 0-padded), num_tokens DT_INT32 [-1],
               perplexity DT_FLOAT [-1]
    complete    (word-level models, not character-level ones)
      inputs:  text            DT_STRING [-1]       prompts whose last word is unfinished
      outputs: words           DT_STRING [-1, k]    the k most likely completions of that word
               probabilities   DT_FLOAT  [-1, k]    renormalised over the words that start
                                                    with the typed prefix, most likely first
               prefix          DT_STRING [-1]       the unfinished word (standardised) that
                                                    was completed ("" after a trailing space)
      The typed word is what follows the last white space; the words are the vocabulary's
      that start with it (:meth:`zoo.NextWordPredictor.complete`). A prefix that no word
      starts with answers "" and 0 in every slot; an empty prompt is INVALID_ARGUMENT.

    tokenize
      inputs:  text DT_STRING [-1]
      outputs: ids DT_INT32 [-1, -1] (the front end's token ids, 0-padded, no <eos>),
               num_tokens DT_INT32 [-1]

    attention   (only for models with attention: lstm-attention, the Transformer)
      inputs:  text DT_STRING [-1]
      outputs: tokens DT_STRING [-1, T] (the tokens the model reads, <eos> first, "" after
               the end), num_tokens DT_INT32 [-1] (<eos> included),
               weights DT_FLOAT [-1, layers, heads, T]: the attention weights of each
               prompt's last token over its T positions, per layer and head (a recurrent
               model with attention: 1 layer; 1 head, or 4 for multi_head), from the
               layers' own return_attention_scores; each row sums to 1 over the real
               tokens and is 0 on padding

``assets.extra/tf_serving_warmup_requests`` holds one request per signature (TF Serving
runs them at load), and ``<model_base_path>/models.config`` lists the model for
``tensorflow_model_server --model_config_file``.

It is written to ``<model_base_path>/<model_name>/<version>/`` atomically: the archive is
written to a hidden non-numeric sibling folder, loaded back and run once, and only then
renamed to its version number. TF Serving (and ``nwp-serve``) only pick up folders whose
name is an integer, so a half-written export is never served.

With ``--litert`` the same version folder also gets a LiteRT bundle for phones
(``model.tflite``, ``litert.json``, ``tokenizer.json``; see :mod:`serving.litert_export`).

Example::

    nwp-export --run runs/default --model_base_path saved_models --model_name nwp --litert
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import threading
import time

from serving.limits import INT64_MAX, MAX_PROMPT_TOKENS

from serving.servable import DEFAULT_SIGNATURE as SIGNATURE_KEY  # noqa: E402  defined once
INPUT_KEY = "text"
OUTPUT_KEYS = ("words", "probabilities")
COMPLETE_KEY = "complete"
COMPLETE_OUTPUT_KEYS = ("words", "probabilities", "prefix")


def version_dirs(model_dir):
    """``{version: path}`` for every child of ``model_dir`` named by a version number (the
    server's rule, :func:`serving.limits.parse_version`: ASCII digits, 1 .. 2**63 - 1)."""
    from serving.servable import list_versions

    return list_versions(model_dir) if os.path.isdir(model_dir) else {}


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def clean_stale_exports(model_dir):
    """Delete ``.tmp-<version>-<pid>`` folders in ``model_dir`` left by exports that were
    killed (their process no longer exists); returns the names deleted. Folders of running
    exports (this host's live pids) are left alone."""
    removed = []
    try:
        names = os.listdir(model_dir)
    except OSError:
        return removed
    for name in names:
        parts = name.split("-")
        if len(parts) != 3 or parts[0] != ".tmp" or not parts[2].isascii() \
                or not parts[2].isdigit():
            continue
        pid = int(parts[2])
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(os.path.join(model_dir, name), ignore_errors=True)
            removed.append(name)
    return removed


def check_export_target(model_base_path, model_name, version=None):
    """Refuse, before any work, what an export could not write.

    Raises:
        ValueError: ``version`` outside 1 .. 2**63 - 1 (TF Serving's int64 versions); the
            base path or the model folder exists and is not a folder.
    """
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)
                                or not 1 <= version <= INT64_MAX):
        raise ValueError(f"version must be an integer in 1..{INT64_MAX} (TF Serving's int64 "
                         f"versions), got {version!r}.")
    for path in (model_base_path, os.path.join(model_base_path, model_name)):
        if os.path.exists(path) and not os.path.isdir(path):
            raise ValueError(f"{path} exists and is not a folder; give --model_base_path a "
                             "folder (it is created if missing).")


def prompt_token_limit(model, max_prompt_tokens=None):
    """The prompt tokens an export reads (``<eos>`` included): ``max_prompt_tokens``, or by
    default ``MAX_PROMPT_TOKENS`` (256) or a Transformer's ``max_length`` if smaller.

    Raises:
        ValueError: not a positive int, or more than the model's ``max_length`` positions.
    """
    positions = getattr(model, "max_length", None)
    if max_prompt_tokens is None:
        max_prompt_tokens = min(MAX_PROMPT_TOKENS, positions or MAX_PROMPT_TOKENS)
    if not isinstance(max_prompt_tokens, int) or max_prompt_tokens < 1:
        raise ValueError(f"max_prompt_tokens must be a positive int, got {max_prompt_tokens!r}.")
    if positions is not None and max_prompt_tokens > positions:
        raise ValueError(f"max_prompt_tokens={max_prompt_tokens} is more than the model's "
                         f"max_length={positions} positions; give at most {positions}.")
    return max_prompt_tokens


@contextlib.contextmanager
def _stage(progress, what, every=5.0):
    """Say ``what`` through ``progress(line)`` (None: silent), then a ``still ...`` line
    every ``every`` seconds until the block ends, so a long step is never silent."""
    if progress is None:
        yield
        return
    progress(f"{what} ...")
    done, start = threading.Event(), time.monotonic()

    def beat():
        while not done.wait(every):
            progress(f"  still {what} ({time.monotonic() - start:.0f} s)")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def export_saved_model(predictor, model_base_path, model_name, version=None, top_k=5,
                       max_prompt_tokens=None, litert=None, progress=None):
    """Export a :class:`zoo.NextWordPredictor` as ``<base>/<name>/<version>/``.

    Args:
        predictor: a ``zoo.NextWordPredictor``.
        model_base_path: the folder that holds one folder per model name.
        model_name: the model's name in the server (``[A-Za-z0-9_.-]+``).
        version: an int in 1 .. 2**63 - 1; None: one more than the highest version present
            (if a concurrent export publishes that number first, the next free one).
        top_k: number of next words the signature returns, 1 <= top_k <= vocab_size - 2.
        max_prompt_tokens: the model reads only the last this many tokens of a prompt
            (``<eos>`` included), which bounds time and memory per request; >= 1, at most
            a Transformer's ``max_length``. None: 256, or ``max_length`` if smaller.
        litert: None, or a dict of :func:`serving.litert_export.write_bundle` arguments
            (``quantization``, ``representative_lines``, ``window``): the LiteRT bundle
            (``model.tflite``, ``litert.json``, tokenizer) is then written into the same
            version folder before it is published, so the version appears with both or not
            at all.
        progress: None (silent), or a callable given one line at each step and at least
            every 5 s during a long one (``nwp-export`` passes ``print``).

    Returns:
        The path of the new version folder.

    Raises:
        ValueError: bad ``model_name``, ``version`` or ``top_k``; a base path that is a
            file; a LiteRT option error
            (``ConversionError`` and ``QuantizationError`` are ValueErrors).
        FileExistsError: that version already exists, or a concurrent export published it
            first (versions are never overwritten).

    Folders of killed exports (``.tmp-<version>-<pid>`` whose process is gone) are deleted.
    """
    import keras
    import tensorflow as tf

    if (not model_name or set(model_name) == {"."}
            or not all(c.isalnum() or c in "_.-" for c in model_name)):
        raise ValueError(f"model_name must be letters, digits, '_', '.', '-'; got {model_name!r}.")
    if not 1 <= top_k <= predictor.vectorizer.vocab_size - 2:
        raise ValueError(
            f"top_k must be between 1 and {predictor.vectorizer.vocab_size - 2} (the number of "
            f"real words), got {top_k}.")
    check_export_target(model_base_path, model_name, version)
    model_dir = os.path.join(model_base_path, model_name)
    auto_version = version is None
    if auto_version:
        version = max(version_dirs(model_dir), default=0) + 1
    max_prompt_tokens = prompt_token_limit(predictor.model, max_prompt_tokens)
    target = os.path.join(model_dir, str(version))
    if os.path.exists(target):
        raise FileExistsError(f"{target} exists; versions are never overwritten.")
    os.makedirs(model_dir, exist_ok=True)
    clean_stale_exports(model_dir)
    tmp = os.path.join(model_dir, f".tmp-{version}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)

    def serve(text):
        return predictor.top_k(text, k=top_k, max_prompt_tokens=max_prompt_tokens)

    def generate(text, max_new_tokens, temperature, top_k, top_p, seed):
        return predictor.generate(text, max_new_tokens, temperature, top_k, top_p, seed,
                                  max_prompt_tokens=max_prompt_tokens)

    def score(text):
        return predictor.score(text, max_prompt_tokens=max_prompt_tokens)

    def complete(text):
        return predictor.complete(text, k=top_k, max_prompt_tokens=max_prompt_tokens)

    def spec(dtype, name):
        return tf.TensorSpec([None], dtype, name=name)

    archive = keras.export.ExportArchive()
    archive.track(predictor.model)
    for resource in predictor.front_end.trackables:  # the tokenizer's tables and models
        archive.track(resource)
    archive.add_endpoint(SIGNATURE_KEY, serve, input_signature=[spec(tf.string, INPUT_KEY)])
    archive.add_endpoint("generate", generate, input_signature=[
        spec(tf.string, "text"), spec(tf.int32, "max_new_tokens"),
        spec(tf.float32, "temperature"), spec(tf.int32, "top_k"), spec(tf.float32, "top_p"),
        spec(tf.int64, "seed")])
    archive.add_endpoint("score", score, input_signature=[spec(tf.string, "text")])
    archive.add_endpoint(TOKENIZE_KEY, predictor.front_end.tokenize_outputs,
                         input_signature=[spec(tf.string, "text")])
    warmup = dict(WARMUP)
    if has_complete(predictor):
        archive.add_endpoint(COMPLETE_KEY, complete, input_signature=[spec(tf.string, "text")])
        warmup[COMPLETE_KEY] = COMPLETE_WARMUP
    if getattr(predictor.model, "has_attention", False):
        def attention(text):
            return predictor.attention(text, max_prompt_tokens=max_prompt_tokens)

        archive.add_endpoint(ATTENTION_KEY, attention,
                             input_signature=[spec(tf.string, "text")])
        warmup[ATTENTION_KEY] = ATTENTION_WARMUP
    try:
        with _stage(progress, f"tracing {len(warmup) + 1} signatures and writing the "
                             "SavedModel"):  # + tokenize, which has no warm-up request
            archive.write_out(tmp, verbose=False)
            _write_warmup(tmp, warmup)
        with _stage(progress, "checking every signature on its warm-up request"):
            loaded = tf.saved_model.load(tmp).signatures
            out = loaded[SIGNATURE_KEY](**{INPUT_KEY: tf.constant(["", "the"])})
            if sorted(out) != sorted(OUTPUT_KEYS) or out["words"].shape != (2, top_k):
                raise RuntimeError(f"The exported signature returned {dict(out)}; not exporting.")
            if COMPLETE_KEY in warmup:
                out = loaded[COMPLETE_KEY](text=tf.constant(["the", "the "]))
                if (sorted(out) != sorted(COMPLETE_OUTPUT_KEYS)
                        or out["words"].shape != (2, top_k)):
                    raise RuntimeError(f"The exported complete signature returned {dict(out)}; "
                                       "not exporting.")
            if ATTENTION_KEY in warmup:
                out = loaded[ATTENTION_KEY](text=tf.constant(["", "the"]))
                if (sorted(out) != sorted(ATTENTION_OUTPUT_KEYS) or len(out["weights"].shape) != 4
                        or out["weights"].shape[-1] != out["tokens"].shape[-1]):
                    raise RuntimeError(f"The exported attention signature returned {dict(out)}; "
                                       "not exporting.")
            tokens = loaded[TOKENIZE_KEY](text=tf.constant(["", "the"]))
            if sorted(tokens) != ["ids", "num_tokens"] or tokens["num_tokens"].numpy()[0] != 0:
                raise RuntimeError(f"The exported tokenize signature returned {dict(tokens)}; "
                                   "not exporting.")
            for name, inputs in warmup.items():  # every signature runs before it is published
                loaded[name](**{k: tf.constant(v, dtype=_WARMUP_DTYPES[k])
                                for k, v in inputs.items()})
        if litert is not None:
            from serving.litert_export import write_bundle

            with _stage(progress, "converting to LiteRT and checking the bundle"):
                write_bundle(predictor, tmp, max_prompt_tokens=max_prompt_tokens,
                             top_k=top_k, **litert)
        target = _publish(tmp, model_dir, version, auto_version)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_models_config(model_base_path)
    return target


def _publish(tmp, model_dir, version, auto_version):
    """Rename ``tmp`` to its version folder; returns the folder. If another export took that
    version meanwhile, an automatic version moves on to the next free number.

    Raises:
        FileExistsError: an explicit ``version`` that another export published first.
    """
    while True:
        target = os.path.join(model_dir, str(version))
        try:
            if os.path.exists(target):  # rename would replace an empty folder
                raise FileExistsError(target)
            os.rename(tmp, target)
            return target
        except OSError as err:
            if not os.path.exists(target):
                raise
            if not auto_version:
                raise FileExistsError(f"{target} was published by another export meanwhile; "
                                      "versions are never overwritten.") from None
            if version >= INT64_MAX:
                raise ValueError("no version number left below 2**63.") from err
            version += 1


WARMUP = {
    SIGNATURE_KEY: {"text": ["the"]},
    "generate": {"text": ["the"], "max_new_tokens": [2], "temperature": [0.0], "top_k": [0],
                 "top_p": [1.0], "seed": [0]},
    "score": {"text": ["the"]},
}
COMPLETE_WARMUP = {"text": ["the"]}  # only written for models with a complete signature
ATTENTION_KEY = "attention"
TOKENIZE_KEY = "tokenize"
ATTENTION_OUTPUT_KEYS = ("tokens", "num_tokens", "weights")
ATTENTION_WARMUP = {"text": ["the"]}  # only written for models with an attention signature
_WARMUP_DTYPES = {"max_new_tokens": "int32", "temperature": "float32", "top_k": "int32",
                  "top_p": "float32", "seed": "int64", "text": "string"}


def has_complete(predictor):
    """True if the export gets a ``complete`` signature: a word-level vectoriser, or a
    subword front end (whose words come from :class:`zoo.word_search.WordBeamSearch`); a
    character-level vectoriser has no words to complete."""
    return (getattr(predictor, "word_search", None) is not None
            or getattr(predictor.vectorizer, "split", "whitespace") != "character")


def _write_warmup(export_dir, requests=None):
    """``assets.extra/tf_serving_warmup_requests``: a TFRecord of PredictionLog, one
    PredictRequest per signature (TF Serving's ``saved_model_warmup``); ``requests``:
    ``{signature: inputs}`` of the signatures the export has (default :data:`WARMUP`)."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2, predict_pb2

    folder = os.path.join(export_dir, "assets.extra")
    os.makedirs(folder, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(folder, "tf_serving_warmup_requests")) as writer:
        for signature, inputs in (WARMUP if requests is None else requests).items():
            request = predict_pb2.PredictRequest()
            request.model_spec.signature_name = signature
            for alias, value in inputs.items():
                request.inputs[alias].CopyFrom(
                    tf.make_tensor_proto(value, dtype=_WARMUP_DTYPES[alias]))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def write_models_config(model_base_path):
    """Write ``<model_base_path>/models.config``: a ModelServerConfig text proto listing
    every model folder there (absolute paths, latest version), for ``tensorflow_model_server
    --model_config_file`` or ``nwp-serve --model_config_file``. Returns its path."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    base = os.path.abspath(model_base_path)
    for name in sorted(os.listdir(base)):
        if os.path.isdir(os.path.join(base, name)) and version_dirs(os.path.join(base, name)):
            model = config.model_config_list.config.add()
            model.name, model.base_path = name, os.path.join(base, name)
            model.model_platform = "tensorflow"
    path = os.path.join(base, "models.config")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text_format.MessageToString(config))
    os.replace(tmp, path)
    return path


def build_parser():
    p = argparse.ArgumentParser(
        prog="nwp-export",
        description="Export a training run as a string-in SavedModel in TF Serving's layout.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", default="runs/default", help="run folder written by nwp-train")
    p.add_argument("--model_base_path", default="saved_models",
                   help="folder of model folders (TF Serving's layout)")
    p.add_argument("--model_name", default="nwp", help="the model's folder and served name")
    p.add_argument("--version", type=int, default=None,
                   help="version number (default: highest present + 1)")
    p.add_argument("--top_k", type=int, default=5, help="next words returned per prompt")
    p.add_argument("--max_prompt_tokens", type=int, default=None,
                   help="the model reads only the last N tokens of each prompt (default 256, "
                        "or a Transformer's max_length if smaller)")
    litert = p.add_argument_group("LiteRT (TFLite) bundle for phones, in the same version folder")
    litert.add_argument("--litert", action="store_true",
                        help="also write model.tflite (one-step 'step' signature, builtin ops "
                             "only), litert.json and the tokenizer files")
    litert.add_argument("--litert_quantization", default=None,
                        choices=("float32", "float16", "dynamic-int8", "int8"),
                        help="default dynamic-int8; int8 is full integer, calibrated on "
                             "--representative_text")
    litert.add_argument("--representative_text", default=None,
                        help="training text (one line per line) for int8; default: the run's "
                             "calibration.txt")
    litert.add_argument("--litert_window", type=int, default=256,
                        help="attention models: the past outputs the step attends over")
    return p


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow's import
    parser = build_parser()
    args = parser.parse_args(argv)
    litert_only = [flag for flag, value in (
        ("--litert_quantization", args.litert_quantization),
        ("--representative_text", args.representative_text)) if value is not None]
    if litert_only and not args.litert:
        parser.error(f"{' and '.join(litert_only)} need --litert (the LiteRT bundle).")
    args.litert_quantization = args.litert_quantization or "dynamic-int8"
    try:  # before the (slow) load: a bad target is one line, not a traceback after work
        check_export_target(args.model_base_path, args.model_name, args.version)
    except ValueError as err:
        print(f"nwp-export: error: {err}", file=sys.stderr)
        return 2
    from zoo import NextWordPredictor

    def progress(line):
        print(line, flush=True)

    try:
        with _stage(progress, f"loading the run in {args.run}"):
            predictor = NextWordPredictor.load(args.run)
    except FileNotFoundError as err:
        print(f"nwp-export: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001  a corrupt model.keras: say so, no traceback
        print(f"nwp-export: error: cannot load the run in {args.run} (is model.keras complete?): "
              f"{type(err).__name__}: {err}", file=sys.stderr)
        return 2
    litert = None
    if args.litert:
        litert = {"quantization": args.litert_quantization, "window": args.litert_window}
        if args.litert_quantization == "int8":
            source = args.representative_text or os.path.join(args.run, "calibration.txt")
            if not os.path.exists(source):
                print(f"nwp-export: error: int8 needs representative training text: {source} "
                      "does not exist (give --representative_text FILE).", file=sys.stderr)
                return 2
            try:
                with open(source, encoding="utf-8") as f:
                    litert["representative_lines"] = f.read().splitlines()
            except (OSError, UnicodeDecodeError) as err:
                print(f"nwp-export: error: cannot read the representative text {source}: "
                      f"{err}", file=sys.stderr)
                return 2
    try:
        path = export_saved_model(predictor, args.model_base_path, args.model_name,
                                  args.version, args.top_k, args.max_prompt_tokens, litert,
                                  progress)
    except (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError) as err:
        print(f"nwp-export: error: {err}", file=sys.stderr)
        return 2
    print(f"exported {path}" + (f" (with the LiteRT bundle, {args.litert_quantization})"
                                 if args.litert else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
