"""The REST server, running as its own process, as clients see it."""

import json
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf


def call(url, path, body=None, raw=None, method=None):
    """Return ``(status, parsed JSON or text)``."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, method=method or (
        "GET" if data is None else "POST"))
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, payload = err.code, err.read()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload.decode(errors="replace")


PROMPTS = ["the name of the", "", "return"]


def test_status_and_metadata(server):
    assert call(server, "/v1/models/nwp") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]})
    status, meta = call(server, "/v1/models/nwp/versions/1/metadata")
    assert status == 200 and meta["model_spec"] == {"name": "nwp", "signature_name": "",
                                                    "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["text"]["dtype"] == "DT_STRING"
    assert sig["outputs"]["words"]["tensor_shape"]["dim"][1]["size"] == "5"


def test_rest_round_trip_equals_the_saved_model_in_process(server, exported):
    direct = tf.saved_model.load(str(exported[1])).signatures["serving_default"](
        text=tf.constant(PROMPTS))
    for path in ("/v1/models/nwp:predict", "/v1/models/nwp/versions/1:predict"):
        status, body = call(server, path, {"instances": PROMPTS})
        assert status == 200, body
        assert len(body["predictions"]) == len(PROMPTS)
        for i, row in enumerate(body["predictions"]):
            assert row["words"] == [w.decode() for w in direct["words"].numpy()[i]]
            np.testing.assert_allclose(row["probabilities"], direct["probabilities"].numpy()[i],
                                       rtol=1e-6)
    status, body = call(server, "/v1/models/nwp:predict", {"inputs": {"text": PROMPTS}})
    assert status == 200
    assert body["outputs"]["words"] == [[w.decode() for w in row]
                                        for row in direct["words"].numpy()]


BAD = [
    ("malformed JSON", "/v1/models/nwp:predict", b'{"instances": [', 400, "JSON Parse error"),
    ("empty body", "/v1/models/nwp:predict", b"", 400, "The document is empty"),
    ("missing instances", "/v1/models/nwp:predict", b'{"examples": ["a"]}', 400,
     "Missing 'inputs' or 'instances' key"),
    ("unknown model", "/v1/models/other:predict", b'{"instances": ["a"]}', 404,
     "Servable not found for request: Latest(other)"),
    ("unknown version", "/v1/models/nwp/versions/7:predict", b'{"instances": ["a"]}', 404,
     "Specific(nwp, 7)"),
    ("wrong dtype", "/v1/models/nwp:predict", b'{"instances": [3.5]}', 400,
     "is not of expected type: string"),
    ("wrong rank", "/v1/models/nwp:predict", b'{"instances": [["a"]]}', 400,
     "must be a vector"),
    ("not an object", "/v1/models/nwp:predict", b'["a"]', 400, "Is not object"),
    ("unknown signature", "/v1/models/nwp:predict",
     b'{"signature_name": "nope", "instances": ["a"]}', 400, '"nope" not found'),
    ("bad path", "/v1/models/nwp:explain", b"{}", 400, "Malformed request"),
    ("classify without examples", "/v1/models/nwp:classify", b'{"instances": ["a"]}', 400,
     "key 'examples' is expected"),
    ("classify a predict signature", "/v1/models/nwp:classify",
     b'{"examples": [{"text": "a"}]}', 400, "No classification inputs found"),
    ("regress a predict signature", "/v1/models/nwp:regress",
     b'{"examples": [{"text": "a"}]}', 400, "Expected one output Tensor."),
    ("regress an unknown signature", "/v1/models/nwp:regress",
     b'{"signature_name": "x", "examples": [{"a": 1}]}', 400, "No signature was found"),
    ("not UTF-8", "/v1/models/nwp:predict", b'{"instances": ["\xff"]}', 400, "JSON Parse"),
    ("too large", "/v1/models/nwp:predict",
     b'{"instances": ["' + b"a " * 60000 + b'"]}', 413, "too large"),
    # rank 33 string tensors crash TensorFlow itself; they must be refused before the graph
    ("deep nesting", "/v1/models/nwp:predict",
     b'{"instances": [' + b"[" * 33 + b'"a"' + b"]" * 33 + b"]}", 400, "deeper than rank"),
    ("huge integer", "/v1/models/nwp:predict", b'{"instances": [' + b"1" * 5000 + b"]}", 400,
     "JSON Parse error"),
    ("lone surrogate", "/v1/models/nwp:predict", b'{"instances": ["\\ud800"]}', 400,
     "not valid UTF-8"),
    ("too many rows", "/v1/models/nwp:predict",
     b'{"instances": [' + b", ".join([b'"a"'] * 1001) + b"]}", 400, "at most 1000"),
]


@pytest.mark.parametrize("label, path, raw, code, text", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_json_error_and_the_server_keeps_serving(server, label, path, raw,
                                                                    code, text):
    status, body = call(server, path, raw=raw, method="POST")
    assert status == code, body
    assert isinstance(body, dict) and text in body["error"], body
    status, good = call(server, "/v1/models/nwp:predict", {"instances": ["the"]})
    assert status == 200 and len(good["predictions"][0]["words"]) == 5


def test_parsing_follows_rapidjson(server):
    """Trailing text after the JSON value is ignored and the first of duplicate keys wins."""
    status, body = call(server, "/v1/models/nwp:predict",
                        raw=b'{"instances": ["the"], "instances": [1]} trailing', method="POST")
    assert status == 200 and len(body["predictions"]) == 1
    status, body = call(server, "/v1/models/nwp:predict",
                        raw=b'{"instances": [1], "instances": ["the"]}', method="POST")
    assert status == 400


def test_the_v1_prefix_is_case_insensitive_and_other_paths_are_404(server):
    assert call(server, "/V1/models/nwp")[0] == 200
    assert call(server, "/v2/models/nwp")[0] == 404


def test_get_errors(server):
    assert call(server, "/v1/models/nope")[0] == 404
    assert call(server, "/v1/models")[1] == {"error": "Missing model name in request."}
    assert call(server, "/v1/models/nwp/versions/3")[0] == 404
    assert call(server, "/v1/models/nwp", method="DELETE")[0] == 400


def test_a_new_version_dropped_in_is_served_without_a_restart(tiny_run, tmp_path):
    """A real server with polling: version 2 (top_k 3) replaces version 1 (top_k 5)."""
    import time

    from serving.export import export_saved_model
    from tests.conftest import running_server
    from zoo import NextWordPredictor

    predictor = NextWordPredictor.load(tiny_run)
    base = tmp_path / "models"
    export_saved_model(predictor, base, "m", version=1, top_k=5)
    with running_server("--model_name=m", f"--model_base_path={base / 'm'}",
                        "--file_system_poll_wait_seconds=0.5", model="m") as (url, _):
        assert len(call(url, "/v1/models/m:predict", {"instances": ["a"]})[1]
                   ["predictions"][0]["words"]) == 5
        export_saved_model(predictor, base, "m", version=2, top_k=3)
        (base / "m" / "3").mkdir()  # a half-written version: ignored after its failed load
        failures, widths = 0, set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, body = call(url, "/v1/models/m:predict", {"instances": ["a"]})
            if status != 200:
                failures += 1
            else:
                widths.add(len(body["predictions"][0]["words"]))
            if 3 in widths and call(url, "/v1/models/m/versions/3")[0] == 200:
                break
            time.sleep(0.05)
        assert failures == 0 and 3 in widths
        states = {s["version"]: s["state"] for s in call(url, "/v1/models/m")[1]
                  ["model_version_status"]}
        assert states == {"3": "END", "2": "AVAILABLE", "1": "END"}


def test_prometheus_metrics_count_requests_by_status(server):
    def count(text, status):
        for line in text.split("\n"):
            if (line.startswith(":tensorflow:serving:request_count_total{")
                    and 'model_name="nwp"' in line and f'status="{status}"' in line
                    and 'entrypoint="REST"' in line):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = call(server, "/monitoring/prometheus/metrics")[1]
    call(server, "/v1/models/nwp:predict", {"instances": ["the"]})
    call(server, "/v1/models/nwp:predict", {"instances": [1]})
    after = call(server, "/monitoring/prometheus/metrics")[1]
    assert count(after, "OK") == count(before, "OK") + 1
    assert count(after, "INVALID_ARGUMENT") == count(before, "INVALID_ARGUMENT") + 1
    assert ':tensorflow:serving:request_latency_bucket{API="predict"' in after


def test_generate_and_score_over_rest_in_row_format(server):
    body = {"signature_name": "generate", "instances": [
        {"text": "the", "max_new_tokens": 3, "temperature": 0.0, "top_k": 0, "top_p": 1.0,
         "seed": 1},
        {"text": "", "max_new_tokens": 2, "temperature": 1.0, "top_k": 5, "top_p": 0.9,
         "seed": 2}]}
    status, out = call(server, "/v1/models/nwp:predict", body)
    assert status == 200, out
    assert [p["num_tokens"] for p in out["predictions"]] == [3, 2]
    assert len(out["predictions"][0]["continuation"].split(" ")) == 3
    status, out = call(server, "/v1/models/nwp:predict",
                       {"signature_name": "score", "inputs": {"text": ["the", ""]}})
    assert status == 200 and out["outputs"]["num_tokens"] == [1, 0]
    status, out = call(server, "/v1/models/nwp:predict",
                       {"signature_name": "generate", "instances": [{"text": "a"}]})
    assert status == 400 and "keys must be equal to" in out["error"]


def test_complete_over_rest_equals_the_in_process_answer(server, tiny_run):
    from zoo import NextWordPredictor

    prompts = ["the va", "of the ", "zzzq", "The"]
    direct = NextWordPredictor.load(tiny_run).complete(tf.constant(prompts), k=5)
    status, body = call(server, "/v1/models/nwp:predict",
                        {"signature_name": "complete", "instances": prompts})
    assert status == 200, body
    for i, row in enumerate(body["predictions"]):
        assert row["words"] == [w.decode() for w in direct["words"].numpy()[i]]
        assert row["prefix"] == direct["prefix"].numpy()[i].decode()
        np.testing.assert_allclose(row["probabilities"], direct["probabilities"].numpy()[i],
                                   rtol=1e-5, atol=1e-7)
    assert body["predictions"][2]["words"] == [""] * 5  # no word starts with "zzzq"
    status, body = call(server, "/v1/models/nwp:predict",
                        {"signature_name": "complete", "instances": ["the", ""]})
    assert status == 400 and "a prompt is empty" in body["error"], body
    assert call(server, "/v1/models/nwp:predict", {"instances": ["the"]})[0] == 200


def test_batching_server_answers_each_prompt_as_if_alone(exported, tmp_path):
    """Prompts of different lengths batched together get their own answers (padding)."""
    import concurrent.futures

    import tensorflow as tf

    from tests.conftest import running_server

    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 50000 }\n"
                      "num_batch_threads { value: 1 }\n")
    with running_server("--model_name=nwp", f"--model_base_path={exported[0]}",
                        "--enable_batching", f"--batching_parameters_file={params}") as (url, _):
        prompts = ["the " * n + "value" for n in range(12)]
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(
                lambda p: call(url, "/v1/models/nwp:predict", {"instances": [p]}), prompts))
    direct = tf.saved_model.load(str(exported[1])).signatures["serving_default"](
        text=tf.constant(prompts))
    for i, (status, body) in enumerate(answers):
        assert status == 200, body
        assert body["predictions"][0]["words"] == [
            w.decode() for w in direct["words"].numpy()[i]]
        np.testing.assert_allclose(body["predictions"][0]["probabilities"],
                                   direct["probabilities"].numpy()[i], rtol=1e-5)


def test_unknown_models_share_one_metrics_series_and_huge_versions_are_400(server):
    for i in range(5):
        call(server, f"/v1/models/ghost{i}")
    text = call(server, "/monitoring/prometheus/metrics")[1]
    assert "ghost" not in text and "_created" not in text
    status, body = call(server, "/v1/models/nwp/versions/" + "9" * 5000 + ":predict",
                        {"instances": ["a"]})
    assert status == 400 and "Failed to convert version" in body["error"]


def test_generate_never_emits_padding_or_unk_even_when_filters_keep_nothing(server):
    rows = [{"text": "the", "max_new_tokens": 30, "temperature": t, "top_k": 0, "top_p": p,
             "seed": s} for s, (t, p) in enumerate([(1.0, 0.0), (1e12, 1.0), (1.0, 0.5)])]
    status, body = call(server, "/v1/models/nwp:predict",
                        {"signature_name": "generate", "instances": rows})
    assert status == 200, body
    for row in body["predictions"]:
        assert "[UNK]" not in row["continuation"].split(" ")


def test_cors_preflight_needs_an_http_origin(server):
    def options(origin):
        headers = {"Origin": origin} if origin else {}
        req = urllib.request.Request(server + "/v1/models/nwp:predict", method="OPTIONS",
                                     headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    assert options("https://example.org") == (200, b"")
    assert options("file://x")[0] == 400 and options(None)[0] == 400
