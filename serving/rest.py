"""``nwp-serve``: a server that speaks TensorFlow Serving's REST API (aiohttp) and, on
``--port``, its gRPC API (``serving.grpc_server``).

Endpoints (TF Serving's ``model_servers/http_rest_api_handler.cc``, github.com/tensorflow/serving)::

    GET  /v1/models/<name>[/versions/<v>]               model status
    GET  /v1/models/<name>[/versions/<v>]/metadata      signature_def map
    GET  /monitoring/prometheus/metrics                 request counts and latency
    POST /v1/models/<name>[/versions/<v>]:predict       {"instances": [...]} or {"inputs": ...}
    POST /v1/models/<name>[/versions/<v>]:classify      {"context": {...}, "examples": [...]}
    POST /v1/models/<name>[/versions/<v>]:regress       (serving.inference)

Errors are ``{"error": "..."}`` with TF Serving's HTTP codes (400 bad request, 404 unknown
model or version, 413 body over ``--max_request_bytes``, 504 past
``--rest_api_timeout_in_ms``). Inputs over ``--max_request_tensor_bytes`` once converted or
over ``--max_request_tokens`` of work get 400 before the model runs (:mod:`serving.limits`);
those over 4096 tokens run ``--max_concurrent_heavy_requests`` at a time (``HeavyGate``).
A bad request never stops the server. Answers are ``Content-Type: application/json``.
Every ``tensorflow_model_server`` flag is accepted in its syntax (``--flag=value``,
booleans bare or ``=true``/``=false``), so the two can be swapped; those with no effect here
(:data:`NO_EFFECT`) are named in one line each at start::

    nwp-serve --port=8500 --rest_api_port=8501 --model_name=nwp \
        --model_base_path=saved_models/nwp

The server binds 127.0.0.1 unless ``--host`` says otherwise, and loads the highest version
under the base path before it starts listening, so an open port means a ready model.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import functools
import json
import logging
import os
import re
import sys
import time
import zlib
from urllib.parse import unquote

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from serving import metrics as metrics_module
from serving.errors import ServingError, invalid
from serving.json_tensor import format_predict_response, parse_predict_request
from serving.limits import (DEFAULT_MAX_REQUEST_TOKENS, DEFAULT_MAX_TENSOR_BYTES,
                            MAX_PROMPT_TOKENS, HeavyGate,
                            array_cost, check_tensor_bytes, check_tokens,
                            tensor_bytes)
from serving.servable import (ModelManager, Servable, check_poll_seconds, check_rows,
                              read_model_config_file)

# tensorflow_serving/model_servers/http_rest_api_util.cc
_POST_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE)
_GET_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)

MANAGER_KEY = web.AppKey("manager", ModelManager)
LIMIT_KEY = web.AppKey("max_batch_size_per_request", int)
METRICS_KEY = web.AppKey("metrics", metrics_module.ServerMetrics)
BATCHER_KEY = web.AppKey("batcher", object)
CORS_KEY = web.AppKey("cors", bool)
LIMITS_KEY = web.AppKey("limits", dict)
BODY_LIMIT_KEY = web.AppKey("max_request_bytes", int)
TIMEOUT_KEY = web.AppKey("rest_api_timeout_in_ms", int)
GATE_KEY = web.AppKey("heavy_gate", HeavyGate)
PHASE_KEY = web.RequestKey("phase", str)
_INT64_MAX = 2 ** 63 - 1


def _cors_headers(app):
    if not app[CORS_KEY]:
        return {}
    return {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "POST, GET",
            "Access-Control-Allow-Headers": "Content-Type"}


def _error(err):
    return web.json_response({"error": err.message}, status=err.http_status)


def _version(text):
    if text is None:
        return None
    if len(text) > 19 or int(text) > _INT64_MAX:
        raise invalid(f"Failed to convert version: {text} to numeric.")
    return int(text)


def _first_key_wins(pairs):
    """rapidjson's ``FindMember`` returns the first of duplicate keys; so do we."""
    obj = {}
    for key, value in pairs:
        obj.setdefault(key, value)
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_first_key_wins)


