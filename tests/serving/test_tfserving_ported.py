"""TF Serving's own server tests, ported (in our own words) to ``nwp-serve``.

Each case names the upstream test it comes from (github.com/tensorflow/serving):

* ``tensorflow_serving/model_servers/tensorflow_model_server_test.py`` (``[server]``):
  testGetModelStatus, testClassify, testRegress, testMultiInference, testPredictSavedModel
  (VerifyPredictRequest, with and without ``output_filter``), testPredictBatching,
  testGoodModelConfig, testBadModelConfig, testGoodGrpcChannelArgs, testClassifyREST,
  testRegressREST, testPredictREST, testPredictColumnarREST, testGetStatusREST;
* ``tensorflow_serving/model_servers/http_rest_api_handler_test.cc`` (``[rest]``): kPathRegex,
  UnsupportedApiCalls, PredictModelNameVersionErrors, PredictRequestErrors, Predict, Regress,
  Classify, GetStatus, GetModelMetadata;
* the gRPC implementation tests (``[impl]``): ``servables/tensorflow/predict_impl_test.cc``
  (missing model spec, unknown model/version, input and output aliases, unknown signature),
  ``classification_service_test.cc`` / ``regression_service_test.cc`` (unknown signature,
  empty input, wrong kind of signature), ``model_servers/get_model_metadata_impl_test.cc``
  (no or unsupported metadata field, the signature map) and
  ``model_servers/get_model_status_impl_test.cc`` (missing spec, unknown model or version).

Models: the half_plus_two / half_plus_three fixtures the tests build themselves
(:mod:`tests.serving.tfserving_models`), version 123 labelled ``stable``, TF1 style (reference
variables, session-loaded) and TF2 style; upstream's expected numbers (``y = 0.5 x + 2``,
``+ 3`` for half_plus_three) are used unchanged.
"""

import json
import urllib.error
import urllib.request

import grpc
import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from tests.conftest import running_server

MODELS = ["tf1_half_plus_two", "tf2_half_plus_two"]
OK_STATUS = {"model_version_status": [{"version": "123", "state": "AVAILABLE",
                                       "status": {"error_code": "OK", "error_message": ""}}]}


