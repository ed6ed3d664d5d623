"""Issue 14, "Hold under abuse": limits checked before work, bounded memory, a poller that
survives, clean errors. In process, with a fake graph behind real SignatureDefs (seconds)."""

import asyncio
import gzip
import json
import logging
import socket
import time
import types

import grpc
import numpy as np
import pytest
import tensorflow as tf
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from serving import limits
from serving.grpc_server import make_grpc_server
from serving.metrics import ServerMetrics
from serving.rest import make_app
from serving.servable import ModelManager, Servable

STRING, FLOAT, INT32, INT64 = 7, 1, 3, 9


def _sig(inputs, outputs):
    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for table, spec in ((sig.inputs, inputs), (sig.outputs, outputs)):
        for alias, (dtype, dims) in spec.items():
            table[alias].dtype = dtype
            for d in dims:
                table[alias].tensor_shape.dim.add().size = d
    return sig


class FakeServable(Servable):
    """A Servable whose graph is Python: ``serving_default`` echoes each text's length,
    ``score`` gives token i of text r the log-prob -(r+1)*(i+1) over len(text)+1 tokens
    (0 after the end), ``generate`` echoes ``max_new_tokens``. ``calls`` records the rows
    of every run."""

    def __init__(self, name="m", version=1, path=""):
        self.name, self.version, self.path = name, version, path
        self.signature_defs = {
            "serving_default": _sig({"text": (STRING, [-1])},
                                    {"words": (STRING, [-1, 1]), "probabilities": (FLOAT, [-1, 1])}),
            "score": _sig({"text": (STRING, [-1])},
                          {"token_log_probs": (FLOAT, [-1, -1]), "num_tokens": (INT32, [-1])}),
            "generate": _sig({"text": (STRING, [-1]), "max_new_tokens": (INT32, [-1])},
                             {"num_tokens": (INT32, [-1])}),
        }
        self.calls = []
        self._tf = tf
        self._batchable = {"serving_default": True, "score": False, "generate": True}
        self._input_dtypes = {k: {a: tf.dtypes.as_dtype(i.dtype) for a, i in s.inputs.items()}
                              for k, s in self.signature_defs.items()}
        self._loaded = types.SimpleNamespace(signatures={
            "serving_default": self._default, "score": self._score, "generate": self._generate})

    def _default(self, text):
        self.calls.append(int(text.shape[0]))
        n = tf.strings.length(text)
        return {"words": tf.reshape(tf.strings.as_string(n), [-1, 1]),
                "probabilities": tf.reshape(tf.cast(n, tf.float32), [-1, 1])}

    def _score(self, text):
        self.calls.append(int(text.shape[0]))
        lengths = tf.strings.length(text).numpy() + 1
        out = np.zeros((len(lengths), lengths.max()), np.float32)
        base = int(np.sum(self.calls[:-1]))  # rows already scored in this request's chunks
        for r, n in enumerate(lengths):
            out[r, :n] = -(base + r + 1) * np.arange(1, n + 1)
        return {"token_log_probs": tf.constant(out), "num_tokens": tf.constant(lengths, tf.int32)}

    def _generate(self, text, max_new_tokens):
        self.calls.append(int(text.shape[0]))
        return {"num_tokens": max_new_tokens}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _manager(servable):
    manager = ModelManager({"m": "/nonexistent"}, loader=None)
    manager._servables["m"] = {1: servable}
    manager._states["m"] = {1: ("AVAILABLE", "OK", "")}
    return manager


def _serve(scenario, servable=None, grpc_on=False, **limits_kw):
    """Run ``scenario(rest_url, grpc_channel or None, servable, metrics)`` against an
    in-process server with the given limits (make_app / make_grpc_server keywords)."""
    servable = servable or FakeServable()
    manager, metrics = _manager(servable), ServerMetrics()

    async def main():
        app = make_app(manager, metrics=metrics, **{k: v for k, v in limits_kw.items()
                                                    if k != "grpc_request_bytes"})
        async with TestServer(app, host="127.0.0.1") as rest:
            url = f"http://127.0.0.1:{rest.port}"
            if not grpc_on:
                return await scenario(url, None, servable, metrics)
            port = _free_port()
            server = make_grpc_server(
                manager, "127.0.0.1", port, metrics=metrics,
                max_request_bytes=limits_kw.get("max_request_bytes", 8 << 20),
                max_tensor_bytes=limits_kw.get("max_tensor_bytes",
                                               limits.DEFAULT_MAX_TENSOR_BYTES),
                max_tokens=limits_kw.get("max_tokens", limits.DEFAULT_MAX_REQUEST_TOKENS))
            await server.start()
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    return await scenario(url, channel, servable, metrics)
            finally:
                await server.stop(0)

    return asyncio.run(main())