def _parse_json(raw):
    """Parse a request body like TF Serving (rapidjson with kParseStopWhenDoneFlag).

    Errors are 400 ``JSON Parse error: ...``; text after the first complete JSON value is
    ignored, as TF Serving ignores it; of duplicate keys the first wins.
    """
    if not raw.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        text = raw.decode("utf-8")
        start = len(text) - len(text.lstrip())
        return _DECODER.raw_decode(text, start)[0]
    except UnicodeDecodeError as err:
        raise invalid(f"JSON Parse error: Invalid encoding in string. ({err.reason})") from None
    except json.JSONDecodeError as err:
        raise invalid(f"JSON Parse error: {err.msg} at offset: {err.pos}") from None
    except RecursionError:
        raise invalid("JSON Parse error: nesting too deep") from None
    except ValueError as err:  # e.g. an integer literal of more than 4300 digits
        raise invalid(f"JSON Parse error: {err}") from None


OFF_LOOP_BYTES = 64 << 10  # bodies this large are parsed in a worker thread


async def _off_loop(fn, *args, heavy=None):
    """``fn(*args)``, in the default executor when the body is over :data:`OFF_LOOP_BYTES`
    (``heavy``: its size; for ``_parse_json`` the raw body itself), so that parsing a large
    body does not stall other requests on the event loop."""
    size = heavy if heavy is not None else (len(args[0]) if isinstance(args[0], bytes) else 0)
    if size < OFF_LOOP_BYTES:
        return fn(*args)
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def _read_body(request):
    """The request body, decompressed as its Content-Encoding says.

    Raises:
        ServingError: INVALID_ARGUMENT (400) for a body that does not decompress.
        web.HTTPRequestEntityTooLarge: the body is over ``--max_request_bytes``.
    """
    try:
        return await request.read()
    except RequestPayloadError as err:
        cause = err.__cause__ or err.__context__
        if not _undecodable_body(err):
            raise ConnectionResetError(f"request body not received: {err}") from None
        raise invalid(f"Cannot decode the request body (Content-Encoding: "
                      f"{request.headers.get('Content-Encoding', 'none')}): {cause}. Send it "
                      "uncompressed or correctly encoded.") from None


def _undecodable_body(exc):
    """True for aiohttp's error on a request body that does not decompress."""
    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, RequestPayloadError) and isinstance(
        cause, (ContentEncodingError, zlib.error))


class _BadRequestLogs(logging.Filter):
    """Keep bad requests from filling aiohttp's log with tracebacks (each one a page of log
    for anyone sending them):

    * a malformed HTTP message (bad chunk size, unknown Content-Encoding, data after
      ``Connection: close``, ...), which aiohttp answers 400 itself, is logged as one
      WARNING line naming the client and the first line of the reason, no traceback and
      none of the request's bytes;
    * aiohttp's "Unhandled exception" for a body that did not decompress, raised again while
      aiohttp drains the rest of the body after :func:`_read_body`'s 400 went out, is
      dropped.
    """

    def filter(self, record):
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        if _undecodable_body(exc):
            return False
        if isinstance(exc, HttpProcessingError):
            reason = next((line.strip() for line in str(exc.message).splitlines()
                           if line.strip()), "")
            record.msg = "bad HTTP request from %s (answered %s): %s"
            record.args = (record.args[0] if record.args else "?", exc.code, reason[:200])
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_LOG_FILTER = _BadRequestLogs()


async def _with_deadline(request, work):
    """Await ``work`` within ``--rest_api_timeout_in_ms`` (TF Serving's flag; counted from
    the start of the request, body included; 0: none).

    Raises:
        ServingError: DEADLINE_EXCEEDED (HTTP 504) if the model run (or parsing) does not
            finish in time, as TF Serving's timed-out graph run; the run itself finishes in
            its worker thread and its answer is dropped.
        web.HTTPRequestTimeout: 408 if the body did not arrive in time (a slow client).
    """
    timeout_ms = request.app[TIMEOUT_KEY]
    if not timeout_ms:
        return await work
    try:
        return await asyncio.wait_for(work, timeout_ms / 1000)
    except TimeoutError:
        if request.get(PHASE_KEY) == "body":
            raise web.HTTPRequestTimeout(
                text=json.dumps({"error": f"The request body did not arrive within {timeout_ms} "
                                          "ms (--rest_api_timeout_in_ms)."}),
                content_type="application/json") from None
        raise ServingError("DEADLINE_EXCEEDED",
                           f"Deadline exceeded: the request took more than {timeout_ms} ms "
                           "(--rest_api_timeout_in_ms). Send fewer or shorter prompts, or "
                           "raise the flag.") from None


async def handle_get(request, path):
    match = _GET_RE.fullmatch(path)
    if not match:
        raise invalid(f"Malformed request: GET {path}")
    name, version, label, metadata = match.groups()
    if name is None:
        raise invalid("Missing model name in request.")
    manager = request.app[MANAGER_KEY]
    name = request["model_name"] = unquote(name)
    version = _version(version)
    if metadata == "metadata":
        servable = manager.get(name, version, unquote(label) if label else None)
        return web.json_response(servable.metadata())
    if label:  # the labelled version's status (TF Serving resolves the label first)
        version = manager.get(name, label=unquote(label)).version
    return web.json_response(manager.status(name, version))


