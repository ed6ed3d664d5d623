"""Property-based fuzzing of a running nwp-serve, REST and gRPC (hypothesis).

REST requests go out over raw loopback sockets, so that the framing can be fuzzed too: any
method, a path (TF Serving's and random ones, percent-encoded bytes), a body (JSON of any
shape, ``:predict`` bodies for every signature with odd values, random bytes), a
``Content-Encoding`` (none, gzip, deflate, gzip of garbage, unknown) and a framing
(``Content-Length`` right, too small, too large, absent; ``Transfer-Encoding: chunked``
right or broken; both at once). gRPC ``Predict`` requests get any model spec, signature,
input aliases, DataType (every enum value and unknown ones), dims (negative, zero, huge),
``string_val`` counts and sizes, typed values and ``tensor_content``.

What must hold: no REST 5xx, no gRPC UNKNOWN or INTERNAL, a well-framed REST request always
gets an answer (a request whose body is cut short may go unanswered: the client hangs up),
and the server answers a plain ``:predict`` after the run. The server's resident memory
(VmRSS from /proc) is read after a warm-up and after the run.

Usage (starts its own nwp-serve on loopback, on the given export or on a tiny model it
trains and exports first, in about 20 s)::

    python benchmarks/fuzz_server.py --rest 10000 --grpc 2000
    python benchmarks/fuzz_server.py --model_base_path saved_models/ptb --rest 2000 --grpc 500

The test suite (``tests/serving/test_fuzz.py``) runs the same strategies at a few hundred
cases.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = "nwp"

# ---------------------------------------------------------------- REST strategies

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)

_WORDS = st.sampled_from(["the", "company", "said", "", " ", "mr.", "<unk>", "<eos>", "é",
                          "\x00", "the " * 40, "\ud7ff", "\U0001f600"])
_PROMPT = st.one_of(_WORDS, st.text(max_size=30), st.lists(_WORDS, max_size=12).map(" ".join))
_NUMBER = st.one_of(st.integers(-2 ** 40, 2 ** 40), st.sampled_from([0, 1, 5, 256, 257, -1]),
                    st.floats(allow_nan=False, allow_infinity=False, width=32))
_GEN_INPUTS = {"max_new_tokens": st.integers(-5, 300) | _NUMBER,
               "temperature": _NUMBER, "top_k": st.integers(-3, 500) | _NUMBER,
               "top_p": _NUMBER, "seed": _NUMBER}


def _predict_body(draw):
    """A ``:predict`` body near the valid ones: right signature, row or columnar format,
    some inputs missing, odd values, extra keys."""
    signature = draw(st.sampled_from(["", "serving_default", "score", "generate", "nope"]))
    rows = draw(st.integers(0, 6))
    texts = [draw(_PROMPT) for _ in range(rows)]
    body = {}
    if signature or draw(st.booleans()):
        body["signature_name"] = signature
    extra = {}
    if signature == "generate" or draw(st.integers(0, 9)) == 0:
        for name, values in _GEN_INPUTS.items():
            if draw(st.integers(0, 5)):
                extra[name] = [draw(values) for _ in range(rows)]
    if draw(st.integers(0, 9)) == 0:
        extra[draw(st.text(max_size=8))] = draw(JSON)
    if draw(st.booleans()):  # row format
        if extra:
            body["instances"] = [{"text": t, **{k: v[i] for k, v in extra.items()
                                                if isinstance(v, list) and i < len(v)}}
                                 for i, t in enumerate(texts)]
        else:
            body["instances"] = texts
    else:  # columnar
        body["inputs"] = {"text": texts, **extra} if (extra or draw(st.booleans())) else texts
    return body


PREDICT_BODIES = st.composite(lambda draw: _predict_body(draw))()
BODIES = st.one_of(
    PREDICT_BODIES.map(lambda v: json.dumps(v).encode()),
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({}, optional={
        "instances": JSON, "inputs": JSON, "signature_name": JSON, "examples": JSON,
    }).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)
PATHS = st.one_of(
    st.sampled_from(["/v1/models/nwp:predict", "/v1/models/nwp/versions/1:predict",
                     "/v1/models/nwp/versions/2:predict", "/v1/models/nwp:classify",
                     "/v1/models/nwp:regress", "/v1/models/nwp/labels/x:predict",
                     "/v1/models/nwp/metadata", "/v1/models/nwp", "/v1/models/nwp/versions/1",
                     "/v1/models/nwp/versions/99999999999999999999", "/v1/models",
                     "/monitoring/prometheus/metrics", "/", "/web/app.js", "/web/../rest.py",
                     "/v1/models/%6Ewp:predict", "/v1/models/nwp%00:predict",
                     "/v1/models/nwp:predict?x=1"]),
    st.text(alphabet="abcmodelsnwpv1/:%.-_0123456789?#", max_size=40).map(lambda p: "/v1/" + p),
    st.binary(min_size=1, max_size=30).map(
        lambda b: "/v1/models/" + "".join(f"%{c:02X}" for c in b) + ":predict"),
)
ENCODINGS = st.sampled_from(["", "", "", "gzip", "deflate", "gzip-garbage", "br", "identity",
                             "x-unknown", "gzip, gzip"])
FRAMINGS = st.sampled_from(["length", "length", "length", "none", "short", "long", "chunked",
                            "chunked", "chunked-bad", "chunked-truncated", "both"])
_PREDICT_PATHS = st.sampled_from(["/v1/models/nwp:predict", "/v1/models/nwp/versions/1:predict"])
METHODS = st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "OPTIONS", "HEAD",
                           "PATCH"])


def _encode(body, encoding):
    if encoding == "gzip":
        return gzip.compress(body)
    if encoding == "deflate":
        return zlib.compress(body)
    if encoding == "gzip-garbage":
        return b"\x1f\x8b\x08\x00" + body[:40] + b"\xff" * 8
    if encoding == "gzip, gzip":
        return gzip.compress(gzip.compress(body))
    return body


def build_request(method, path, body, encoding, framing, port):
    """``(raw request bytes, whether the request is well framed)``."""
    payload = _encode(body, encoding) if method not in ("GET", "HEAD") else b""
    headers = [f"Host: 127.0.0.1:{port}", "Connection: close",
               "Content-Type: application/json"]
    if encoding and payload:
        headers.append("Content-Encoding: " + ("gzip" if encoding == "gzip-garbage"
                                               else encoding))
    complete = True
    if not payload:
        framing = "length"
    if framing == "length":
        headers.append(f"Content-Length: {len(payload)}")
        data = payload
    elif framing == "none":  # no length: an empty body to the server
        data = b""
    elif framing == "short":  # the rest of the body is read as the next request
        headers.append(f"Content-Length: {max(len(payload) - 3, 0)}")
        data = payload
    elif framing == "long":  # the server waits for bytes that never come: the client hangs up
        headers.append(f"Content-Length: {len(payload) + 10}")
        data, complete = payload, False
    elif framing.startswith("chunked"):
        headers.append("Transfer-Encoding: chunked")
        half = len(payload) // 2
        chunks = [payload[:half], payload[half:]]
        data = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c)
        if framing == "chunked":
            data += b"0\r\n\r\n"
        elif framing == "chunked-bad":
            data = b"zz\r\n" + data
        else:
            complete = False
    else:  # both: Content-Length and chunked (a smuggling shape; must be refused or framed)
        headers.append(f"Content-Length: {len(payload)}")
        headers.append("Transfer-Encoding: chunked")
        data = b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    path = path.replace(" ", "%20")
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(h + "\r\n" for h in headers) + "\r\n"
    return head.encode("latin-1", "replace") + data, complete


def send_raw(port, raw, complete=True, timeout=20.0):
    """Send ``raw`` to 127.0.0.1:``port`` and read to EOF (the request says ``Connection:
    close``); for an incomplete request, half-close first (aiohttp takes that as the client
    hanging up). The status code (int), or ``"none"`` if the server closed without an
    answer, or ``"timeout"``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(raw)
            if not complete:
                s.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before reading everything
            pass
        chunks, deadline = [], time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            return "timeout", b""
        except ConnectionResetError:
            pass
    reply = b"".join(chunks)
    if not reply.startswith(b"HTTP/1."):
        return "none", reply
    return int(reply.split(b" ", 2)[1]), reply