async def _post(url, body, path="/v1/models/m:predict", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with ClientSession() as session:
        async with session.post(url + path, data=data, headers=headers or {}) as resp:
            return resp.status, json.loads(await resp.text())


def _grpc_request(proto, signature=""):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "m"
    req.model_spec.signature_name = signature
    req.inputs["text"].CopyFrom(proto)
    return req


def _count(metrics, status, entrypoint):
    return metrics.registry.get_sample_value(
        ":tensorflow:serving:request_count_total",
        {"model_name": "m", "status": status, "entrypoint": entrypoint}) or 0


# 1. The cost model, one limit for both APIs, checked before any tensor is built.

def test_cost_model_counts_bytes_and_fill_from_the_proto_alone():
    one_kb = tf.make_tensor_proto(["x" * 1024], dtype=tf.string)
    one_kb.tensor_shape.Clear()
    for d in (1024, 16384):
        one_kb.tensor_shape.dim.add().size = d
    dims, cost = limits.proto_cost(one_kb)
    assert dims == [1024, 16384]
    assert cost == 1024 * 16384 * (64 + 1024)  # 17.6 GB asked for by ~1 KB
    floats = tf.make_tensor_proto(1.0, dtype=tf.float32, shape=[1000, 1000])
    assert limits.proto_cost(floats) == ([1000, 1000], 4_000_000)
    assert limits.array_cost(np.array([b"ab", b""], dtype=object)) == 2 * 64 + 2
    assert limits.array_cost(np.zeros(10, np.int64)) == 80


def test_grpc_refuses_a_tiny_message_that_expands_to_a_huge_tensor():
    proto = tf.make_tensor_proto(["x" * 1024], dtype=tf.string)  # one 1 KB value ...
    proto.tensor_shape.Clear()
    for d in (4, 1024):  # ... filling 4096 elements: 4.4 MB under the cost model
        proto.tensor_shape.dim.add().size = d

    async def scenario(url, channel, servable, metrics):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Predict(_grpc_request(proto), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "--max_request_tensor_bytes" in info.value.details()
        assert "1000000" in info.value.details()
        assert servable.calls == []  # nothing ran
        ok = await stub.Predict(_grpc_request(tf.make_tensor_proto(["ab"])), timeout=10)
        assert tf.make_ndarray(ok.outputs["words"]).tolist() == [[b"2"]]

    _serve(scenario, grpc_on=True, max_tensor_bytes=1_000_000)


def test_grpc_message_size_limit_is_max_request_bytes():
    async def scenario(url, channel, servable, metrics):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Predict(_grpc_request(tf.make_tensor_proto(["y" * 20_000])), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        ok = await stub.Predict(_grpc_request(tf.make_tensor_proto(["y" * 5000])), timeout=10)
        assert tf.make_ndarray(ok.outputs["words"]).tolist() == [[b"5000"]]

    _serve(scenario, grpc_on=True, max_request_bytes=10_000)


def test_rest_refuses_many_small_strings_over_the_tensor_byte_limit():
    async def scenario(url, channel, servable, metrics):
        status, body = await _post(url, {"instances": [""] * 1000})  # 64 000 bytes
        assert status == 400 and "--max_request_tensor_bytes" in body["error"]
        assert "64000" in body["error"]
        assert servable.calls == []
        status, body = await _post(url, {"instances": [""] * 10})
        assert status == 200 and body["predictions"][0] == {"probabilities": [0.0],
                                                            "words": ["0"]}

    _serve(scenario, max_tensor_bytes=32_000)


# 2. Work caps (rows x tokens) and bounded memory for score.

def test_score_and_generate_work_over_max_request_tokens_is_400_before_running():
    async def scenario(url, channel, servable, metrics):
        status, body = await _post(url, {"signature_name": "score",
                                         "instances": ["a" * 99] * 10})  # 10 x 100 tokens
        assert status == 400 and "--max_request_tokens" in body["error"], body
        assert "1000" in body["error"] and "500" in body["error"]
        status, body = await _post(url, {"signature_name": "generate", "instances": [
            {"text": "", "max_new_tokens": 200}] * 3})  # 3 x (1 + 200) tokens
        assert status == 400 and "603" in body["error"], body
        assert servable.calls == []
        status, body = await _post(url, {"signature_name": "generate", "instances": [
            {"text": "", "max_new_tokens": 200}] * 2})
        assert status == 200 and body["predictions"] == [200, 200]  # one output: bare values
        if channel is not None:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Predict(_grpc_request(tf.make_tensor_proto(["a" * 99] * 10),
                                                 "score"), timeout=10)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "--max_request_tokens" in info.value.details()

    _serve(scenario, grpc_on=True, max_tokens=500)


def test_score_runs_in_chunks_of_bounded_tokens_and_answers_as_one_run():
    servable = FakeServable()
    servable.tokens_per_run = 10
    texts = [b"abcd", b"", b"abcdefgh", b"ab", b"a"]  # 5, 1, 9, 3, 2 tokens
    out = servable.predict("score", {"text": np.array(texts, dtype=object)})
    assert servable.calls == [2, 1, 2]  # [5+1], [9], [3+2]: each run <= 10 tokens
    lengths = [5, 1, 9, 3, 2]
    expected = np.zeros((5, 9), np.float32)  # by hand: -(row+1) * position, 0 past the end
    for r, n in enumerate(lengths):
        expected[r, :n] = [-(r + 1) * (i + 1) for i in range(n)]
    np.testing.assert_array_equal(out["token_log_probs"], expected)
    assert out["num_tokens"].tolist() == lengths


# 5. Bad Content-Encoding, 413 and hang-ups get the right labels.

def test_a_body_that_does_not_decompress_is_400_and_413_is_counted_as_such():
    async def scenario(url, channel, servable, metrics):
        status, body = await _post(url, b"this is not gzip",
                                   headers={"Content-Encoding": "gzip"})
        assert status == 400 and "Content-Encoding" in body["error"], body
        status, body = await _post(url, gzip.compress(b'{"instances": ["abc"]}'),
                                   headers={"Content-Encoding": "gzip"})
        assert status == 200 and body["predictions"][0]["words"] == ["3"]
        status, body = await _post(url, {"instances": ["z" * 3000]})
        assert status == 413 and "--max_request_bytes" in body["error"], body
        assert _count(metrics, "INTERNAL", "REST") == 0
        assert _count(metrics, "INVALID_ARGUMENT", "REST") == 1
        assert _count(metrics, "RESOURCE_EXHAUSTED", "REST") == 1

    _serve(scenario, max_request_bytes=2000)


def test_a_client_hanging_up_mid_body_is_one_log_line_not_internal(caplog):
    async def scenario(url, channel, servable, metrics):
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"instances\": [")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.close()
        await asyncio.sleep(0.5)
        assert _count(metrics, "INTERNAL", "REST") == 0
        assert _count(metrics, "CANCELLED", "REST") == 1

    with caplog.at_level(logging.INFO):
        _serve(scenario)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


# 3. Version folders parsed strictly, poll intervals checked, a poll error never kills it.

@pytest.mark.parametrize("name, version", [
    ("1", 1), ("42", 42), (str(2 ** 63 - 1), 2 ** 63 - 1), ("007", 7),
    ("²", None), ("١", None), ("0", None), (str(2 ** 63), None), ("+1", None), (" 1", None),
    ("1.0", None), (".tmp-3-99", None), ("", None), ("9" * 400, None)])
def test_parse_version_takes_ascii_digits_in_int64_range(name, version):
    assert limits.parse_version(name) == version


class _FolderServable:
    def __init__(self, name, version, path):
        self.name, self.version, self.path = name, version, path


def test_odd_folder_names_neither_stop_the_server_nor_the_export(tmp_path):
    from serving.export import version_dirs

    for name in ("3", "²", str(2 ** 63), "0"):
        (tmp_path / name).mkdir()
    manager = ModelManager({"m": str(tmp_path)}, loader=_FolderServable)
    manager.load()
    assert manager.get("m").version == 3
    assert sorted(version_dirs(str(tmp_path))) == [3]


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "-1", "-inf"])
def test_bad_poll_intervals_are_refused_at_start(value):
    from serving.servable import check_poll_seconds

    with pytest.raises(ValueError, match="--file_system_poll_wait_seconds must be between 0"):
        check_poll_seconds(float(value))
    manager = ModelManager({"m": "/nonexistent"}, loader=_FolderServable)
    with pytest.raises(ValueError):
        manager.start_polling(float(value))


