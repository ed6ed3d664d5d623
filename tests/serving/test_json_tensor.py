"""JSON <-> tensor rules of TF Serving's REST API (reference sections 1.4-1.8)."""

import numpy as np
import pytest
import tensorflow as tf

from serving.errors import ServingError
from serving.json_tensor import format_predict_response, parse_predict_request, value_to_array

ONE = {"text": tf.string}
TWO = {"a": tf.int32, "s": tf.string}


def _error(fn, *args):
    with pytest.raises(ServingError) as info:
        fn(*args)
    return info.value


def test_row_format_stacks_instances():
    inputs, row = parse_predict_request({"instances": ["a b", "c"]}, ONE)
    assert row and inputs["text"].tolist() == [b"a b", b"c"]


def test_row_format_named_objects_and_b64():
    body = {"instances": [{"a": [1, 2], "s": {"b64": "aGk="}}, {"a": [3, 4], "s": "x"}]}
    inputs, _ = parse_predict_request(body, TWO)
    np.testing.assert_array_equal(inputs["a"], [[1, 2], [3, 4]])
    assert inputs["a"].dtype == np.int32
    assert inputs["s"].tolist() == [b"hi", b"x"]


def test_columnar_format_keeps_the_nesting():
    inputs, row = parse_predict_request({"inputs": {"a": [[1], [2]], "s": "z", "extra": 1}},
                                        TWO)
    assert not row and inputs["a"].shape == (2, 1) and inputs["s"].shape == ()


@pytest.mark.parametrize("body, text", [
    ({"instances": [], }, "No values in 'instances' array"),
    ({"instances": "a"}, "Expecting 'instances' to be an list/array"),
    ({"signature_name": "x"}, "Missing 'inputs' or 'instances' key"),
    ({"instances": ["a"], "inputs": ["a"]}, "only one of 'inputs' or 'instances'"),
    ({"instances": [1]}, "is not of expected type: string"),
    ({"instances": [None]}, "is not of expected type: string"),
    ({"instances": [{"b64": "!!"}]}, "base64"),
    ({"instances": [["a", "b"], ["c"]]}, "Expecting tensor size: 2 but got: 1"),
    ({"instances": ["a", {"text": "b"}]}, "Expecting value/list but got object at item 1"),
])
def test_bad_single_input_requests(body, text):
    err = _error(parse_predict_request, body, ONE)
    assert err.http_status == 400 and text in err.message


@pytest.mark.parametrize("body, text", [
    ({"instances": [1]}, "instances is a plain list"),
    ({"instances": [{"a": 1}]}, "keys must be equal to: a,s"),
    ({"instances": [{"a": 1, "s": "x", "z": 0}]}, "does not have named input: z"),
    ({"instances": [{"a": 1.0, "s": "x"}]}, "is not of expected type: int32"),
    ({"instances": [{"a": True, "s": "x"}]}, "is not of expected type: int32"),
    ({"instances": [{"a": 2 ** 31, "s": "x"}]}, "is not of expected type: int32"),
    ({"inputs": {"a": 1}}, "Missing named input: s"),
    ({"inputs": [1, 2]}, "expecting an object as multiple input tensors"),
])
def test_bad_multi_input_requests(body, text):
    err = _error(parse_predict_request, body, TWO)
    assert err.http_status == 400 and text in err.message


def test_ragged_nesting_inside_one_value():
    err = _error(value_to_array, [[1, 2], [3]], tf.int32)
    assert "unexpected size: 1 at level: 1 expected size: 2" in err.message


def test_floats_accept_ints_and_non_finite_but_not_bools():
    np.testing.assert_array_equal(value_to_array([1, 2.5, float("inf")], tf.float32),
                                  np.array([1.0, 2.5, np.inf], "float32"))
    assert "float" in _error(value_to_array, [True], tf.float32).message


def test_half_precision_is_unimplemented():
    assert _error(value_to_array, [1.0], tf.float16).http_status == 501


def test_row_response_one_entry_per_batch_row():
    out = {"words": np.array([[b"a", b"b"], [b"c", b"d"]], dtype=object),
           "probabilities": np.array([[0.5, 0.25], [0.75, 0.125]], "float32")}
    assert format_predict_response(out, True) == {"predictions": [
        {"probabilities": [0.5, 0.25], "words": ["a", "b"]},
        {"probabilities": [0.75, 0.125], "words": ["c", "d"]}]}
    assert format_predict_response(out, False) == {"outputs": {
        "probabilities": [[0.5, 0.25], [0.75, 0.125]], "words": [["a", "b"], ["c", "d"]]}}


def test_bytes_outputs_are_base64_and_single_outputs_drop_the_name():
    out = {"raw_bytes": np.array([b"hi", b"\xff"], dtype=object)}
    assert format_predict_response(out, True) == {"predictions": [{"b64": "aGk="},
                                                                   {"b64": "/w=="}]}


def test_row_response_needs_a_shared_batch_size():
    out = {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))}
    assert "inconsistent batch size" in _error(format_predict_response, out, True).message


@pytest.mark.parametrize("dtype, good, bad, text", [
    (tf.int8, [-128, 127], 128, "out of range for int8 (-128..127)"),
    (tf.int8, [0], -129, "out of range for int8"),
    (tf.int16, [-32768, 32767], 32768, "out of range for int16 (-32768..32767)"),
    (tf.uint8, [0, 255], 256, "not of expected type: uint8"),
    (tf.uint8, [1], -1, "not of expected type: uint8"),
])
def test_narrow_ints_are_range_checked(dtype, good, bad, text):
    np.testing.assert_array_equal(value_to_array(good, dtype), good)
    assert value_to_array(good, dtype).dtype == dtype.as_numpy_dtype
    err = _error(value_to_array, [bad], dtype)
    assert err.code == "INVALID_ARGUMENT" and text in err.message
