"""TF1-style SavedModels (reference variables, tf.Example signatures) loaded as TF Serving
loads them, and Classify / Regress / MultiInference over REST and gRPC.

Expected numbers are computed here with NumPy from the fixture's definition
(``y = 0.5 x + b``, ``scores = [1 - sigmoid(x), sigmoid(x)]``), never read from the server.
"""

import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    inference_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.servable import ModelConfig, ModelManager, Servable


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def _post(url, body):
    """``(status, JSON answer)`` of a POST."""
    request = urllib.request.Request(url, data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _example(**features):
    example = tf.train.Example()
    for name, value in features.items():
        example.features.feature[name].float_list.value.append(value)
    return example


@pytest.fixture(scope="module")
def stub(half_plus_server):
    with grpc.insecure_channel(half_plus_server[1]) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def test_the_tf1_fixture_holds_reference_variables(half_plus_models):
    # The premise of the TF1 tests: VariableV2 (float_ref) nodes and no object graph.
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((half_plus_models["tf1_half_plus_two"] / "123" /
                           "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0]
    assert {n.op for n in graph.graph_def.node} >= {"VariableV2", "ParseExampleV2"}
    assert not graph.object_graph_def.nodes
    assert graph.signature_def["classify_x_to_y"].method_name == "tensorflow/serving/classify"


@pytest.mark.parametrize("name, tf1", [("tf1_half_plus_two", True),
                                       ("tf2_half_plus_two", False)])
def test_predict_in_process_equals_half_plus_two(half_plus_models, name, tf1):
    servable = Servable(name, 123, str(half_plus_models[name] / "123"))
    assert servable.tf1 is tf1  # the TF1 export goes through the session loader
    x = np.array([2.0, 3.0, 4.0, -7.25], np.float32)
    np.testing.assert_allclose(servable.predict("", {"x": x})["y"], 0.5 * x + 2.0, rtol=0)


@pytest.mark.parametrize("model", ["tf1_half_plus_two", "tf2_half_plus_two"])
def test_rest_classify_and_regress_answer_in_tf_servings_json_shape(half_plus_server, model):
    url = f"{half_plus_server[0]}/v1/models/{model}"
    xs = [2.0, -1.5, 0.0]
    status, body = _post(url + ":classify", {"signature_name": "classify_x_to_labels",
                                            "examples": [{"x": x} for x in xs]})
    assert status == 200, body
    assert [[label for label, _ in row] for row in body["results"]] == [["low", "high"]] * 3
    np.testing.assert_allclose([[s for _, s in row] for row in body["results"]],
                               [[1 - _sigmoid(x), _sigmoid(x)] for x in xs], rtol=1e-6)
    status, body = _post(url + ":classify", {"signature_name": "classify_x_to_y",
                                            "examples": [{"x": 2.0}]})
    assert (status, body) == (200, {"results": [[["", 3.0]]]})  # no classes: empty label
    status, body = _post(url + ":regress", {"signature_name": "regress_x_to_y2",
                                           "examples": [{"x": x} for x in xs]})
    assert status == 200, body
    np.testing.assert_allclose(body["results"], [0.5 * x + 3.0 for x in xs], rtol=1e-6)


def test_context_features_reach_every_example_and_the_examples_own_win(half_plus_server):
    url = f"{half_plus_server[0]}/v1/models/tf1_half_plus_two:regress"
    status, body = _post(url, {"signature_name": "regress_x_to_y", "context": {"x": 10.0},
                               "examples": [{}, {"x": 4.0}]})
    assert (status, body) == (200, {"results": [7.0, 4.0]})


@pytest.mark.parametrize("examples, text", [
    ([{"x": "two"}], "Data types don't match"),    # a bytes feature where float is parsed
    ([{"x": 2}], "Data types don't match"),        # JSON integers make an int64_list
    ([{"y": 2.0}], "is required but could not be found"),
    ([{"x": [[2.0]]}], "lists may not nest"),
    ([{"x": True}], "is not a number"),
    ([{"x": {"b64": "%%"}}], "not valid base64"),
    (["x"], "must be a JSON object"),
])
def test_examples_that_do_not_fit_the_model_are_400_never_5xx(half_plus_server, examples,
                                                               text):
    status, body = _post(f"{half_plus_server[0]}/v1/models/tf1_half_plus_two:classify",
                         {"signature_name": "classify_x_to_y", "examples": examples})
    assert status == 400 and text in body["error"], body


def test_a_serialized_example_that_does_not_parse_is_400(half_plus_server):
    # Through :predict, the classify signature gets raw bytes that are no tf.Example.
    status, body = _post(f"{half_plus_server[0]}/v1/models/tf1_half_plus_two:predict",
                         {"signature_name": "classify_x_to_y",
                          "instances": [{"b64": "bm90IGEgcHJvdG8="}]})
    assert status == 400 and "Could not parse example input" in body["error"], body


def test_a_predict_signature_is_refused_by_classify(half_plus_server):
    status, body = _post(f"{half_plus_server[0]}/v1/models/tf1_half_plus_two:classify",
                         {"examples": [{"x": 1.0}]})  # serving_default takes x, not examples
    assert status == 400 and "No classification inputs found" in body["error"]


@pytest.mark.parametrize("model", ["tf1_half_plus_two", "tf2_half_plus_two"])
def test_grpc_classify_regress_and_multi_inference(stub, model):
    xs = [2.0, -3.0]
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = model, "classify_x_to_labels"
    for x in xs:
        request.input.example_list.examples.add().CopyFrom(_example(x=x))
    result = stub.Classify(request, timeout=30)
    assert [[c.label for c in row.classes] for row in result.result.classifications] == \
        [["low", "high"]] * 2
    np.testing.assert_allclose(
        [[c.score for c in row.classes] for row in result.result.classifications],
        [[1 - _sigmoid(x), _sigmoid(x)] for x in xs], rtol=1e-6)
    assert (result.model_spec.name, result.model_spec.version.value,
            result.model_spec.signature_name) == (model, 123, "classify_x_to_labels")

    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = model, "regress_x_to_y"
    with_context = request.input.example_list_with_context
    with_context.context.CopyFrom(_example(x=8.0))
    with_context.examples.add()
    with_context.examples.add().CopyFrom(_example(x=-2.0))
    result = stub.Regress(request, timeout=30)
    assert [r.value for r in result.result.regressions] == [6.0, 1.0]

    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y2", "regress"), ("classify_x_to_y", "classify")):
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.signature_name = model, signature
        task.method_name = f"tensorflow/serving/{method}"
    request.input.example_list.examples.add().CopyFrom(_example(x=5.0))
    if model.startswith("tf2"):
        # Each tf.function signature has its own input tensor; TF Serving runs the tasks in
        # one Session.run over one input, so it refuses, and so do we.
        with pytest.raises(grpc.RpcError) as err:
            stub.MultiInference(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Input tensor must be the same for all Signatures" in err.value.details()
        return
    result = stub.MultiInference(request, timeout=30)
    assert result.results[0].regression_result.regressions[0].value == 5.5
    assert result.results[1].classification_result.classifications[0].classes[0].score == 4.5
    assert [r.model_spec.signature_name for r in result.results] == ["regress_x_to_y2",
                                                                      "classify_x_to_y"]


def _multi(tasks, examples=(1.0,)):
    request = inference_pb2.MultiInferenceRequest()
    for model, signature, method in tasks:
        task = request.tasks.add()
        task.model_spec.name, task.model_spec.signature_name = model, signature
        task.method_name = method
    for x in examples:
        request.input.example_list.examples.add().CopyFrom(_example(x=x))
    return request


@pytest.mark.parametrize("request_, text", [
    (_multi([]), "at least one task"),
    (_multi([("tf1_half_plus_two", "regress_x_to_y", "tensorflow/serving/regress"),
             ("tf1_half_plus_three", "classify_x_to_y", "tensorflow/serving/classify")]),
     "same model name"),
    (_multi([("tf1_half_plus_two", "regress_x_to_y", "tensorflow/serving/regress")] * 2),
     "Duplicate evaluation of signature"),
    (_multi([("tf1_half_plus_two", "serving_default", "tensorflow/serving/predict")]),
     "Unsupported signature method_name"),
    (_multi([("tf1_half_plus_two", "regress_x_to_y", "tensorflow/serving/regress")], ()),
     "Input is empty"),
    (_multi([("tf1_half_plus_two", "serving_default", "tensorflow/serving/regress")]),
     "No regression inputs found"),
])
def test_multi_inference_refuses_what_tf_serving_refuses(stub, request_, text):
    with pytest.raises(grpc.RpcError) as err:
        stub.MultiInference(request_, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in err.value.details()


def test_a_wrong_feature_type_over_grpc_is_invalid_argument(stub):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name, request.model_spec.signature_name = ("tf1_half_plus_two",
                                                                  "regress_x_to_y")
    request.input.example_list.examples.add().features.feature["x"].bytes_list.value.append(
        b"2.0")
    with pytest.raises(grpc.RpcError) as err:
        stub.Regress(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_tf1_version_that_fails_to_load_is_reported_and_the_good_one_serves(
        half_plus_models, tmp_path):
    import shutil

    base = tmp_path / "m"
    shutil.copytree(half_plus_models["tf1_half_plus_two"] / "123", base / "1")
    shutil.copytree(half_plus_models["tf1_half_plus_two"] / "123", base / "2")
    shutil.rmtree(base / "2" / "variables")  # the session cannot restore a / b / c
    manager = ModelManager({"m": ModelConfig(str(base), policy="all")})
    manager.load()
    states = {s["version"]: s for s in manager.status("m")["model_version_status"]}
    assert states["1"]["state"] == "AVAILABLE"
    assert states["2"]["state"] == "END" and states["2"]["status"]["error_message"]
    np.testing.assert_allclose(manager.get("m").predict("", {"x": np.array([6.0])})["y"], [5.0])


def test_the_default_signature_is_tensorflows_constant():
    from serving.export import SIGNATURE_KEY
    from serving.servable import DEFAULT_SIGNATURE

    assert DEFAULT_SIGNATURE == SIGNATURE_KEY == tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY


def test_method_name_check_refuses_signatures_whose_method_is_not_classify(half_plus_models):
    # --enable_signature_method_name_check: TF1 exports carry tensorflow/serving/classify;
    # tf.function signatures all say tensorflow/serving/predict and are refused.
    from serving.errors import ServingError
    from serving.inference import classification_signature, regression_signature

    tf1 = Servable("a", 123, str(half_plus_models["tf1_half_plus_two"] / "123"))
    tf2 = Servable("b", 123, str(half_plus_models["tf2_half_plus_two"] / "123"))
    assert classification_signature(tf1, "classify_x_to_y", check_method=True).scores
    assert regression_signature(tf1, "regress_x_to_y", check_method=True).scores
    assert classification_signature(tf2, "classify_x_to_y").scores  # the default: no check
    for pick, name in ((classification_signature, "classify_x_to_y"),
                       (regression_signature, "regress_x_to_y")):
        with pytest.raises(ServingError, match="method_name to be tensorflow/serving/") as err:
            pick(tf2, name, check_method=True)
        assert err.value.code == "INVALID_ARGUMENT"