def test_an_exception_in_a_poll_is_reported_and_polling_goes_on(tmp_path, caplog):
    (tmp_path / "1").mkdir()
    broken = {"on": False}

    def loader(name, version, path):
        return _FolderServable(name, version, path)

    manager = ModelManager({"m": str(tmp_path)}, loader=loader)
    manager.load()
    real_aspired = manager.configs["m"].aspired

    def aspired(on_disk):
        if broken["on"]:
            raise RuntimeError("disk on fire")
        return real_aspired(on_disk)

    manager.configs["m"].aspired = aspired
    broken["on"] = True
    (tmp_path / "2").mkdir()
    manager.start_polling(0.05)
    try:
        deadline = time.monotonic() + 5
        while "poll_error" not in manager.status("m"):
            assert time.monotonic() < deadline, "the poll error never showed"
            time.sleep(0.02)
        assert "disk on fire" in manager.status("m")["poll_error"]
        assert manager.get("m").version == 1  # still serving
        broken["on"] = False  # the poller is still alive: it picks version 2 up
        while manager.get("m").version != 2:
            assert time.monotonic() < deadline + 5, "the poller died"
            time.sleep(0.02)
        assert "poll_error" not in manager.status("m")
    finally:
        manager.stop_polling()
    assert any("disk on fire" in (r.exc_text or str(r.exc_info)) for r in caplog.records)