def check_rest(port, method, path, body, encoding, framing):
    """One REST case: ``(outcome, problem or None)``."""
    raw, complete = build_request(method, path, body, encoding, framing, port)
    status, reply = send_raw(port, raw, complete)
    problem = None
    if status == "timeout" or (isinstance(status, int) and status >= 500):
        problem = f"{status}: {method} {path} {encoding} {framing} {body[:200]!r} -> {reply[:300]!r}"
    elif status == "none" and complete and framing != "chunked-bad":
        problem = f"no answer: {method} {path} {encoding} {framing} {body[:200]!r}"
    return status, problem


# ---------------------------------------------------------------- gRPC strategies

_DTYPES = st.one_of(st.sampled_from([7, 7, 7, 3, 3, 1, 9]), st.integers(0, 30),
                    st.sampled_from([101, 107, 2 ** 31 - 1, -1]))
_DIMS = st.lists(st.one_of(st.integers(-2, 8), st.sampled_from([0, 1, 2 ** 31, 2 ** 62,
                                                                 2 ** 63 - 1, -2 ** 63])),
                 max_size=4)


@st.composite
def tensor_protos(draw):
    """A TensorProto near a valid request input, as ``(field values)`` kept plain so that
    the strategy needs no TensorFlow."""
    fields = {"dtype": draw(_DTYPES)}
    shape = draw(st.none() | _DIMS)
    if shape is None:  # a valid-looking [n]
        n = draw(st.integers(0, 5))
        shape = [n]
    fields["dims"] = shape
    kind = draw(st.sampled_from(["string", "string", "int", "float", "int64", "content",
                                 "bool", "none"]))
    count = draw(st.integers(0, 6))
    if kind == "string":
        fields["string_val"] = [draw(st.one_of(
            _PROMPT.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=40),
            st.sampled_from([b"x" * 5000, b"the " * 300]))) for _ in range(count)]
    elif kind == "int":
        fields["int_val"] = [draw(st.integers(-2 ** 31, 2 ** 31 - 1)) for _ in range(count)]
    elif kind == "int64":
        fields["int64_val"] = [draw(st.integers(-2 ** 63, 2 ** 63 - 1)) for _ in range(count)]
    elif kind == "float":
        fields["float_val"] = [draw(st.floats(width=32)) for _ in range(count)]
    elif kind == "bool":
        fields["bool_val"] = [draw(st.booleans()) for _ in range(count)]
    elif kind == "content":
        fields["tensor_content"] = draw(st.binary(max_size=64))
    return fields


