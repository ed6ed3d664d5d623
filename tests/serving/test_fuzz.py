"""Property-based fuzzing of a running nwp-serve (the tiny export), REST and gRPC: any path,
method, body, Content-Encoding and framing gets an answer under 500 (or, for a body cut
short, none), any gRPC Predict request a status other than UNKNOWN / INTERNAL, and the
server keeps answering. The strategies live in ``benchmarks/fuzz_server.py``, which runs
them at 10,000+ cases and reads the server's memory."""

import json
import urllib.error
import urllib.parse
import urllib.request

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorflow_serving.apis import prediction_service_pb2_grpc

from benchmarks.fuzz_server import (BODIES, ENCODINGS, FRAMINGS, METHODS, PATHS,
                                    PREDICT_BODIES, build_request, check_grpc, check_rest,
                                    predict_requests, send_raw)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def port(server):
    return urllib.parse.urlsplit(server).port


@pytest.fixture(scope="module")
def stub(grpc_target):
    with grpc.insecure_channel(grpc_target) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@FUZZ
@given(method=METHODS, path=PATHS, body=BODIES, encoding=ENCODINGS, framing=FRAMINGS)
def test_fuzzed_rest_requests_never_get_a_5xx(port, method, path, body, encoding, framing):
    status, problem = check_rest(port, method, path, body, encoding, framing)
    assert problem is None, problem


@settings(FUZZ, max_examples=100)
@given(body=PREDICT_BODIES, encoding=st.sampled_from(["", "gzip", "deflate"]))
def test_near_valid_predict_bodies_get_200_or_a_json_400(port, body, encoding):
    raw, _ = build_request("POST", "/v1/models/nwp:predict", json.dumps(body).encode(),
                           encoding, "length", port)
    status, reply = send_raw(port, raw)
    assert status in (200, 400), (status, body, reply[-300:])
    payload = json.loads(reply.split(b"\r\n\r\n", 1)[1])
    assert ("predictions" in payload or "outputs" in payload) if status == 200 \
        else "error" in payload


@settings(FUZZ, max_examples=150)
@given(fields=predict_requests())
def test_fuzzed_grpc_predict_never_unknown_or_internal(stub, fields):
    code, problem = check_grpc(stub, fields)
    assert problem is None, problem


def test_the_server_still_answers_after_the_fuzzing(server):
    req = urllib.request.Request(server + "/v1/models/nwp:predict", method="POST",
                                 data=json.dumps({"instances": ["the"]}).encode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        payload = json.loads(resp.read())
    assert len(payload["predictions"][0]["words"]) == 5