# 4 and 8. nwp-export: int64 versions, a base path that is a file, concurrent and killed
# exports; one-line errors before any work.

def _export_cli(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "serving.export", *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          cwd=__import__("pathlib").Path(__file__).resolve().parents[2])


@pytest.mark.parametrize("flags, message", [
    (["--version", str(2 ** 63)], "version must be an integer in 1..9223372036854775807"),
    (["--version", "0"], "version must be an integer in 1.."),
    (["--model_base_path", "{file}"], "exists and is not a folder"),
])
def test_nwp_export_refuses_bad_targets_in_one_line_before_loading(tmp_path, flags, message):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    flags = [f.format(file=a_file) for f in flags]
    if "--model_base_path" not in flags:
        flags += ["--model_base_path", tmp_path / "models"]
    proc = _export_cli("--run", tmp_path / "no-such-run", *flags)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "no-such-run" not in proc.stderr  # refused before the run was read


def test_a_concurrent_export_that_loses_the_race_takes_the_next_version(tmp_path):
    from serving.export import _publish

    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "saved_model.pb").write_text("the other export's")
    mine = tmp_path / ".tmp-1-123"
    mine.mkdir()
    (mine / "saved_model.pb").write_text("mine")
    assert _publish(str(mine), str(tmp_path), 1, auto_version=True) == str(tmp_path / "2")
    assert (tmp_path / "1" / "saved_model.pb").read_text() == "the other export's"
    assert (tmp_path / "2" / "saved_model.pb").read_text() == "mine"
    mine.mkdir()
    with pytest.raises(FileExistsError, match="published by another export"):
        _publish(str(mine), str(tmp_path), 2, auto_version=False)
    (tmp_path / "3").mkdir()  # even an empty folder is never replaced
    assert _publish(str(mine), str(tmp_path), 3, auto_version=True) == str(tmp_path / "4")