_SIGNATURE_INPUTS = {"": {"text": 7}, "serving_default": {"text": 7}, "score": {"text": 7},
                     "generate": {"text": 7, "max_new_tokens": 3, "temperature": 1, "top_k": 3,
                                  "top_p": 1, "seed": 9}}
_TYPED = {7: "string_val", 3: "int_val", 1: "float_val", 9: "int64_val"}


@st.composite
def valid_predict_requests(draw):
    """A PredictRequest the model accepts, but for a value or a dim here and there."""
    signature = draw(st.sampled_from(sorted(_SIGNATURE_INPUTS)))
    rows = draw(st.integers(0, 5))
    inputs = {}
    for alias, dtype in _SIGNATURE_INPUTS[signature].items():
        if alias != "text" and not draw(st.integers(0, 4)):
            continue  # an optional input left out (or a required one: INVALID_ARGUMENT)
        if dtype == 7:
            values = [draw(_PROMPT).encode("utf-8", "surrogatepass") for _ in range(rows)]
        elif dtype == 1:
            values = [draw(st.floats(width=32)) for _ in range(rows)]
        else:
            values = [draw(st.integers(-2 ** 31, 2 ** 31 - 1) | st.integers(-3, 300))
                      for _ in range(rows)]
        dims = [rows] if draw(st.integers(0, 9)) else draw(_DIMS)
        inputs[alias] = {"dtype": dtype, "dims": dims, _TYPED[dtype]: values}
    return {"spec": "ok", "signature": signature, "version": None, "inputs": inputs,
            "output_filter": []}