async def handle_post(request, path):
    match = _POST_RE.fullmatch(path)
    if not match or match.group(4) not in ("predict", "classify", "regress"):
        raise invalid(f"Malformed request: POST {path}")
    name, version, label, verb = match.groups()
    name, version = unquote(name), _version(version)
    request["model_name"] = name
    label = unquote(label) if label else None
    request[PHASE_KEY] = "body"
    raw = await _read_body(request)
    request[PHASE_KEY] = "run"
    body = await _off_loop(_parse_json, raw)
    if not isinstance(body, dict):
        raise invalid(f"JSON Value: {json.dumps(body)[:200]} Is not object")
    signature_name = body.get("signature_name", "")
    if not isinstance(signature_name, str):
        raise invalid("'signature_name' key must be a string value.")
    servable = request.app[MANAGER_KEY].get(name, version, label)
    if verb != "predict":  # tensorflow_serving/util/json_tensor.cc order of checks
        examples = body.get("examples")
        if "examples" not in body:
            raise invalid("When method is classify, key 'examples' is expected and was not "
                          "found")
        if not isinstance(examples, list):
            raise invalid("'examples' value is not a list/array")
        if not examples:
            raise invalid("'examples' value is an empty array")
        return await _classify_or_regress(request, servable, verb, signature_name, body,
                                          len(raw))
    inputs, row_format = await _off_loop(parse_predict_request, body,
                                         servable.input_dtypes(signature_name),
                                         heavy=len(raw))
    check_rows({alias: array.shape for alias, array in inputs.items()}, request.app[LIMIT_KEY])
    limits = request.app[LIMITS_KEY]
    check_tensor_bytes({alias: array_cost(a) for alias, a in inputs.items()},
                       limits["max_tensor_bytes"])
    tokens = check_tokens(signature_name or "serving_default", inputs, limits["max_tokens"])
    batcher = request.app[BATCHER_KEY]

    def start():
        if batcher is not None:  # waits on the loop; the batch thread wakes it
            return batcher.submit_async(servable, signature_name, inputs)
        return asyncio.get_running_loop().run_in_executor(
            None, servable.predict, signature_name, inputs)

    outputs = await request.app[GATE_KEY].run(tokens, start)
    return web.json_response(format_predict_response(outputs, row_format))


async def _classify_or_regress(request, servable, verb, signature_name, body, size):
    """``:classify`` / ``:regress`` (:mod:`serving.inference`): ``{"results": ...}``.

    Raises:
        ServingError: INVALID_ARGUMENT for a signature of the wrong kind, examples that do
            not convert or parse, more examples than ``--max_batch_size_per_request`` or
            more bytes than ``--max_request_tensor_bytes``.
    """
    from serving import inference

    pick = (inference.classification_signature if verb == "classify"
            else inference.regression_signature)
    signature = pick(servable, signature_name)
    serialized = await _off_loop(inference.examples_from_json, body, heavy=size)
    check_rows({"examples": (len(serialized),)}, request.app[LIMIT_KEY])
    check_tensor_bytes({"examples": tensor_bytes(len(serialized), None,
                                                 sum(map(len, serialized)))},
                       request.app[LIMITS_KEY]["max_tensor_bytes"])
    loop = asyncio.get_running_loop()
    if verb == "classify":
        classes, scores = await loop.run_in_executor(None, inference.classify, servable,
                                                     signature, serialized)
        return web.json_response({"results": inference.classification_json(classes, scores)})
    values = await loop.run_in_executor(None, inference.regress, servable, signature,
                                        serialized)
    return web.json_response({"results": values.tolist()})


