"""The gRPC API through TF Serving's own stubs, as its clients call it."""

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

PROMPTS = ["the name of the", "", "return"]


@pytest.fixture(scope="module")
def channel(grpc_target):
    with grpc.insecure_channel(grpc_target) as ch:
        grpc.channel_ready_future(ch).result(timeout=60)
        yield ch


def _request(prompts, name="nwp", version=None):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    if version is not None:
        req.model_spec.version.value = version
    req.inputs["text"].CopyFrom(tf.make_tensor_proto(prompts, dtype=tf.string))
    return req


def test_predict_equals_the_saved_model_in_process(channel, exported):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    resp = stub.Predict(_request(PROMPTS, version=1), timeout=30)
    direct = tf.saved_model.load(str(exported[1])).signatures["serving_default"](
        text=tf.constant(PROMPTS))
    np.testing.assert_array_equal(tf.make_ndarray(resp.outputs["words"]),
                                  direct["words"].numpy())
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["probabilities"]),
                               direct["probabilities"].numpy(), rtol=1e-6)
    assert (resp.model_spec.name, resp.model_spec.version.value,
            resp.model_spec.signature_name) == ("nwp", 1, "serving_default")


def test_numbers_come_back_in_the_typed_fields_as_tf_serving_sends_them(channel, exported):
    # tensorflow_model_server fills float_val, int64_val, ... unless started with
    # --enable_serialization_as_tensor_content; clients that read .float_val rely on it.
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    resp = stub.Predict(_request(PROMPTS, version=1), timeout=30)
    direct = tf.saved_model.load(str(exported[1])).signatures["serving_default"](
        text=tf.constant(PROMPTS))
    probs = resp.outputs["probabilities"]
    assert probs.dtype == tf.float32.as_datatype_enum and not probs.tensor_content
    want = direct["probabilities"].numpy()
    assert [d.size for d in probs.tensor_shape.dim] == list(want.shape)
    np.testing.assert_allclose(np.array(probs.float_val, np.float32), want.ravel(), rtol=1e-6)
    np.testing.assert_array_equal(tf.make_ndarray(probs), np.array(probs.float_val,
                                                                   np.float32).reshape(want.shape))
    assert list(resp.outputs["words"].string_val) == direct["words"].numpy().ravel().tolist()