@st.composite
def predict_requests(draw):
    """Plain fields of a PredictRequest: model spec, inputs, output_filter (half of them
    near-valid, :func:`valid_predict_requests`)."""
    if draw(st.booleans()):
        return draw(valid_predict_requests())
    req = {"spec": draw(st.sampled_from(["ok", "ok", "ok", "ok", "missing", "empty", "other"])),
           "signature": draw(st.sampled_from(["", "serving_default", "score", "generate",
                                              "generate", "nope"])),
           "version": draw(st.sampled_from([None, None, 1, 2, 0, 2 ** 63 - 1]))}
    aliases = draw(st.lists(st.sampled_from(["text", "text", "max_new_tokens", "temperature",
                                             "top_k", "top_p", "seed", "junk", ""]),
                            max_size=7, unique=True))
    req["inputs"] = {alias: draw(tensor_protos()) for alias in aliases}
    req["output_filter"] = draw(st.lists(st.sampled_from(
        ["words", "probabilities", "token_log_probs", "num_tokens", "junk", "text"]),
        max_size=3))
    return req


def build_predict(fields):
    from tensorflow_serving.apis import predict_pb2

    req = predict_pb2.PredictRequest()
    if fields["spec"] != "missing":
        req.model_spec.name = {"ok": MODEL, "empty": "", "other": "zzz"}[fields["spec"]]
        req.model_spec.signature_name = fields["signature"]
        if fields["version"] is not None:
            req.model_spec.version.value = fields["version"]
    for alias, t in fields["inputs"].items():
        proto = req.inputs[alias]
        proto.dtype = t["dtype"]
        proto.tensor_shape.SetInParent()
        for d in t["dims"]:
            proto.tensor_shape.dim.add().size = d
        for name in ("string_val", "int_val", "int64_val", "float_val", "bool_val"):
            getattr(proto, name).extend(t.get(name, []))
        if "tensor_content" in t:
            proto.tensor_content = t["tensor_content"]
    req.output_filter.extend(fields["output_filter"])
    return req


def check_grpc(stub, fields, timeout=20.0):
    """One gRPC case: ``(status code name, problem or None)``."""
    import grpc

    request = build_predict(fields)
    try:
        stub.Predict(request, timeout=timeout)
        code = "OK"
    except grpc.RpcError as err:
        code = err.code().name
        if code in ("UNKNOWN", "INTERNAL", "DEADLINE_EXCEEDED", "UNAVAILABLE"):
            return code, f"{code}: {err.details()[:300]} <- {fields!r}"[:2000]
    return code, None


# ---------------------------------------------------------------- runs


def run_rest(port, examples, tally, problems, seed=None):
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=seed is not None)
    @given(method=METHODS, path=PATHS, body=BODIES, encoding=ENCODINGS, framing=FRAMINGS,
           near_valid=st.booleans(), predict_path=_PREDICT_PATHS, predict_body=PREDICT_BODIES)
    def case(method, path, body, encoding, framing, near_valid, predict_path, predict_body):
        if near_valid:  # half the cases: a POST :predict with a near-valid body
            method, path, body = "POST", predict_path, json.dumps(predict_body).encode()
        status, problem = check_rest(port, method, path, body, encoding, framing)
        tally[status] += 1
        if problem:
            problems.append(problem)

    case()


def run_grpc(target, examples, tally, problems, seed=None):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck), derandomize=seed is not None)
        @given(fields=predict_requests())
        def case(fields):
            code, problem = check_grpc(stub, fields)
            tally[code] += 1
            if problem:
                problems.append(problem)

        case()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_model(workdir):
    """Train (a few seconds) and export the tests' tiny model; its model base path."""
    run, base = os.path.join(workdir, "run"), os.path.join(workdir, "models")
    for module, args in (
            ("training.cli", ["--corpus", "default", "--epochs", "1", "--max-train-tokens",
                              "6000", "--embedding-dim", "16", "--units", "16", "--num-layers",
                              "1", "--max-vocab", "400", "--batch-size", "16", "--bptt", "10",
                              "--output", run]),
            ("serving.export", ["--run", run, "--model_base_path", base, "--model_name",
                                MODEL])):
        subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, check=True,
                       capture_output=True)
    return os.path.join(base, MODEL)