async def handle_v1(request):
    path = request.rel_url.raw_path
    metrics = request.app[METRICS_KEY]
    if path == metrics_module.PATH and request.method == "GET":
        return web.Response(body=metrics.exposition(),
                            headers={"Content-Type": metrics_module.CONTENT_TYPE})
    if not path.lower().startswith("/v1/"):
        raise web.HTTPNotFound()  # TF Serving's HTTP layer: only (?i)/v1/.* reaches the API
    if request.method == "OPTIONS":  # CORS preflight (http_server.cc)
        origin = request.headers.get("Origin", "")
        if not re.match(r"https?://", origin):
            return web.Response(status=400, reason="Origin header is missing in CORS preflight")
        return web.Response(status=200, headers=_cors_headers(request.app))
    started = time.perf_counter()
    status = "OK"
    try:
        if request.method == "GET":
            return await handle_get(request, path)
        if request.method == "POST":
            return await _with_deadline(request, handle_post(request, path))
        raise invalid(f"Malformed request: {request.method} {path}")
    except ServingError as err:
        status = err.code
        return _error(err)
    except web.HTTPRequestEntityTooLarge:
        status = "RESOURCE_EXHAUSTED"
        limit = request.app[BODY_LIMIT_KEY]
        return web.json_response(
            {"error": f"Request body too large: more than {limit} bytes (--max_request_bytes). "
                      "Split the request or raise the flag."}, status=413)
    except web.HTTPRequestTimeout:
        status = "DEADLINE_EXCEEDED"
        raise
    except (ConnectionError, asyncio.CancelledError) as err:  # the client hung up
        status = "CANCELLED"
        request.app.logger.info("client %s hung up during %s %s (%s)", request.remote,
                                request.method, path, type(err).__name__)
        raise
    except BaseException:
        status = "INTERNAL"
        raise
    finally:
        verb = path.rsplit(":", 1)[-1] if ":" in path.rsplit("/", 1)[-1] else ""
        api = verb if verb in ("predict", "classify", "regress") else (
            "metadata" if path.endswith("/metadata") else "status")
        name = request.get("model_name")  # only configured models get their own series
        metrics.observe(name if request.app[MANAGER_KEY].known(name) else "", api, "REST",
                        status, time.perf_counter() - started)


@web.middleware
async def errors_as_json(request, handler):
    """Turn aiohttp's own errors (body too large, ...) and surprises into JSON errors."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge as err:
        return web.json_response({"error": f"Request body too large: {err.text}"},
                                 status=413)
    except web.HTTPException:
        raise
    except ConnectionError:  # the client hung up (logged in one line by handle_v1)
        return web.json_response({"error": "The client closed the connection."}, status=499)
    except Exception as err:  # noqa: BLE001  a server must answer, never die
        request.app.logger.exception("internal error")
        return web.json_response({"error": f"Internal error: {type(err).__name__}: {err}"},
                                 status=500)


def make_app(manager, max_request_bytes=8 << 20, max_batch_size_per_request=1024,
             metrics=None, batcher=None, cors=False, max_tensor_bytes=DEFAULT_MAX_TENSOR_BYTES,
             max_tokens=DEFAULT_MAX_REQUEST_TOKENS, timeout_ms=30000, web_page=False,
             gate=None):
    """The aiohttp application serving ``manager``'s models (with ``metrics`` and an
    optional :class:`serving.batching.Batcher`; ``web_page``: the page at ``/``).

    Limits: bodies over ``max_request_bytes`` get 413; inputs over ``max_tensor_bytes``
    once converted or over ``max_tokens`` tokens of work get 400 (:mod:`serving.limits`);
    a ``:predict`` not answered within ``timeout_ms`` milliseconds gets 504 (0: no limit),
    one whose body has not arrived by then 408. ``gate``: a :class:`serving.limits.HeavyGate`
    shared with gRPC (default: none, no limit on heavy requests).
    """
    app = web.Application(client_max_size=max_request_bytes, middlewares=[errors_as_json])
    server_log = logging.getLogger("aiohttp.server")
    if _LOG_FILTER not in server_log.filters:
        server_log.addFilter(_LOG_FILTER)
    app[MANAGER_KEY] = manager
    app[BATCHER_KEY] = batcher
    app[CORS_KEY] = cors

    async def add_headers(request, response):
        response.headers.update(_cors_headers(request.app))
        # TF Serving answers "Content-Type: application/json" (http_rest_api_util.cc),
        # aiohttp adds "; charset=utf-8"; the bodies are ASCII (json.dumps escapes the rest).
        if response.headers.get("Content-Type", "").startswith("application/json;"):
            response.headers["Content-Type"] = "application/json"

    app.on_response_prepare.append(add_headers)

    async def threads(app):  # requests wait in threads while a batch fills
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=128, thread_name_prefix="rest"))

    app.on_startup.append(threads)
    app[METRICS_KEY] = metrics or metrics_module.ServerMetrics()
    app[LIMIT_KEY] = max_batch_size_per_request
    app[BODY_LIMIT_KEY] = max_request_bytes
    app[TIMEOUT_KEY] = timeout_ms
    app[GATE_KEY] = gate or HeavyGate(0)
    app[LIMITS_KEY] = {"max_tensor_bytes": max_tensor_bytes, "max_tokens": max_tokens}
    if web_page:  # GET / and /web/<file>, before the API's catch-all route
        from serving import web_page as web_page_module

        web_page_module.add_routes(app, lambda: list(manager.base_paths), {
            "max_request_bytes": max_request_bytes, "max_request_tokens": max_tokens,
            "prompt_token_cap": MAX_PROMPT_TOKENS})
    app.router.add_route("*", "/{tail:.*}", handle_v1)
    return app


def tf_bool(text):
    """A boolean flag's value as tensorflow_model_server reads it (TensorFlow's
    ``command_line_flags.cc``, ``ParseBoolFlag``): ``true``/``false`` in any case, ``1``/``0``;
    the bare flag means true."""
    if text.lower() == "true" or text == "1":
        return True
    if text.lower() == "false" or text == "0":
        return False
    raise argparse.ArgumentTypeError(f"expected true, false, 1 or 0, got {text!r}")


def _bool_flag(parser, name, help, default=False):
    """``--name``, ``--name=true``, ``--name=false``: TF Serving's boolean flag syntax."""
    parser.add_argument(f"--{name}", type=tf_bool, nargs="?", const=True, default=default,
                        metavar="true|false", help=help)