def test_output_filter(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = _request(["the"])
    req.output_filter.append("words")
    assert list(stub.Predict(req, timeout=30).outputs) == ["words"]


def test_metadata_and_status(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "nwp"
    req.metadata_field.append("signature_def")
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    stub.GetModelMetadata(req, timeout=30).metadata["signature_def"].Unpack(sig_map)
    assert list(sig_map.signature_def["serving_default"].inputs) == ["text"]

    status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
    status_req = get_model_status_pb2.GetModelStatusRequest()
    status_req.model_spec.name = "nwp"
    status = status_stub.GetModelStatus(status_req, timeout=30).model_version_status
    assert [(s.version, s.state) for s in status] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]


@pytest.mark.parametrize("make, code, text", [
    (lambda: _request(["a"], name="other"), grpc.StatusCode.NOT_FOUND, "Latest(other)"),
    (lambda: _request(["a"], version=9), grpc.StatusCode.NOT_FOUND, "Specific(nwp, 9)"),
    (lambda: _bad_dtype(), grpc.StatusCode.INVALID_ARGUMENT, ""),
    (lambda: _bad_alias(), grpc.StatusCode.INVALID_ARGUMENT, "alias not found"),
])
def test_errors_carry_tensorflow_status_codes_and_the_server_keeps_serving(channel, make,
                                                                          code, text):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(make(), timeout=30)
    assert info.value.code() == code and text in info.value.details()
    assert stub.Predict(_request(["the"]), timeout=30).outputs["words"].tensor_shape.dim[1].size == 5


def test_metadata_needs_the_signature_def_field(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = "nwp"
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelMetadata(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at least one metadata_field" in info.value.details()


def _bad_dtype():
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "nwp"
    req.inputs["text"].CopyFrom(tf.make_tensor_proto([1.5, 2.5]))
    return req


def _bad_alias():
    req = _request(["a"])
    req.inputs["prompt"].CopyFrom(tf.make_tensor_proto(["b"]))
    return req


@pytest.mark.parametrize("verb, text", [("Classify", "No classification inputs found"),
                                        ("Regress", "Expected one output Tensor.")])
def test_classify_and_regress_answer_like_tf_serving_on_a_predict_signature(channel, verb,
                                                                           text):
    from tensorflow_serving.apis import classification_pb2, regression_pb2

    module = classification_pb2 if verb == "Classify" else regression_pb2
    request = getattr(module, f"{'Classification' if verb == 'Classify' else 'Regression'}Request")()
    request.model_spec.name = "nwp"
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        getattr(stub, verb)(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text in info.value.details()


def test_wrong_dtypes_unknown_signatures_and_too_many_rows(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "nwp"
    req.model_spec.signature_name = "generate"
    for alias, value, dtype in (("text", ["a"], tf.string), ("max_new_tokens", [2.7], tf.float32),
                                ("temperature", [0.0], tf.float32), ("top_k", [0], tf.int32),
                                ("top_p", [1.0], tf.float32), ("seed", [0], tf.int64)):
        req.inputs[alias].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "to be int32 but float32 is provided" in info.value.details()

    req = _request(["a"])
    req.model_spec.signature_name = "nope"
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert 'Serving signature key "nope" not found.' in info.value.details()

    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(_request(["a"] * 1001), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 1000" in info.value.details()


@pytest.mark.parametrize("dims, message", [
    ([2_000_000_000], "at most 1000"),  # one string_val would fill 2e9 rows
    ([10, 1 << 22], "--max_request_tensor_bytes"),  # 41M strings: 2.7 GB in memory
    ([-5], "negative dimension"),
])
def test_a_tiny_tensor_proto_cannot_ask_for_a_huge_array(channel, dims, message):
    from tensorflow.core.framework import tensor_pb2, types_pb2

    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x"])
    for size in dims:
        proto.tensor_shape.dim.add().size = size
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "nwp"
    req.inputs["text"].CopyFrom(proto)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in info.value.details()
    assert stub.Predict(_request(["the"]), timeout=30).outputs["words"].string_val  # still up


@pytest.mark.parametrize("value", [
    np.array([b"a", b"", "\u00e9t\u00e9".encode()], dtype=object),
    np.array([[b"x", b"y"], [b"z", b"w"]], dtype=object),
    np.array(b"scalar", dtype=object),
    np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
    np.array([1e300, -0.0, np.inf]),
    np.array([[1, -2], [3, 2**31 - 1]], dtype=np.int32),
    np.array([-(2**63), 2**63 - 1], dtype=np.int64),
    np.zeros((0, 5), np.float32),
    np.array([True, False]),  # bool: not on the fast path
    np.float32(2.5),  # scalar: not on the fast path
])
def test_tensor_proto_fast_paths_match_tensorflow(value):
    from serving.grpc_server import to_ndarray, to_tensor_proto

    ours = predict_pb2.PredictResponse().outputs["t"]
    to_tensor_proto(value, ours, tensor_content=True)
    theirs = tf.make_tensor_proto(value)
    assert ours == theirs  # field by field, as tf.make_tensor_proto writes it
    back, expected = to_ndarray(theirs), tf.make_ndarray(theirs)
    assert back.dtype == expected.dtype and back.shape == expected.shape
    np.testing.assert_array_equal(back, expected)


def test_to_ndarray_falls_back_for_a_value_that_fills_the_shape():
    from serving.grpc_server import to_ndarray

    proto = tf.make_tensor_proto(b"same", dtype=tf.string, shape=[3])  # one string_val
    np.testing.assert_array_equal(to_ndarray(proto), tf.make_ndarray(proto))
    assert to_ndarray(proto).tolist() == [b"same"] * 3


def test_unknown_dtype_and_multi_inference_get_clear_codes(channel):
    from tensorflow.core.framework import tensor_pb2
    from tensorflow_serving.apis import inference_pb2

    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "nwp"
    req.inputs["text"].CopyFrom(tensor_pb2.TensorProto(dtype=999, string_val=[b"a"]))
    with pytest.raises(grpc.RpcError) as info:
        stub.Predict(req, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown DataType 999" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(inference_pb2.MultiInferenceRequest(), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at least one task" in info.value.details()
    request = inference_pb2.MultiInferenceRequest()  # a language model has no classifier
    task = request.tasks.add()
    task.model_spec.name, task.method_name = "nwp", "tensorflow/serving/classify"
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "No classification inputs found" in info.value.details()


# The field Tensor::AsProtoField (tensorflow/core/framework/tensor.cc) fills for each dtype.
@pytest.mark.parametrize("value, field", [
    (np.arange(6, dtype=np.float32).reshape(2, 3) / 7, "float_val"),
    (np.array([1e300, -0.0, np.inf]), "double_val"),
    (np.array([[1, -2], [3, 2**31 - 1]], dtype=np.int32), "int_val"),
    (np.array([-128, 127], dtype=np.int8), "int_val"),
    (np.array([-(2**15), 7], dtype=np.int16), "int_val"),
    (np.array([0, 255], dtype=np.uint8), "int_val"),
    (np.array([-(2**63), 2**63 - 1], dtype=np.int64), "int64_val"),
    (np.array([2**64 - 1], dtype=np.uint64), "uint64_val"),
    (np.array([True, False]), "bool_val"),
    (np.float32(2.5), "float_val"),
    (np.zeros((0, 5), np.float32), "float_val"),
    (np.array([b"a", b"\xff"], dtype=object), "string_val"),
])
def test_typed_fields_by_default(value, field):
    from serving.grpc_server import to_tensor_proto

    ours = predict_pb2.PredictResponse().outputs["t"]
    to_tensor_proto(value, ours)
    assert not ours.tensor_content
    assert len(getattr(ours, field)) == np.asarray(value).size
    assert ours.dtype == tf.as_dtype(np.asarray(value).dtype if field != "string_val"
                                     else tf.string).as_datatype_enum
    back = tf.make_ndarray(ours)
    assert back.shape == np.shape(value)
    np.testing.assert_array_equal(back, value)


def test_missing_or_empty_model_spec_is_invalid_argument(channel):
    # TF Serving: "Missing ModelSpec" (predict_impl.cc, get_model_metadata_impl.cc,
    # get_model_status_impl.cc) and "ModelSpec has no name specified." (server_core.cc)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    no_spec = predict_pb2.PredictRequest()
    no_spec.inputs["text"].CopyFrom(tf.make_tensor_proto(["a"]))
    empty_name = _request(["a"], name="")
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    status = get_model_status_pb2.GetModelStatusRequest()
    for call, request, text in (
            (stub.Predict, no_spec, "Missing ModelSpec"),
            (stub.Predict, empty_name, "ModelSpec has no name specified."),
            (stub.GetModelMetadata, metadata, "Missing ModelSpec"),
            (model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus, status,
             "Missing ModelSpec")):
        with pytest.raises(grpc.RpcError) as info:
            call(request, timeout=30)
        assert (info.value.code(), info.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                             text)
    metadata.model_spec.name = ""
    with pytest.raises(grpc.RpcError) as info:
        stub.GetModelMetadata(metadata, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stub.Predict(_request(["the"]), timeout=30).outputs["words"].string_val  # still up


def test_tensor_content_flag_unix_socket_and_no_effect_flags(exported, tmp_path):
    """One server with --enable_serialization_as_tensor_content=true, --grpc_socket_path and
    flags tensorflow_model_server takes that have no effect here."""
    from tests.conftest import launch_server

    sock = tmp_path / "grpc.sock"
    quiet = ["--rest_api_num_threads=4", "--monitoring_config_file=/nonexistent",
             "--enable_model_warmup=false", "--xla_cpu_compilation_enabled"]
    with open(tmp_path / "log", "w+") as log:
        proc, _, _ = launch_server(f"--model_base_path={exported[0]}", "--model_name=nwp",
                                   "--enable_serialization_as_tensor_content=true",
                                   f"--grpc_socket_path={sock}",
                                   "--grpc_channel_arguments=grpc.max_connection_age_ms=60000",
                                   *quiet, log=log)
        try:
            with grpc.insecure_channel(f"unix:{sock}") as ch:
                grpc.channel_ready_future(ch).result(timeout=60)
                stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
                resp = stub.Predict(_request(PROMPTS), timeout=30)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        log.seek(0)
        lines = log.read().splitlines()
    direct = tf.saved_model.load(str(exported[1])).signatures["serving_default"](
        text=tf.constant(PROMPTS))
    probs = resp.outputs["probabilities"]
    want = direct["probabilities"].numpy()
    assert not probs.float_val and len(probs.tensor_content) == want.size * 4
    np.testing.assert_allclose(np.frombuffer(probs.tensor_content, "<f4").reshape(want.shape),
                               want, rtol=1e-6)
    np.testing.assert_allclose(tf.make_ndarray(probs), want, rtol=1e-6)
    assert list(resp.outputs["words"].string_val) == direct["words"].numpy().ravel().tolist()
    for flag in quiet:
        name = flag.split("=")[0]
        said = [line for line in lines if line.startswith(f"nwp-serve: {name} has no effect")]
        assert len(said) == 1, (name, lines)
    assert f"gRPC on unix:{sock}" in lines


def test_complete_over_grpc_equals_the_saved_model_and_an_empty_prompt_is_invalid(channel,
                                                                                   exported):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    prompts = ["the va", "of the ", "zzzq"]
    req = _request(prompts)
    req.model_spec.signature_name = "complete"
    resp = stub.Predict(req, timeout=30)
    direct = tf.saved_model.load(str(exported[1])).signatures["complete"](
        text=tf.constant(prompts))
    for key in ("words", "prefix"):
        np.testing.assert_array_equal(tf.make_ndarray(resp.outputs[key]), direct[key].numpy())
    np.testing.assert_allclose(tf.make_ndarray(resp.outputs["probabilities"]),
                               direct["probabilities"].numpy(), rtol=1e-6)
    req = _request(["the", ""])
    req.model_spec.signature_name = "complete"
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(req, timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "a prompt is empty" in err.value.details()
