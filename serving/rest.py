"""TF Serving's REST API (aiohttp), over a :class:`serving.servable.ModelManager`.

Endpoints (TF Serving's ``model_servers/http_rest_api_handler.cc``, github.com/tensorflow/serving)::

    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]           model status
    GET  /v1/models/<name>[/versions/<v>|/labels/<l>]/metadata  signature_def map
    GET  /monitoring/prometheus/metrics                         request counts and latency
    POST /v1/models/<name>[/versions/<v>]:predict   {"instances": [...]} or {"inputs": ...}
    POST /v1/models/<name>[/versions/<v>]:classify  {"context": {...}, "examples": [...]}
    POST /v1/models/<name>[/versions/<v>]:regress   (serving.inference)

Errors are ``{"error": "..."}`` with TF Serving's HTTP codes (400 bad request, 404 unknown
model or version, 413 body over ``--max_request_bytes``, 504 past
``--rest_api_timeout_in_ms``). Inputs over ``--max_request_tensor_bytes`` once converted or
over ``--max_request_tokens`` of work get 400 before the model runs (:mod:`serving.limits`);
those over 4096 tokens run ``--max_concurrent_heavy_requests`` at a time (``HeavyGate``).
A bad request never stops the server. Answers are ``Content-Type: application/json``.
:func:`make_app` builds the application; the process around it (flags, start-up, gRPC
beside it, shutdown) is :mod:`serving.server`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
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
from serving.servable import DEFAULT_SIGNATURE, ModelManager, check_rows

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
METHOD_CHECK_KEY = web.AppKey("enable_signature_method_name_check", bool)
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
    tokens = check_tokens(signature_name or DEFAULT_SIGNATURE, inputs, limits["max_tokens"])
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
    signature = pick(servable, signature_name, request.app[METHOD_CHECK_KEY])
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
             gate=None, method_name_check=False):
    """The aiohttp application serving ``manager``'s models (with ``metrics`` and an
    optional :class:`serving.batching.Batcher`; ``web_page``: the page at ``/``).

    Limits: bodies over ``max_request_bytes`` get 413; inputs over ``max_tensor_bytes``
    once converted or over ``max_tokens`` tokens of work get 400 (:mod:`serving.limits`);
    a ``:predict`` not answered within ``timeout_ms`` milliseconds gets 504 (0: no limit),
    one whose body has not arrived by then 408. ``gate``: a :class:`serving.limits.HeavyGate`
    shared with gRPC (default: none, no limit on heavy requests). ``method_name_check``:
    ``:classify``/``:regress`` also require the signature's ``method_name``
    (``--enable_signature_method_name_check``).
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
    app[METHOD_CHECK_KEY] = method_name_check
    app[LIMITS_KEY] = {"max_tensor_bytes": max_tensor_bytes, "max_tokens": max_tokens}
    if web_page:  # GET / and /web/<file>, before the API's catch-all route
        from serving import web_page as web_page_module

        web_page_module.add_routes(app, lambda: list(manager.base_paths), {
            "max_request_bytes": max_request_bytes, "max_request_tokens": max_tokens,
            "prompt_token_cap": MAX_PROMPT_TOKENS})
    app.router.add_route("*", "/{tail:.*}", handle_v1)
    return app


if __name__ == "__main__":  # ``python -m serving.rest`` still starts nwp-serve
    from serving.server import main

    sys.exit(main())