# tensorflow_model_server flags (tensorflow_serving/model_servers/main.cc) that nwp-serve
# accepts but does not act on: (type, why). Given one, the server says so in one line at
# start and serves on; a flag no one knows still fails at start.
_NO_RETRY = "a version that failed to load is tried again only once its folder changes"
NO_EFFECT = {
    "rest_api_num_threads": (int, "REST requests are served on one asyncio event loop"),
    "allow_version_labels_for_unavailable_models": (
        tf_bool, "a version label must point at an available version here"),
    "enable_per_model_batching_parameters": (
        tf_bool, "one --batching_parameters_file applies to every model"),
    "num_load_threads": (int, "versions load one at a time in the polling thread"),
    "num_unload_threads": (int, "versions unload in the polling thread"),
    "max_num_load_retries": (int, _NO_RETRY),
    "load_retry_interval_micros": (int, _NO_RETRY),
    "flush_filesystem_caches": (tf_bool, "models are read from local files with no cache to "
                                         "flush"),
    "tensorflow_session_config_file": (
        str, "TensorFlow 2 runs no Session here; use --tensorflow_intra_op_parallelism and "
             "--tensorflow_inter_op_parallelism"),
    "platform_config_file": (str, "only the TensorFlow (SavedModel) platform is served"),
    "per_process_gpu_memory_fraction": (float, "TensorFlow's default GPU memory policy "
                                               "applies"),
    "saved_model_tags": (str, "the MetaGraph tagged 'serve' is always loaded"),
    "grpc_max_threads": (int, "gRPC runs on grpc.aio's event loop, not a thread pool"),
    "enable_model_warmup": (tf_bool, "warmup records (assets.extra/tf_serving_warmup_requests) "
                                     "are not replayed"),
    "num_request_iterations_for_warmup": (int, "warmup records are not replayed"),
    "monitoring_config_file": (str, "Prometheus metrics are always served at "
                                    "/monitoring/prometheus/metrics"),
    "remove_unused_fields_from_bundle_metagraph": (
        tf_bool, "only the signature_def map of the MetaGraph is kept"),
    "num_tflite_pools": (int, "one LiteRT interpreter per version answers serving_default "
                              "(--prefer_tflite_model), one prompt at a time"),
    "num_tflite_interpreters_per_pool": (int, "one LiteRT interpreter per version answers "
                                              "serving_default (--prefer_tflite_model)"),
    "enable_signature_method_name_check": (
        tf_bool, "classify/regress signatures are recognised by their inputs and outputs, "
                 "as TF Serving does by default"),
    "xla_cpu_compilation_enabled": (tf_bool, "XLA JIT is left at TensorFlow's default"),
    "xla_gpu_compilation_enabled": (tf_bool, "XLA JIT is left at TensorFlow's default"),
    "enable_profiler": (tf_bool, "there is no profiler service"),
    "thread_pool_factory_config_file": (
        str, "thread pools are sized by --tensorflow_intra_op_parallelism and "
             "--tensorflow_inter_op_parallelism"),
    "mixed_precision": (str, "models run in the precision they were exported in"),
    "skip_initialize_tpu": (tf_bool, "there is no TPU support"),
    "enable_grpc_healthcheck_service": (
        tf_bool, "the grpc.health.v1 service needs grpcio-health-checking, not a dependency; "
                 "probe GET /v1/models/<name> or ModelService.GetModelStatus instead"),
}
# Flags that would make TF Serving encrypt gRPC: refused when set, since serving plaintext
# to clients that expect TLS or ALTS would be a silent downgrade.
REFUSED = {"use_alts_credentials": tf_bool, "ssl_config_file": str}