def start_server(base_path, log, extra=()):
    port, grpc_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.rest", f"--rest_api_port={port}", f"--port={grpc_port}",
         f"--model_name={MODEL}", f"--model_base_path={base_path}", *extra],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/{MODEL}", timeout=2)
            return proc, port, grpc_port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the server did not start; see its log")
            time.sleep(0.3)


def still_answers(port):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict",
                                 data=json.dumps({"instances": ["the"]}).encode(),
                                 method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status == 200 and len(json.loads(resp.read())["predictions"][0]["words"]) == 5


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rest", type=int, default=10000, help="REST cases")
    p.add_argument("--grpc", type=int, default=2000, help="gRPC Predict cases")
    p.add_argument("--warmup", type=int, default=300, help="REST and gRPC cases each before "
                                                           "the first memory reading")
    p.add_argument("--model_base_path", default=None,
                   help="an export to serve (default: train and export a tiny model)")
    p.add_argument("--rss_growth_bound_mib", type=float, default=64.0,
                   help="resident memory may grow at most this much from warm-up to the end")
    p.add_argument("--server_log", default=None, help="also write the server's log here")
    args = p.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as workdir, open(os.path.join(workdir, "log"), "w+") as log:
        base = args.model_base_path or tiny_model(workdir)
        proc, port, grpc_port = start_server(
            base, log, ["--max_request_bytes=100000", "--max_batch_size_per_request=1000"])
        try:
            warm_tally, warm_problems = collections.Counter(), []
            run_rest(port, args.warmup, warm_tally, warm_problems)
            run_grpc(f"127.0.0.1:{grpc_port}", args.warmup, warm_tally, warm_problems)
            rss_warm = rss_kib(proc.pid)
            rest, grpc_tally, problems = collections.Counter(), collections.Counter(), []
            t = time.monotonic()
            run_rest(port, args.rest, rest, problems)
            rest_s = time.monotonic() - t
            t = time.monotonic()
            run_grpc(f"127.0.0.1:{grpc_port}", args.grpc, grpc_tally, problems)
            grpc_s = time.monotonic() - t
            rss_end = rss_kib(proc.pid)
            alive = still_answers(port)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        problems = warm_problems + problems
        growth = (rss_end - rss_warm) / 1024
        fmt = lambda c: ", ".join(f"{k}: {v}" for k, v in sorted(c.items(), key=str))  # noqa: E731
        print(f"# nwp-serve on {'the tiny model' if not args.model_base_path else base}; "
              f"warm-up {args.warmup} REST + {args.warmup} gRPC cases")
        print(f"REST {sum(rest.values())} cases in {rest_s:.0f} s: {fmt(rest)}")
        print(f"gRPC {sum(grpc_tally.values())} cases in {grpc_s:.0f} s: {fmt(grpc_tally)}")
        fives = sum(v for k, v in rest.items() if isinstance(k, int) and k >= 500)
        bad = sum(grpc_tally[c] for c in ("UNKNOWN", "INTERNAL"))
        print(f"REST 5xx: {fives}; gRPC UNKNOWN/INTERNAL: {bad}; problems: {len(problems)}")
        print(f"server VmRSS: {rss_warm / 1024:.1f} MiB after warm-up, {rss_end / 1024:.1f} MiB "
              f"after the run ({growth:+.1f} MiB; bound +{args.rss_growth_bound_mib:.0f} MiB)")
        print(f"answers a plain :predict after the run: {alive}; "
              f"{time.monotonic() - started:.0f} s wall")
        log.seek(0)
        text = log.read()
        if args.server_log:
            pathlib.Path(args.server_log).write_text(text)
        lines = text.splitlines()
        tracebacks = sum(line.startswith("Traceback") for line in lines)
        print(f"server log: {len(lines)} lines, {tracebacks} tracebacks")
        for problem in problems[:20]:
            print("PROBLEM", problem)
        ok = not problems and alive and growth <= args.rss_growth_bound_mib
        if not ok:
            log.seek(0)
            print("--- server log (tail) ---\n" + log.read()[-3000:])
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
