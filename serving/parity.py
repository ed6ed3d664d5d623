"""``nwp-parity``: the same version's next words from every runtime, side by side.

For a set of prompts it asks every runtime that serves one exported version for the top-k
next words and their probabilities, and measures each against the Keras model in process
(the reference)::

    keras                 NextWordPredictor.load(RUN).top_k(...)          (the reference)
    saved_model           tf.saved_model.load(VERSION_DIR), serving_default
    rest                  POST .../versions/N:predict on nwp-serve        (started here)
    grpc                  PredictionService.Predict on the same nwp-serve
    litert-bundle         the LiteRT bundle in the version folder, if it has one
    litert-<q>            every quantization q of serving.litert_export.QUANTIZATIONS,
                          converted now from the run into a temporary folder

``nwp-serve`` is started as a subprocess on loopback, on free ports, and always stopped
(also on an error, Ctrl-C or SIGTERM). ``int8`` calibrates on ``RUN/calibration.txt``
(written by ``nwp-train``); without it the row says it was skipped, and an ``int8`` file that
:func:`serving.litert_export.write_bundle` refuses (``QuantizationError``) shows the refusal
as its row.

Comparison with the reference is by word: for each prompt, each word in either top-k list
is compared with its probability in the other answer; a word missing from one top-k list
takes its probability from that runtime's full next-word distribution when it has one (the
Keras model and LiteRT do; the SavedModel, REST and gRPC give only the top k), otherwise it
cannot be compared. Per runtime the report gives the largest absolute probability
difference over all prompts (``max_abs_diff``), the number of reference top-k words missing
from the runtime's top k (``top_k_mismatches``, summed over prompts; of them
``unresolved`` could not be compared), the prompts whose top k differs as a set or only in
order, and the seconds spent loading (converting, starting the server) and answering.

Example::

    nwp-parity --run runs/ptb --model_base_path saved_models --model_name nwp \
        --prompts "the company said" "in the" --json parity.json

Exit status: 0 when every runtime answered, was skipped or refused (int8); 1 when one
failed (its row says why); 2 for bad input (a missing run or version folder).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from urllib.parse import quote

from serving.litert_export import QUANTIZATIONS

PROG = "nwp-parity"
REFERENCE = "keras"
RUNTIMES = ("keras", "saved_model", "rest", "grpc", "litert-bundle",
            *(f"litert-{q}" for q in QUANTIZATIONS))
DEFAULT_PROMPTS = ("", "the", "in the", "the value of the", "it is a", "an unknownword here")
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ParityError(ValueError):
    """Bad input: a missing run or version folder, an unknown runtime (message says which)."""


# -- comparing answers ---------------------------------------------------------------------

def compare_answers(reference, answer, k=None):
    """Compare one runtime's answers with the reference's, word by word.

    Args:
        reference: dict with ``words`` (list per prompt of lists of str), ``probabilities``
            (the same shape, floats), ``full`` (``(prompts, vocab)`` probabilities) and
            ``vocabulary`` (list of str, the columns of ``full``).
        answer: the same for the runtime; ``full`` and ``vocabulary`` may be None (top k
            only).
        k: compare the first ``k`` words of each list (default: all given).

    Returns:
        dict: ``max_abs_diff`` (float; None when no word could be compared),
        ``top_k_mismatches`` (reference words absent from the runtime's top k, summed over
        prompts), ``unresolved`` (of the words in either list but not both, those with no
        probability from a full answer), ``prompts_with_mismatch`` (top-k sets differ) and
        ``order_differs`` (same set, other order).
    """
    def lookup(side):
        if side.get("full") is None:
            return None
        index = {w: i for i, w in enumerate(side["vocabulary"])}
        return lambda row, word: (float(side["full"][row][index[word]])
                                  if word in index else None)

    ref_full, ans_full = lookup(reference), lookup(answer)
    worst, mismatches, unresolved, prompts_off, order = None, 0, 0, 0, 0
    for row, (ref_words, ref_probs) in enumerate(zip(reference["words"],
                                                     reference["probabilities"])):
        ref_top = dict(zip(ref_words[:k], ref_probs[:k]))
        ans_words = list(answer["words"][row][:k])
        ans_top = dict(zip(ans_words, answer["probabilities"][row][:k]))
        missing = [w for w in ref_top if w not in ans_top]
        mismatches += len(missing)
        if missing or len(ans_top) != len(ref_top):
            prompts_off += 1
        elif ans_words != list(ref_words[:k]):
            order += 1
        for word in dict.fromkeys([*ref_top, *ans_top]):
            p_ref = ref_top.get(word)
            if p_ref is None and ref_full is not None:
                p_ref = ref_full(row, word)
            p_ans = ans_top.get(word)
            if p_ans is None and ans_full is not None:
                p_ans = ans_full(row, word)
            if p_ref is None or p_ans is None:
                unresolved += 1
                continue
            diff = abs(float(p_ref) - float(p_ans))
            worst = diff if worst is None else max(worst, diff)
    return {"max_abs_diff": worst, "top_k_mismatches": mismatches, "unresolved": unresolved,
            "prompts_with_mismatch": prompts_off, "order_differs": order}


# -- the runtimes --------------------------------------------------------------------------

def _row(status, message=None, **fields):
    return {"status": status, "message": message, "detail": fields.pop("detail", {}),
            "load_s": fields.pop("load_s", None), "answer_s": fields.pop("answer_s", None),
            "answers": None, **fields}


def _keras(run, prompts, k, max_prompt_tokens):
    import tensorflow as tf

    from zoo import NextWordPredictor

    start = time.perf_counter()
    predictor = NextWordPredictor.load(run)
    loaded = time.perf_counter()
    out = predictor.top_k(tf.constant(prompts), k=k, max_prompt_tokens=max_prompt_tokens)
    answered = time.perf_counter()
    full = predictor.next_word_distribution(tf.constant(prompts), max_prompt_tokens).numpy()
    answer = {"words": [[w.decode("utf-8") for w in row] for row in out["words"].numpy()],
              "probabilities": out["probabilities"].numpy().tolist(), "full": full,
              "vocabulary": predictor.vectorizer.vocabulary}
    return predictor, answer, loaded - start, answered - loaded


def _saved_model(version_dir, prompts):
    import tensorflow as tf

    start = time.perf_counter()
    signature = tf.saved_model.load(version_dir).signatures["serving_default"]
    loaded = time.perf_counter()
    out = signature(text=tf.constant(prompts, tf.string))
    answered = time.perf_counter()
    return {"words": [[w.decode("utf-8") for w in row] for row in out["words"].numpy()],
            "probabilities": out["probabilities"].numpy().tolist()}, \
        loaded - start, answered - loaded


def _litert(directory, prompts, k):
    from serving.litert import LiteRTPredictor

    start = time.perf_counter()
    runner = LiteRTPredictor.load(directory)
    loaded = time.perf_counter()
    words, probs, full = [], [], []
    for prompt in prompts:
        full.append(runner.next_word_distribution(prompt))
        top = runner.top_k(k)
        words.append([w for w, _ in top])
        probs.append([p for _, p in top])
    answered = time.perf_counter()
    return ({"words": words, "probabilities": probs, "full": full,
             "vocabulary": runner.tokenizer.vocabulary},
            runner.manifest, loaded - start, answered - loaded)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """``nwp-serve`` (``python -m serving.rest``) in a subprocess on loopback, serving one
    version of one model; its output goes to a temporary file, quoted when it fails."""

    def __init__(self, model_dir, model_name, version, grpc=True):
        self.name, self.version = model_name, version
        self.rest_port = _free_port()
        self.grpc_port = _free_port() if grpc else 0
        self._tmp = tempfile.TemporaryDirectory(prefix="nwp-parity-server-")
        self.log = open(os.path.join(self._tmp.name, "server.log"), "w+", encoding="utf-8")
        from serving.export import version_dirs

        flags = [f"--port={self.grpc_port}", f"--rest_api_port={self.rest_port}"]
        if version == max(version_dirs(model_dir), default=version):
            flags += [f"--model_name={model_name}", f"--model_base_path={model_dir}"]
        else:  # the server serves the latest version unless a config says otherwise
            config = os.path.join(self._tmp.name, "models.config")
            with open(config, "w", encoding="utf-8") as f:
                f.write(f'model_config_list {{ config {{ name: {json.dumps(model_name)} '
                        f'base_path: {json.dumps(model_dir)} model_platform: "tensorflow" '
                        f'model_version_policy {{ specific {{ versions: {version} }} }} }} }}\n')
            flags += [f"--model_config_file={config}"]
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "serving.rest", *flags],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)
        self.url = f"http://127.0.0.1:{self.rest_port}"
        self.ready_s = None

    def _log_tail(self, chars=1500):
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().strip()
        return text[-chars:] if text else "(no output)"

    def wait_ready(self, timeout_s):
        """Until ``GET /v1/models/<name>`` lists the version as AVAILABLE.

        Raises:
            RuntimeError: the server exited or is not ready after ``timeout_s`` (the message
                quotes its output).
        """
        if self.ready_s is not None:
            return self.ready_s
        deadline = time.monotonic() + timeout_s
        url = f"{self.url}/v1/models/{quote(self.name, safe='')}"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nwp-serve exited with status {self.proc.returncode} "
                                   f"before serving: {self._log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    status = json.loads(resp.read())
                if any(v.get("version") == str(self.version) and v.get("state") == "AVAILABLE"
                       for v in status.get("model_version_status", [])):
                    self.ready_s = time.perf_counter() - self.started
                    return self.ready_s
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"nwp-serve did not serve {self.name} version "
                                   f"{self.version} within {timeout_s:.0f} s: "
                                   f"{self._log_tail()}")
            time.sleep(0.3)

    def stop(self):
        try:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=20)
        finally:
            self.log.close()
            self._tmp.cleanup()


def _rest(server, prompts, chunk=256):
    from serving.client import predict_next_words

    start = time.perf_counter()
    preds = []
    for i in range(0, len(prompts), chunk):
        preds += predict_next_words(server.url, server.name, prompts[i:i + chunk],
                                    version=server.version)
    return ({"words": [p["words"] for p in preds],
             "probabilities": [p["probabilities"] for p in preds]},
            time.perf_counter() - start)


def _grpc(server, prompts, chunk=256):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    start = time.perf_counter()
    words, probs = [], []
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        connected = time.perf_counter()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for i in range(0, len(prompts), chunk):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = server.name
            request.model_spec.version.value = server.version
            request.model_spec.signature_name = "serving_default"
            request.inputs["text"].CopyFrom(
                tf.make_tensor_proto(prompts[i:i + chunk], dtype=tf.string))
            response = stub.Predict(request, timeout=60)
            words += [[w.decode("utf-8") for w in row]
                      for row in tf.make_ndarray(response.outputs["words"])]
            probs += tf.make_ndarray(response.outputs["probabilities"]).tolist()
    return ({"words": words, "probabilities": probs}, connected - start,
            time.perf_counter() - connected)


# -- the report ----------------------------------------------------------------------------

def _check_inputs(run, version_dir, runtimes, k):
    if not os.path.isfile(os.path.join(run, "model.keras")):
        raise ParityError(f"{os.path.join(run, 'model.keras')} is missing: {run} is not a "
                          "training run folder (nwp-train --output writes one).")
    name = os.path.basename(os.path.normpath(version_dir))
    if not os.path.isdir(version_dir) or not name.isdigit() or int(name) < 1:
        raise ParityError(f"{version_dir} is not an exported version folder "
                          "(<model_base_path>/<model_name>/<version>, written by nwp-export).")
    if not os.path.exists(os.path.join(version_dir, "saved_model.pb")):
        raise ParityError(f"{version_dir} has no saved_model.pb: not an nwp-export version.")
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise ParityError(f"unknown runtime(s) {', '.join(unknown)}; choose from "
                          f"{', '.join(RUNTIMES)}.")
    if not isinstance(k, int) or k < 1:
        raise ParityError(f"k must be a positive int, got {k!r}.")


def parity_report(run, version_dir, prompts=DEFAULT_PROMPTS, k=5, runtimes=RUNTIMES,
                  max_prompt_tokens=256, window=256, server_timeout_s=180.0, progress=None):
    """The top-``k`` next words of ``prompts`` from every runtime, compared with the Keras
    model in process.

    Args:
        run: the training run folder (``model.keras``, vocabulary; ``calibration.txt`` for
            int8).
        version_dir: ``<model_base_path>/<model_name>/<version>``: the SavedModel (and maybe
            a LiteRT bundle) exported from ``run``; the server is started on its parent
            folder under the name of that folder.
        prompts: list of ``str``.
        k: words per answer.
        runtimes: names from :data:`RUNTIMES` (``keras`` always runs: it is the reference).
        max_prompt_tokens: tokens of a prompt the Keras model and the LiteRT files converted
            here read (as ``nwp-export --max_prompt_tokens``, default 256).
        window: attention window of the LiteRT files converted here.
        server_timeout_s: how long nwp-serve may take to serve the version.
        progress: None, or a callable given a line of text as each step starts.

    Returns:
        dict: ``run``, ``version_dir``, ``model_name``, ``version``, ``k``, ``prompts``,
        ``reference`` (``"keras"``), ``total_s`` and ``runtimes``: ``{name: row}`` in the
        order of :data:`RUNTIMES`, each row with ``status`` (``ok``, ``skipped``,
        ``refused`` or ``error``), ``message``, ``detail``, ``load_s``, ``answer_s``,
        ``answers`` (``[{"prompt", "words", "probabilities"}]`` or None) and the fields of
        :func:`compare_answers`.

    Raises:
        ParityError: a missing run or version folder, an unknown runtime, a bad ``k``.
    """
    run, version_dir = os.path.abspath(str(run)), os.path.abspath(str(version_dir))
    prompts, runtimes = [str(p) for p in prompts], list(runtimes)
    _check_inputs(run, version_dir, runtimes, k)
    say = progress or (lambda line: None)
    model_dir = os.path.dirname(version_dir)
    model_name, version = os.path.basename(model_dir), int(os.path.basename(version_dir))
    wanted = [r for r in RUNTIMES if r == REFERENCE or r in runtimes]
    answers, rows = {}, {name: None for name in wanted}
    begin = time.perf_counter()

    server = None
    try:
        if "rest" in wanted or "grpc" in wanted:
            say(f"starting nwp-serve for {model_name} version {version} (in the background)")
            server = _Server(model_dir, model_name, version, grpc="grpc" in wanted)

        say(f"keras: loading {run} and answering {len(prompts)} prompts")
        predictor, answers[REFERENCE], load_s, answer_s = _keras(run, prompts, k,
                                                                 max_prompt_tokens)
        rows[REFERENCE] = _row("ok", load_s=load_s, answer_s=answer_s,
                               detail={"reference": True})

        if "saved_model" in wanted:
            say("saved_model: tf.saved_model.load, serving_default")
            try:
                answers["saved_model"], load_s, answer_s = _saved_model(version_dir, prompts)
                rows["saved_model"] = _row("ok", load_s=load_s, answer_s=answer_s)
            except Exception as err:  # noqa: BLE001  one runtime failing is a row, not a crash
                rows["saved_model"] = _row("error", f"{type(err).__name__}: {err}")

        if "litert-bundle" in wanted:
            if not os.path.exists(os.path.join(version_dir, "litert.json")):
                rows["litert-bundle"] = _row(
                    "skipped", f"{version_dir} has no LiteRT bundle (nwp-export --litert).")
            else:
                say("litert-bundle: the bundle in the version folder")
                try:
                    answers["litert-bundle"], manifest, load_s, answer_s = _litert(
                        version_dir, prompts, k)
                    rows["litert-bundle"] = _row(
                        "ok", load_s=load_s, answer_s=answer_s,
                        detail={"quantization": manifest.get("quantization"),
                                "bytes": manifest.get("bytes")})
                except Exception as err:  # noqa: BLE001
                    rows["litert-bundle"] = _row("error", f"{type(err).__name__}: {err}")

        calibration = os.path.join(run, "calibration.txt")
        for quantization in QUANTIZATIONS:
            name = f"litert-{quantization}"
            if name not in wanted:
                continue
            lines = None
            if quantization == "int8":
                if not os.path.exists(calibration):
                    rows[name] = _row("skipped", f"int8 needs representative training text and "
                                                 f"{calibration} does not exist.")
                    continue
                with open(calibration, encoding="utf-8") as f:
                    lines = f.read().splitlines()
            say(f"{name}: converting the run with write_bundle")
            rows[name] = _convert_and_answer(predictor, quantization, lines, prompts, k,
                                             max_prompt_tokens, window, answers, name)

        for name in ("rest", "grpc"):
            if name not in wanted:
                continue
            try:
                if server.ready_s is None:
                    say(f"waiting for nwp-serve on 127.0.0.1:{server.rest_port}")
                server.wait_ready(server_timeout_s)
                say(f"{name}: asking nwp-serve")
                if name == "rest":
                    answers[name], answer_s = _rest(server, prompts)
                    load_s = server.ready_s
                else:
                    answers[name], connect_s, answer_s = _grpc(server, prompts)
                    load_s = server.ready_s + connect_s
                rows[name] = _row("ok", load_s=load_s, answer_s=answer_s,
                                  detail={"url": server.url if name == "rest"
                                          else f"127.0.0.1:{server.grpc_port}",
                                          "server_start_s": server.ready_s})
            except Exception as err:  # noqa: BLE001
                rows[name] = _row("error", f"{type(err).__name__}: {err}")
    finally:
        if server is not None:
            say("stopping nwp-serve")
            server.stop()

    reference = answers[REFERENCE]
    for name, row in rows.items():
        if name not in answers:
            row.update({"max_abs_diff": None, "top_k_mismatches": None, "unresolved": None,
                        "prompts_with_mismatch": None, "order_differs": None})
            continue
        answer = answers[name]
        row["answers"] = [{"prompt": p, "words": list(w)[:k],
                           "probabilities": [float(x) for x in list(pr)[:k]]}
                          for p, w, pr in zip(prompts, answer["words"],
                                              answer["probabilities"])]
        row.update(compare_answers(reference, answer, k))
    return {"run": run, "version_dir": version_dir, "model_name": model_name,
            "version": version, "k": k, "prompts": prompts, "reference": REFERENCE,
            "total_s": time.perf_counter() - begin, "runtimes": rows}


def _convert_and_answer(predictor, quantization, lines, prompts, k, max_prompt_tokens, window,
                        answers, name):
    from serving.litert_export import QuantizationError, write_bundle

    with tempfile.TemporaryDirectory(prefix=f"nwp-parity-{quantization}-") as tmp:
        start = time.perf_counter()
        try:
            manifest = write_bundle(predictor, tmp, quantization=quantization,
                                    representative_lines=lines, window=window,
                                    max_prompt_tokens=max_prompt_tokens, top_k=k)
        except QuantizationError as err:
            return _row("refused", str(err), load_s=time.perf_counter() - start)
        except Exception as err:  # noqa: BLE001  e.g. ConversionError for a design
            return _row("error", f"{type(err).__name__}: {err}",
                        load_s=time.perf_counter() - start)
        convert_s = time.perf_counter() - start
        try:
            answers[name], _, load_s, answer_s = _litert(tmp, prompts, k)
        except Exception as err:  # noqa: BLE001
            return _row("error", f"{type(err).__name__}: {err}", load_s=convert_s)
    detail = {"quantization": quantization, "bytes": manifest["bytes"], "convert_s": convert_s}
    if manifest.get("int8_check"):
        detail["int8_check"] = manifest["int8_check"]
    return _row("ok", load_s=convert_s + load_s, answer_s=answer_s, detail=detail)


# -- output --------------------------------------------------------------------------------

def _show(word):
    return word if word and word.isprintable() and not any(c.isspace() for c in word) \
        else repr(word)


def _seconds(value):
    return "-" if value is None else f"{value:.2f}"


def format_report(report):
    """The report as readable text: per prompt every runtime's words and probabilities,
    then one summary line per runtime."""
    rows = report["runtimes"]
    width = max(len(name) for name in rows) + 2
    lines = [f"{PROG}: {report['model_name']} version {report['version']} "
             f"({report['version_dir']}) against the Keras run {report['run']}; "
             f"top {report['k']}, {len(report['prompts'])} prompts", ""]
    for i, prompt in enumerate(report["prompts"]):
        lines.append(f"prompt {prompt!r}")
        for name, row in rows.items():
            if row["answers"] is None:
                continue
            answer = row["answers"][i]
            lines.append(f"  {name:<{width}}" + "  ".join(
                f"{_show(w)} {p:.4f}" for w, p in zip(answer["words"],
                                                     answer["probabilities"])))
        lines.append("")
    lines.append(f"{'runtime':<{width}}{'status':<9}{'load s':>8}{'answer s':>10}"
                 f"{'max |dp|':>11}{'top-k miss':>12}  note")
    for name, row in rows.items():
        if name == report["reference"]:
            diff, miss, note = "reference", "-", "NextWordPredictor in process"
        elif row["max_abs_diff"] is None and row["answers"] is None:
            diff, miss, note = "-", "-", row["message"] or ""
        else:
            diff = "n/a" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.2e}"
            miss = str(row["top_k_mismatches"])
            notes = []
            if row["detail"].get("quantization"):
                notes.append(f"{row['detail']['quantization']}, {row['detail']['bytes']:,} B")
            if row["detail"].get("server_start_s") is not None:
                notes.append(f"server up in {row['detail']['server_start_s']:.1f} s")
            if row["unresolved"]:
                notes.append(f"{row['unresolved']} word(s) not comparable (no full answer)")
            if row["order_differs"]:
                notes.append(f"order differs in {row['order_differs']} prompt(s)")
            note = "; ".join(notes)
        lines.append(f"{name:<{width}}{row['status']:<9}{_seconds(row['load_s']):>8}"
                     f"{_seconds(row['answer_s']):>10}{diff:>11}{miss:>12}  {note}".rstrip())
    lines.append(f"(max |dp|: the largest absolute probability difference from keras over all "
                 f"prompts, word by word; top-k miss: keras top-{report['k']} words missing "
                 f"from the runtime's; {report['total_s']:.1f} s in all)")
    return "\n".join(lines)


def _jsonable(report):
    def clean(value):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return clean(report)


class _Progress:
    """Step lines on stderr, and every ``interval`` seconds a line saying the step goes on."""

    def __init__(self, stream=None, interval=5.0):
        self.stream, self.interval = stream or sys.stderr, interval
        self.label, self.since, self.last = None, 0.0, 0.0
        self.begin = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _write(self, text):
        print(f"{PROG}: [{time.monotonic() - self.begin:5.0f} s] {text}", file=self.stream,
              flush=True)

    def __call__(self, label):
        with self._lock:
            self.label, self.since = label, time.monotonic()
            self.last = self.since
            self._write(label)

    def _beat(self):
        while not self._stop.wait(0.5):
            with self._lock:
                now = time.monotonic()
                if self.label and now - self.last >= self.interval:
                    self.last = now
                    self._write(f"... {self.label.split(':')[0]} "
                                f"({now - self.since:.0f} s so far)")

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)


def build_parser():
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Top-k next words and probabilities of one exported version from every "
                    "runtime (Keras in process, SavedModel, REST and gRPC on nwp-serve, "
                    "LiteRT), compared with the Keras model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run", required=True, help="the training run folder the version was "
                                                "exported from")
    p.add_argument("--model_base_path", default="saved_models",
                   help="folder of model folders (TF Serving's layout)")
    p.add_argument("--model_name", default="nwp", help="the model's folder and served name")
    p.add_argument("--version", type=int, default=None,
                   help="version number (default: the highest present)")
    p.add_argument("--prompts", nargs="+", default=list(DEFAULT_PROMPTS),
                   help="prompts ('' asks for the first word of a line)")
    p.add_argument("--k", type=int, default=5, help="next words per prompt")
    p.add_argument("--skip", default="",
                   help="comma-separated runtimes to leave out: saved_model, rest, grpc, "
                        "litert (all LiteRT rows), litert-bundle, "
                        + ", ".join(f"litert-{q}" for q in QUANTIZATIONS))
    p.add_argument("--json", metavar="FILE", default=None,
                   help="also write the report as JSON to FILE ('-': stdout, no table)")
    p.add_argument("--max_prompt_tokens", type=int, default=256,
                   help="as nwp-export's: the last N tokens of a prompt are read")
    p.add_argument("--server_timeout", type=float, default=180.0,
                   help="seconds nwp-serve may take to serve the version")
    return p


def _skipped(text):
    names = [s.strip() for s in text.split(",") if s.strip()]
    out = set()
    for name in names:
        if name == "litert":
            out |= {r for r in RUNTIMES if r.startswith("litert-")}
        elif name == REFERENCE:
            raise ParityError("keras is the reference and cannot be skipped.")
        elif name in RUNTIMES:
            out.add(name)
        else:
            raise ParityError(f"--skip: unknown runtime {name!r}; choose from saved_model, "
                              "rest, grpc, litert, litert-bundle, "
                              + ", ".join(f"litert-{q}" for q in QUANTIZATIONS) + ".")
    return out


def _version_dir(args):
    from serving.export import version_dirs

    model_dir = os.path.join(args.model_base_path, args.model_name)
    versions = version_dirs(model_dir)
    if not versions:
        raise ParityError(f"{model_dir} has no version folders (export one with nwp-export "
                          f"--model_base_path {args.model_base_path} --model_name "
                          f"{args.model_name}).")
    version = max(versions) if args.version is None else args.version
    if version not in versions:
        raise ParityError(f"{model_dir} has no version {version} (it has "
                          f"{', '.join(map(str, sorted(versions)))}).")
    return versions[version]


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        if not os.path.isdir(args.run):
            raise ParityError(f"the run folder {args.run} does not exist.")
        skip = _skipped(args.skip)
        version_dir = _version_dir(args)
        _check_inputs(os.path.abspath(args.run), os.path.abspath(version_dir), [], args.k)
    except ParityError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    previous = None
    if threading.current_thread() is threading.main_thread():
        def stop(signum, frame):  # so the finally clauses stop nwp-serve
            raise SystemExit(128 + signum)

        previous = signal.signal(signal.SIGTERM, stop)
    progress = _Progress()
    try:
        report = parity_report(args.run, version_dir, args.prompts, k=args.k,
                               runtimes=[r for r in RUNTIMES if r not in skip],
                               max_prompt_tokens=args.max_prompt_tokens,
                               server_timeout_s=args.server_timeout, progress=progress)
    except ParityError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    finally:
        progress.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    data = json.dumps(_jsonable(report), indent=1)
    if args.json == "-":
        print(data)
    else:
        print(format_report(report))
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                f.write(data + "\n")
    failed = [name for name, row in report["runtimes"].items() if row["status"] == "error"]
    if failed:
        print(f"{PROG}: {', '.join(failed)} failed (see the table)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