def build_parser():
    p = argparse.ArgumentParser(
        prog="nwp-serve", usage="nwp-serve [--flag=value ...] (nwp-serve --help lists them)",
        description="Serve SavedModels over TensorFlow Serving's REST and gRPC APIs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False)  # as tensorflow_model_server: --enable_b is not --enable_batching
    p.add_argument("--rest_api_port", type=int, default=8501, help="REST port")
    p.add_argument("--port", type=int, default=8500,
                   help="gRPC port (TF Serving's PredictionService and ModelService); 0: off")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; 0.0.0.0 exposes the server to the network")
    p.add_argument("--model_name", default="nwp", help="the name clients ask for")
    p.add_argument("--model_base_path", default="saved_models/nwp",
                   help="folder holding numbered version folders (1/, 2/, ...)")
    p.add_argument("--model_config_file", default=None,
                   help="ModelServerConfig text proto (several models, version policies, "
                        "labels); replaces --model_name/--model_base_path")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                   help="how often to look for new versions; 0 loads once")
    p.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0,
                   help="how often to read --model_config_file again and add, remove or "
                        "change models (new ones load before removed ones unload; an invalid "
                        "file keeps the current models, with the error in the log and the "
                        "status); 0 reads it once")
    p.add_argument("--grpc_socket_path", default="",
                   help="also serve gRPC on this Unix socket (relative or absolute path)")
    p.add_argument("--grpc_channel_arguments", default="",
                   help="grpcio server options, comma separated key=value (e.g. "
                        "grpc.max_connection_age_ms=2000); int values are passed as ints")
    _bool_flag(p, "enable_serialization_as_tensor_content",
               "gRPC Predict answers numbers in tensor_content instead of float_val, "
               "int64_val, ... (strings stay in string_val)")
    p.add_argument("--version", action="store_true",
                   help="print nwp-serve's and TensorFlow's versions and exit")
    _bool_flag(p, "enable_batching", "batch concurrent predict requests (TF Serving's flag)")
    _bool_flag(p, "prefer_tflite_model",
               "answer serving_default with the version's LiteRT bundle (model.tflite, "
               "nwp-export --litert) when it has one; other signatures run in the SavedModel")
    p.add_argument("--batching_parameters_file", default=None,
                   help="BatchingParameters text proto: max_batch_size, batch_timeout_micros, "
                        "num_batch_threads, max_enqueued_batches")
    _bool_flag(p, "rest_api_enable_cors_support",
               "add CORS headers to REST answers (browsers on other origins)")
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                   help="threads one TensorFlow op may use (0: TensorFlow chooses)")
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                   help="TensorFlow ops run at once (0: TensorFlow chooses)")
    p.add_argument("--tensorflow_session_parallelism", type=int, default=0,
                   help="both of the above at once, used when neither is set (0: TensorFlow "
                        "chooses)")
    p.add_argument("--max_request_bytes", type=int, default=8 << 20,
                   help="larger request bodies get 413 (REST) or RESOURCE_EXHAUSTED (gRPC)")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                   help="REST requests not answered in this many milliseconds get 504 "
                        "(408 if the body is still arriving); 0: no limit (TF Serving's flag)")
    p.add_argument("--max_request_tensor_bytes", type=int, default=DEFAULT_MAX_TENSOR_BYTES,
                   help="requests whose inputs would take more memory once converted get 400 "
                        "(a string costs 64 bytes + its length, a number its size)")
    p.add_argument("--max_request_tokens", type=int, default=DEFAULT_MAX_REQUEST_TOKENS,
                   help="requests asking for more tokens of model work (prompt tokens, at most "
                        "256 a prompt, + generate's max_new_tokens) get 400")
    p.add_argument("--max_concurrent_heavy_requests", type=int, default=1,
                   help="requests estimated at over 4096 tokens of model work run at most this "
                        "many at a time (REST and gRPC together); the others wait, and one "
                        "whose client hangs up meanwhile never runs; 0: no limit")
    p.add_argument("--max_batch_size_per_request", type=int, default=1024,
                   help="requests with more rows (prompts) get 400; bounds memory per request")
    p.add_argument("--no_web_page", action="store_true",
                   help="do not serve the page at / (type with suggestions, generate, "
                        "surprisal; it calls only the REST API)")
    quiet = p.add_argument_group(
        "tensorflow_model_server flags with no effect here (accepted; each one given is "
        "named in one line at start)")
    for name, (kind, why) in NO_EFFECT.items():
        if kind is tf_bool:
            quiet.add_argument(f"--{name}", type=tf_bool, nargs="?", const=True,
                               metavar="true|false", help=why)
        else:
            quiet.add_argument(f"--{name}", type=kind, help=why)
    for name, kind in REFUSED.items():
        p.add_argument(f"--{name}", type=kind, nargs="?" if kind is tf_bool else None,
                       const=True if kind is tf_bool else None,
                       metavar="true|false" if kind is tf_bool else None,
                       help="refused if set: nwp-serve serves plaintext gRPC only")
    return p


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:  # tensorflow_model_server --version: both versions, exit 0
        from importlib.metadata import PackageNotFoundError, version

        import tensorflow as tf

        try:
            ours = version("nwp-zoo")
        except PackageNotFoundError:
            ours = "unknown (not installed)"
        print(f"nwp-serve: {ours}\nTensorFlow Library: {tf.__version__}")
        return 0
    if args.use_alts_credentials or args.ssl_config_file:
        parser.error("--use_alts_credentials and --ssl_config_file are not supported: "
                     "nwp-serve serves plaintext gRPC only (put a TLS proxy in front)")
    for name in NO_EFFECT:
        if getattr(args, name) is not None:
            print(f"nwp-serve: --{name} has no effect here: {NO_EFFECT[name][1]}",
                  file=sys.stderr, flush=True)
    from serving.grpc_server import parse_channel_arguments

    try:
        channel_arguments = parse_channel_arguments(args.grpc_channel_arguments)
    except ValueError as err:
        parser.error(str(err))
    for flag in ("rest_api_port", "port"):
        if not 0 <= getattr(args, flag) <= 65535:
            parser.error(f"--{flag} must be in 0..65535, got {getattr(args, flag)}")
    for flag in ("max_batch_size_per_request", "max_request_bytes", "max_request_tensor_bytes",
                 "max_request_tokens"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.max_concurrent_heavy_requests < 0:
        parser.error(f"--max_concurrent_heavy_requests must be >= 0 (0: no limit), got "
                     f"{args.max_concurrent_heavy_requests}")
    if not 0 <= args.rest_api_timeout_in_ms <= 86_400_000:
        parser.error(f"--rest_api_timeout_in_ms must be in 0..86400000 (0: no limit), got "
                     f"{args.rest_api_timeout_in_ms}")
    if args.max_request_bytes > (1 << 31) - 1:  # grpcio's message limit is an int32
        parser.error(f"--max_request_bytes must be at most {(1 << 31) - 1}, got "
                     f"{args.max_request_bytes}")
    for flag in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism",
                 "tensorflow_session_parallelism"):
        if not 0 <= getattr(args, flag) <= 4096:
            parser.error(f"--{flag} must be in 0..4096 (0: TensorFlow chooses), got "
                         f"{getattr(args, flag)}")
    if (args.tensorflow_session_parallelism and args.tensorflow_intra_op_parallelism
            and args.tensorflow_inter_op_parallelism):  # TF Serving's server.cc refuses too
        parser.error("set --tensorflow_session_parallelism or --tensorflow_intra_op_parallelism"
                     " and --tensorflow_inter_op_parallelism, not all three")
    try:
        check_poll_seconds(args.file_system_poll_wait_seconds)
        check_poll_seconds(args.model_config_file_poll_wait_seconds,
                           "model_config_file_poll_wait_seconds")
    except ValueError as err:
        parser.error(str(err))
    if args.model_config_file_poll_wait_seconds and not args.model_config_file:
        print("nwp-serve: --model_config_file_poll_wait_seconds has no effect without "
              "--model_config_file", file=sys.stderr, flush=True)
    if args.batching_parameters_file and not args.enable_batching:
        parser.error("--batching_parameters_file needs --enable_batching (as in TF Serving)")
    batcher = None
    if args.enable_batching:
        from serving.batching import DEFAULTS, Batcher, read_batching_parameters

        try:
            params = (read_batching_parameters(args.batching_parameters_file)
                      if args.batching_parameters_file else dict(DEFAULTS))
        except ValueError as err:
            parser.error(str(err))
        batcher = Batcher(**params)
    if not (args.tensorflow_intra_op_parallelism or args.tensorflow_inter_op_parallelism):
        # TF Serving's server.cc: session parallelism sizes both pools when neither is set
        args.tensorflow_intra_op_parallelism = args.tensorflow_session_parallelism
        args.tensorflow_inter_op_parallelism = args.tensorflow_session_parallelism
    if args.tensorflow_intra_op_parallelism or args.tensorflow_inter_op_parallelism:
        import tensorflow as tf  # must be set before TensorFlow runs its first op

        tf.config.threading.set_intra_op_parallelism_threads(
            args.tensorflow_intra_op_parallelism)
        tf.config.threading.set_inter_op_parallelism_threads(
            args.tensorflow_inter_op_parallelism)
    try:
        loader = functools.partial(Servable, prefer_tflite=args.prefer_tflite_model)
        if args.model_config_file:
            manager = ModelManager(read_model_config_file(args.model_config_file), loader)
        else:
            manager = ModelManager({args.model_name: os.path.abspath(args.model_base_path)},
                                   loader)
        manager.load()
    except Exception as err:  # noqa: BLE001  any load failure: say what and where, exit 2
        print(f"nwp-serve: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    def announce(_aiohttp_banner):  # called by run_app once the REST port is bound
        for name, base in manager.base_paths.items():
            versions = [s["version"] for s in manager.status(name)["model_version_status"]
                        if s["state"] == "AVAILABLE"]
            print(f"serving model {name!r} version(s) {', '.join(versions)} from {base} at "
                  f"http://{args.host}:{args.rest_api_port}/v1/models/{name}", flush=True)
            if args.prefer_tflite_model:
                lite = [v for v in versions if manager.get(name, int(v)).litert is not None]
                print(f"  --prefer_tflite_model: serving_default of version(s) "
                      f"{', '.join(lite) or 'none (no model.tflite)'} answered by LiteRT",
                      flush=True)
    manager.start_polling(args.file_system_poll_wait_seconds)
    if args.model_config_file:
        manager.start_config_polling(args.model_config_file,
                                     args.model_config_file_poll_wait_seconds)
    metrics = metrics_module.ServerMetrics()
    gate = HeavyGate(args.max_concurrent_heavy_requests)
    app = make_app(manager, args.max_request_bytes, args.max_batch_size_per_request, metrics,
                   batcher, args.rest_api_enable_cors_support, args.max_request_tensor_bytes,
                   args.max_request_tokens, args.rest_api_timeout_in_ms,
                   web_page=not args.no_web_page, gate=gate)
    if args.port or args.grpc_socket_path:
        servers = []

        async def grpc_api(app):  # gRPC on the REST server's event loop, up before REST
            from serving.grpc_server import make_grpc_server

            server = make_grpc_server(manager, args.host, args.port, metrics=metrics,
                                      batcher=batcher, max_rows=args.max_batch_size_per_request,
                                      max_request_bytes=args.max_request_bytes,
                                      max_tensor_bytes=args.max_request_tensor_bytes,
                                      max_tokens=args.max_request_tokens,
                                      tensor_content=args.enable_serialization_as_tensor_content,
                                      socket_path=args.grpc_socket_path or None,
                                      channel_arguments=channel_arguments, gate=gate)
            await server.start()
            servers.append(server)
            if args.port:
                print(f"gRPC on {args.host}:{args.port}", flush=True)
            if args.grpc_socket_path:
                print(f"gRPC on unix:{args.grpc_socket_path}", flush=True)
            yield
            await server.stop(grace=30)

        async def drain_grpc(app):  # at shutdown, while REST finishes its requests too
            for server in servers:
                await server.stop(grace=30)  # calls in flight finish; new ones: UNAVAILABLE

        app.cleanup_ctx.append(grpc_api)
        app.on_shutdown.append(drain_grpc)
    if batcher is not None:
        async def hurry_batches(app):  # requests in flight need not wait for batch-mates now
            batcher.hurry()

        app.on_shutdown.insert(0, hurry_batches)
    try:
        # handler_cancellation: a client that hangs up cancels its handler, so a request
        # still waiting (for a HeavyGate slot, a batch, a worker thread) never runs
        web.run_app(app, host=args.host, port=args.rest_api_port, print=announce,
                    shutdown_timeout=10.0, handler_cancellation=True,
                    keepalive_timeout=75.0)  # idle connections (no request yet, too)
    except OSError as err:
        print(f"nwp-serve: error: cannot listen on {args.host}: {err}", file=sys.stderr)
        return 2
    finally:
        manager.stop_polling()
        if batcher is not None:
            batcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