def test_folders_of_killed_exports_are_cleaned_and_live_ones_kept(tmp_path):
    import os
    import subprocess
    import sys

    from serving.export import clean_stale_exports

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name in (f".tmp-3-{dead.pid}", f".tmp-4-{os.getppid()}", ".tmp-odd", "5"):
        (tmp_path / name).mkdir()
    assert clean_stale_exports(str(tmp_path)) == [f".tmp-3-{dead.pid}"]
    assert sorted(os.listdir(tmp_path)) == sorted([f".tmp-4-{os.getppid()}", ".tmp-odd", "5"])


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A base path holding version 1 of a one-signature SavedModel (no training)."""
    base = tmp_path_factory.mktemp("tiny")

    class Echo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
        def serve(self, text):
            return {"words": tf.reshape(text, [-1, 1])}

    module = Echo()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.serve})
    (base / "²").mkdir()  # str.isdigit() is true, int() fails: must be ignored
    return base


def _serve_cli(*flags):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "serving.rest", *map(str, flags)],
                          capture_output=True, text=True, timeout=120,
                          cwd=__import__("pathlib").Path(__file__).resolve().parents[2])


def test_a_busy_rest_port_fails_without_announcing_that_it_serves(tiny_model):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        proc = _serve_cli(f"--rest_api_port={port}", "--port=0", "--model_name=m",
                          f"--model_base_path={tiny_model}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot listen" in proc.stderr
    assert "serving model" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("value", ["nan", "inf", "1e300"])
def test_nwp_serve_refuses_bad_poll_intervals_in_one_line(value):
    proc = _serve_cli(f"--file_system_poll_wait_seconds={value}", "--port=0",
                      "--model_base_path=/nonexistent")
    assert proc.returncode == 2
    assert "--file_system_poll_wait_seconds must be between 0" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# 6. Deadlines: --rest_api_timeout_in_ms (504, and 408 for a body that never comes), gRPC's.

class SlowServable(FakeServable):
    def _default(self, text):
        time.sleep(1.0)
        return super()._default(text)


def test_rest_requests_over_the_timeout_get_504_and_slow_bodies_408():
    async def scenario(url, channel, servable, metrics):
        started = time.monotonic()
        status, body = await _post(url, {"instances": ["abc"]})
        assert status == 504 and "--rest_api_timeout_in_ms" in body["error"], body
        assert "300 ms" in body["error"]
        assert time.monotonic() - started < 0.9  # answered at the deadline, not after the run
        status, body = await _post(url, {"signature_name": "score", "instances": ["ab"]})
        assert status == 200 and body["predictions"][0]["num_tokens"] == 3  # still serving
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 100\r\n\r\n{\"inst")
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 3)
        writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head
        assert _count(metrics, "DEADLINE_EXCEEDED", "REST") == 2
        assert _count(metrics, "INTERNAL", "REST") == 0

    _serve(scenario, SlowServable(), timeout_ms=300)


def test_grpc_calls_stop_at_their_deadline():
    async def scenario(url, channel, servable, metrics):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Predict(_grpc_request(tf.make_tensor_proto(["ab"])), timeout=0.3)
        assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert time.monotonic() - started < 0.9
        ok = await stub.Predict(_grpc_request(tf.make_tensor_proto(["ab"]), "score"), timeout=10)
        assert tf.make_ndarray(ok.outputs["num_tokens"]).tolist() == [3]

    _serve(scenario, SlowServable(), grpc_on=True)


def test_large_grpc_inputs_are_converted_off_the_loop_and_answered():
    texts = [b"%04d" % i + b"x" * 1096 for i in range(1000)]  # 1.16 MB under the cost model

    async def scenario(url, channel, servable, metrics):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        resp = await stub.Predict(_grpc_request(tf.make_tensor_proto(texts)), timeout=30)
        assert tf.make_ndarray(resp.outputs["words"]).ravel().tolist() == [b"1100"] * 1000
        assert servable.calls == [1000]

    _serve(scenario, grpc_on=True, max_tokens=10 ** 7)


def test_the_server_starts_and_serves_beside_a_folder_named_superscript_two(tiny_model):
    import urllib.request

    from tests.conftest import running_server

    with running_server("--model_name=m", f"--model_base_path={tiny_model}",
                        "--file_system_poll_wait_seconds=0.1", model="m") as (url, _):
        time.sleep(0.5)  # a few polls pass over the folder
        status = json.load(urllib.request.urlopen(url + "/v1/models/m", timeout=10))
        assert [s["version"] for s in status["model_version_status"]] == ["1"]
        assert "poll_error" not in status
        req = urllib.request.Request(url + "/v1/models/m:predict",
                                     data=b'{"instances": ["hi"]}', method="POST")
        assert json.load(urllib.request.urlopen(req, timeout=10)) == {"predictions": [["hi"]]}