def _call(url, body=None, method=None):
    """``(HTTP status, Content-Type, JSON body)``; ``body`` a str is sent as is."""
    data = body if isinstance(body, str) or body is None else json.dumps(body)
    request = urllib.request.Request(url, data=None if data is None else data.encode(),
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.headers["Content-Type"], json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, err.headers["Content-Type"], json.loads(raw)
        except ValueError:
            return err.code, err.headers["Content-Type"], raw.decode(errors="replace")


@pytest.fixture(scope="module")
def rest(half_plus_server):
    return half_plus_server[0]


@pytest.fixture(scope="module")
def channel(half_plus_server):
    with grpc.insecure_channel(half_plus_server[1]) as ch:
        grpc.channel_ready_future(ch).result(timeout=60)
        yield ch


@pytest.fixture(scope="module")
def stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _predict_request(model, x=2.0, output_filter=True):
    """[server] VerifyPredictRequest's request: x = [2.0] in float_val."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].dtype = types_pb2.DT_FLOAT
    request.inputs["x"].float_val.append(x)
    request.inputs["x"].tensor_shape.dim.add().size = 1
    if output_filter:
        request.output_filter.append("y")
    return request


def _verify_predict(stub, model, expected, output_filter=True):
    result = stub.Predict(_predict_request(model, output_filter=output_filter), timeout=5)
    assert "y" in result.outputs
    assert result.outputs["y"].dtype == types_pb2.DT_FLOAT
    assert list(result.outputs["y"].float_val) == [expected]
    assert (result.model_spec.name, result.model_spec.signature_name,
            result.model_spec.version.value) == (model, "serving_default", 123)


# -- tensorflow_model_server_test.py ------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("output_filter", [True, False])
def test_server_predict_saved_model(stub, model, output_filter):  # [server]
    _verify_predict(stub, model, 3.0, output_filter)


@pytest.mark.parametrize("model", MODELS)
def test_server_get_model_status(channel, model):  # [server] testGetModelStatus
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    result = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request,
                                                                             timeout=5)
    assert len(result.model_version_status) == 1
    assert result.model_version_status[0].version == 123
    assert result.model_version_status[0].status.error_code == 0


def _with_example(request, x=2.0):
    request.input.example_list.examples.add().features.feature["x"].float_list.value.append(x)
    return request


@pytest.mark.parametrize("model", MODELS)
def test_server_classify(stub, model):  # [server] testClassify
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = model, "classify_x_to_y"
    result = stub.Classify(_with_example(request), timeout=5)
    assert len(result.result.classifications) == 1
    assert len(result.result.classifications[0].classes) == 1
    assert result.result.classifications[0].classes[0].score == 3.0
    assert (result.model_spec.name, result.model_spec.signature_name,
            result.model_spec.version.value) == (model, "classify_x_to_y", 123)


@pytest.mark.parametrize("model", MODELS)
def test_server_regress(stub, model):  # [server] testRegress
    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = model, "regress_x_to_y"
    result = stub.Regress(_with_example(request), timeout=5)
    assert len(result.result.regressions) == 1
    assert result.result.regressions[0].value == 3.0
    assert (result.model_spec.name, result.model_spec.signature_name,
            result.model_spec.version.value) == (model, "regress_x_to_y", 123)


def test_server_multi_inference(stub):  # [server] testMultiInference (a TF1 model: one input)
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.signature_name = "tf1_half_plus_two", signature
        task.method_name = f"tensorflow/serving/{method}"
    result = stub.MultiInference(_with_example(request), timeout=5)
    assert len(result.results) == 2
    assert result.results[0].regression_result.regressions[0].value == 3.0
    assert result.results[1].classification_result.classifications[0].classes[0].score == 3.0
    for i in range(2):
        spec = result.results[i].model_spec
        assert (spec.name, spec.signature_name, spec.version.value) == (
            "tf1_half_plus_two", request.tasks[i].model_spec.signature_name, 123)


def test_server_good_model_config(stub):  # [server] testGoodModelConfig
    for output_filter in (True, False):
        _verify_predict(stub, "tf1_half_plus_two", 3.0, output_filter)
        _verify_predict(stub, "tf1_half_plus_three", 4.0, output_filter)


def test_server_bad_model_config(tmp_path, capsys):  # [server] testBadModelConfig
    from serving.server import main

    bad = tmp_path / "bad_model_config.txt"
    bad.write_text("improperly formatted file")
    assert main([f"--model_config_file={bad}", "--port=0", "--rest_api_port=0"]) != 0
    assert f"Cannot read the model config file {bad}" in capsys.readouterr().err


@pytest.mark.slow
def test_server_predict_batching_and_grpc_channel_args(half_plus_models, tmp_path):
    # [server] testPredictBatching and testGoodGrpcChannelArgs, on one server
    params = tmp_path / "batching_config.txt"
    params.write_text("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n"
                      "max_enqueued_batches { value: 1000000 }\nnum_batch_threads { value: 8 }\n")
    with running_server("--model_name=default",
                        f"--model_base_path={half_plus_models['tf1_half_plus_two']}",
                        "--enable_batching", f"--batching_parameters_file={params}",
                        "--grpc_channel_arguments="
                        "grpc.max_connection_age_ms=2000,grpc.lb_policy_name=grpclb",
                        model="default", grpc=True) as (_, target):
        with grpc.insecure_channel(target) as ch:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
            _verify_predict(stub, "default", 3.0, True)
            _verify_predict(stub, "default", 3.0, False)


@pytest.mark.parametrize("model", MODELS)
def test_server_rest_classify_regress_predict_status(rest, model):
    # [server] testClassifyREST, testRegressREST, testPredictREST, testPredictColumnarREST,
    # testGetStatusREST
    url = f"{rest}/v1/models/{model}"
    assert _call(url + ":classify", {"signature_name": "classify_x_to_y",
                                     "examples": [{"x": 2.0}]})[2] == {"results": [[["", 3.0]]]}
    assert _call(url + ":regress", {"signature_name": "regress_x_to_y",
                                    "examples": [{"x": 2.0}]})[2] == {"results": [3.0]}
    assert _call(url + ":predict", {"instances": [2.0, 3.0, 4.0]})[2] == \
        {"predictions": [3.0, 3.5, 4.0]}
    assert _call(url + ":predict", {"inputs": [2.0, 3.0, 4.0]})[2] == \
        {"outputs": [3.0, 3.5, 4.0]}
    assert _call(url)[2] == OK_STATUS


# -- http_rest_api_handler_test.cc --------------------------------------------------------

def test_rest_path_regex(rest):  # [rest] kPathRegex: only /v1/... reaches the API
    assert _call(f"{rest}/v1/models")[0] == 400  # the API: "Missing model name"
    assert _call(f"{rest}/statuspage")[0] == 404
    assert _call(f"{rest}/index")[0] == 404


@pytest.mark.parametrize("method, path, text", [
    ("GET", "/v1/foo", "Malformed request"),
    ("POST", "/v1/foo", "Malformed request"),
    ("GET", "/v1/models", "Missing model name"),
    ("POST", "/v1/models", "Malformed request"),
    ("GET", "/v1/models/foo:predict", "Malformed request"),
    ("GET", "/v1/models/foo/version/50:predict", "Malformed request"),
    ("POST", "/v1/models/foo/version/50:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/HELLO:regress", "Malformed request"),
    ("POST", f"/v1/models/foo/versions/{2 ** 64 - 1}:regress", "Failed to convert version"),
    ("POST", "/v1/models/foo/metadata", "Malformed request"),
    ("POST", "/v1/models/foo/label/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/50/labels/some_label:regress", "Malformed request"),
    ("POST", "/v1/models/foo/versions/some_label:regress", "Malformed request"),
])
def test_rest_unsupported_api_calls(rest, method, path, text):  # [rest] UnsupportedApiCalls
    status, _, body = _call(rest + path, "" if method == "POST" else None, method)
    assert status == 400 and text in body["error"], body


@pytest.mark.parametrize("path", ["/v1/models/foo:predict", "/v1/models/foo/versions/50:predict",
                                  "/v1/models/tf1_half_plus_two99:predict",
                                  "/v1/models/tf1_half_plus_two/versions/99:predict"])
def test_rest_predict_model_name_version_errors(rest, path):
    # [rest] PredictModelNameVersionErrors: unknown model or version is NOT_FOUND (404)
    assert _call(rest + path, {"instances": [1]})[0] == 404


@pytest.mark.parametrize("path, body, text", [
    (":predict", "", "JSON Parse error: The document is empty"),
    (":predict", "instances = [1, 2]", "JSON Parse error"),
    (":predict", '{ "instances": ["x", "y"] }', "not of expected type: float"),
    ("/labels/nope:predict", '{ "instances": ["x", "y"] }',
     "Unrecognized servable version label"),
    (":predict", '{ "signature_name": 100 }', "'signature_name' key must be a string value."),
])
def test_rest_predict_request_errors(rest, path, body, text):  # [rest] PredictRequestErrors
    status, _, answer = _call(f"{rest}/v1/models/tf1_half_plus_two{path}", body)
    assert status == 400 and text in answer["error"], answer


@pytest.mark.parametrize("model", MODELS)
def test_rest_predict(rest, model):  # [rest] Predict
    url = f"{rest}/v1/models/{model}"
    for path, body, want in [
            (":predict", {"instances": [[1.0, 2.0], [3.0, 4.0]]},
             {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
            ("/versions/123:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
            ("/labels/stable:predict", {"instances": [1.0, 2.0]}, {"predictions": [2.5, 3.0]}),
            ("/versions/123:predict", {"signature_name": "serving_default",
                                       "instances": [3.0, 4.0]}, {"predictions": [3.5, 4.0]}),
            ("/versions/123:predict", {"signature_name": "serving_default",
                                       "inputs": [3.0, 4.0]}, {"outputs": [3.5, 4.0]})]:
        assert _call(url + path, body) == (200, "application/json", want), path


@pytest.mark.parametrize("model", MODELS)
def test_rest_regress_and_classify(rest, model):  # [rest] Regress, Classify
    url = f"{rest}/v1/models/{model}"
    for path in (":regress", "/versions/123:regress", "/labels/stable:regress"):
        assert _call(url + path, {"signature_name": "regress_x_to_y",
                                  "examples": [{"x": 80.0}]}) == (
            200, "application/json", {"results": [42.0]})
    assert _call(url + ":classify", {"signature_name": "classify_x_to_y",
                                     "examples": [{"x": 20.0}]})[2] == {"results": [[["", 12.0]]]}
    assert _call(url + "/labels/stable:classify", {"signature_name": "classify_x_to_y",
                                                   "examples": [{"x": 10.0}]})[2] == \
        {"results": [[["", 7.0]]]}


@pytest.mark.parametrize("model", MODELS)
def test_rest_get_status(rest, model):  # [rest] GetStatus
    for path in ("", "/versions/123", "/labels/stable"):
        assert _call(f"{rest}/v1/models/{model}{path}") == (200, "application/json", OK_STATUS)


@pytest.mark.parametrize("model", MODELS)
def test_rest_get_model_metadata(rest, model):  # [rest] GetModelMetadata
    status, content_type, body = _call(f"{rest}/v1/models/{model}/metadata")
    assert (status, content_type) == (200, "application/json")
    assert body["model_spec"] == {"name": model, "signature_name": "", "version": "123"}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) >= {"serving_default", "classify_x_to_y", "classify_x_to_labels",
                         "regress_x_to_y", "regress_x_to_y2"}
    assert sigs["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"
    if model.startswith("tf1"):  # TF1 exports keep their method names
        assert sigs["regress_x_to_y"]["method_name"] == "tensorflow/serving/regress"


# -- the gRPC implementation tests ---------------------------------------------------------

def _code(call, request):
    with pytest.raises(grpc.RpcError) as err:
        call(request, timeout=5)
    return err.value.code(), err.value.details()


def test_impl_predict_errors(stub):  # [impl] predict_impl_test.cc
    assert _code(stub.Predict, predict_pb2.PredictRequest())[0] == \
        grpc.StatusCode.INVALID_ARGUMENT  # MissingOrEmptyModelSpec
    request = _predict_request("tf1_half_plus_two")
    request.model_spec.name = "foo"
    assert _code(stub.Predict, request)[0] == grpc.StatusCode.NOT_FOUND
    request = _predict_request("tf1_half_plus_two")
    request.model_spec.version.value = 99
    assert _code(stub.Predict, request)[0] == grpc.StatusCode.NOT_FOUND
    request = _predict_request("tf1_half_plus_two")  # InputTensorsDontMatchModelSpecInputs
    request.inputs["z"].CopyFrom(request.inputs["x"])
    code, text = _code(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "input tensor alias not found" in text
    request = _predict_request("tf1_half_plus_two")  # OutputFiltersDontMatchModelSpecOutputs
    request.output_filter[:] = ["output_filter_that_doesnt_exist"]
    code, text = _code(stub.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "output tensor alias not found" in text
    request = _predict_request("tf1_half_plus_two")
    request.output_filter[:] = ["y", "y"]
    assert _code(stub.Predict, request)[0] == grpc.StatusCode.INVALID_ARGUMENT
    request = _predict_request("tf1_half_plus_two")
    request.model_spec.signature_name = "nope"
    assert _code(stub.Predict, request)[0] == grpc.StatusCode.FAILED_PRECONDITION


def test_impl_classify_and_regress_errors(stub):
    # [impl] classification_service_test.cc, regression_service_test.cc
    request = classification_pb2.ClassificationRequest()
    assert _code(stub.Classify, request)[0] == grpc.StatusCode.INVALID_ARGUMENT  # no spec
    request.model_spec.name = "tf1_half_plus_two"
    request.model_spec.signature_name = "classify_x_to_y"
    code, text = _code(stub.Classify, request)  # no examples
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Input is empty" in text
    request.model_spec.signature_name = "nope"
    code, text = _code(stub.Classify, _with_example(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "No signature was found" in text
    request.model_spec.signature_name = "regress_x_to_y2"  # a regression signature
    code, text = _code(stub.Classify, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and '"classes" or "scores"' in text
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "tf1_half_plus_two"
    request.model_spec.signature_name = "classify_x_to_labels"  # two outputs
    code, text = _code(stub.Regress, _with_example(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "Expected one output Tensor." in text
    request.model_spec.version.value = 99
    assert _code(stub.Regress, request)[0] == grpc.StatusCode.NOT_FOUND


def test_impl_get_model_metadata(stub):  # [impl] get_model_metadata_impl_test.cc
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "tf1_half_plus_two"
    assert _code(stub.GetModelMetadata, request)[0] == grpc.StatusCode.INVALID_ARGUMENT
    request.metadata_field.append("some_stuff")
    assert _code(stub.GetModelMetadata, request)[0] == grpc.StatusCode.INVALID_ARGUMENT
    request.metadata_field[:] = ["signature_def"]
    result = stub.GetModelMetadata(request, timeout=5)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    result.metadata["signature_def"].Unpack(sig_map)
    assert sig_map.signature_def["regress_x_to_y"].method_name == "tensorflow/serving/regress"
    assert sig_map.signature_def["serving_default"].inputs["x"].dtype == types_pb2.DT_FLOAT
    assert (result.model_spec.name, result.model_spec.version.value) == (
        "tf1_half_plus_two", 123)
    request.model_spec.name = "foo"
    assert _code(stub.GetModelMetadata, request)[0] == grpc.StatusCode.NOT_FOUND


def test_impl_get_model_status(channel):  # [impl] get_model_status_impl_test.cc
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    assert _code(stub.GetModelStatus, request)[0] == grpc.StatusCode.INVALID_ARGUMENT
    request.model_spec.name = "foo"
    assert _code(stub.GetModelStatus, request)[0] == grpc.StatusCode.NOT_FOUND
    request.model_spec.name = "tf1_half_plus_three"
    request.model_spec.version.value = 99
    assert _code(stub.GetModelStatus, request)[0] == grpc.StatusCode.NOT_FOUND
    request.model_spec.version.value = 123
    result = stub.GetModelStatus(request, timeout=5)
    assert [(s.version, s.state) for s in result.model_version_status] == [
        (123, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]
