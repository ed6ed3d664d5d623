"""REST conformance on fixture models the test builds itself: a float model
(y = 0.5 x + 2, TF Serving's half_plus_two) and a two-input model (int32 and string inputs,
a string output whose name ends in _bytes). Expected answers follow TF Serving's
``tensorflow_serving/util/json_tensor_test.cc`` and ``g3doc/api_rest.md``
(github.com/tensorflow/serving)."""

import json
import math
import urllib.error
import urllib.request

import pytest
import tensorflow as tf

from tests.conftest import running_server


class HalfPlusTwo(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"y": 0.5 * x + 2.0}


class TwoInputs(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32, name="n"),
                                  tf.TensorSpec([None], tf.string, name="s")])
    def serve(self, n, s):
        repeated = tf.strings.join([s, tf.strings.as_string(n)], separator=":")
        return {"joined_bytes": repeated, "doubled": n * 2}


class Narrow(tf.Module):
    """int8 and int16 inputs, widened and added: a + b as int32."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int8, name="a"),
                                  tf.TensorSpec([None], tf.int16, name="b")])
    def serve(self, a, b):
        return {"sum": tf.cast(a, tf.int32) + tf.cast(b, tf.int32)}


@pytest.fixture(scope="module")
def fixture_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("fixtures")
    config = ["model_config_list {"]
    for name, module in (("half", HalfPlusTwo()), ("two", TwoInputs()), ("narrow", Narrow())):
        tf.saved_model.save(module, str(base / name / "1"),
                            signatures={"serving_default": module.serve})
        config.append(f"  config {{ name: '{name}' base_path: '{base / name}' }}")
    config.append("}")
    (base / "models.config").write_text("\n".join(config))
    with running_server(f"--model_config_file={base / 'models.config'}",
                        model="half") as (url, _):
        yield url


def post(url, path, raw):
    req = urllib.request.Request(url + path, data=raw.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


CASES = [
    # float model: row and columnar, ints accepted for floats, non-finite values
    ("half", '{"instances": [1.0, 2, 5.5]}', 200, {"predictions": [2.5, 3.0, 4.75]}),
    ("half", '{"inputs": [1.0, 3.0]}', 200, {"outputs": [2.5, 3.5]}),
    ("half", '{"inputs": {"x": [4]}}', 200, {"outputs": [4.0]}),
    ("half", '{"instances": [Infinity]}', 200, {"predictions": [math.inf]}),
    ("half", '{"instances": ["1"]}', 400, "is not of expected type: float"),
    ("half", '{"instances": [true]}', 400, "is not of expected type: float"),
    ("half", '{"instances": [[1.0], [2.0, 3.0]]}', 400, "Expecting tensor size: 1 but got: 2"),
    # two inputs: objects with exactly the input keys, int32 checks, _bytes outputs as b64
    ("two", '{"instances": [{"n": 1, "s": "a"}, {"n": 2, "s": {"b64": "Yg=="}}]}', 200,
     {"predictions": [{"doubled": 2, "joined_bytes": {"b64": "YTox"}},
                      {"doubled": 4, "joined_bytes": {"b64": "Yjoy"}}]}),
    ("two", '{"inputs": {"n": [3], "s": ["c"]}}', 200,
     {"outputs": {"doubled": [6], "joined_bytes": [{"b64": "Yzoz"}]}}),  # base64("c:3")
    ("two", '{"instances": [{"n": 1}]}', 400, "keys must be equal to: n,s"),
    ("two", '{"instances": [{"n": 1.5, "s": "a"}]}', 400, "is not of expected type: int32"),
    ("two", '{"instances": [{"n": 2147483648, "s": "a"}]}', 400, "expected type: int32"),
    ("two", '{"instances": [1, 2]}', 400, "instances is a plain list"),
    ("two", '{"inputs": {"n": [1]}}', 400, "Missing named input: s"),
    ("two", '{"instances": [{"n": 1, "s": {"b64": "***"}}]}', 400, "base64"),
    # int8/int16: the ends of their ranges pass, one past them is a 400 naming the range
    # (TF Serving would wrap such a value silently; a 500 was the old answer here)
    ("narrow", '{"inputs": {"a": [127, -128], "b": [32767, -32768]}}', 200,
     {"outputs": [32894, -32896]}),
    ("narrow", '{"inputs": {"a": [128], "b": [0]}}', 400, "out of range for int8 (-128..127)"),
    ("narrow", '{"inputs": {"a": [0], "b": [-32769]}}', 400,
     "out of range for int16 (-32768..32767)"),
    ("narrow", '{"instances": [{"a": -129, "b": 0}]}', 400, "out of range for int8"),
]


@pytest.mark.parametrize("model, raw, code, expected", CASES)
def test_rest_conformance(fixture_server, model, raw, code, expected):
    status, text = post(fixture_server, f"/v1/models/{model}:predict", raw)
    assert status == code, text
    if code == 200:
        assert json.loads(text) == expected
    else:
        assert expected in json.loads(text)["error"]


def test_out_of_range_leaves_the_server_serving(fixture_server):
    assert post(fixture_server, "/v1/models/narrow:predict",
                '{"inputs": {"a": [300], "b": [1]}}')[0] == 400
    assert post(fixture_server, "/v1/models/narrow:predict",
                '{"inputs": {"a": [3], "b": [1]}}')[0] == 200


@pytest.mark.parametrize("method, path, raw, code", [
    ("POST", "/v1/models/half:predict", '{"instances": [1.0]}', 200),
    ("POST", "/v1/models/half:predict", '{"instances": ["x"]}', 400),
    ("POST", "/v1/models/nope:predict", '{"instances": [1.0]}', 404),
    ("GET", "/v1/models/half", None, 200),
    ("GET", "/v1/models/half/metadata", None, 200),
    ("GET", "/v1/models/half/versions/9", None, 404),
])
def test_content_type_is_application_json_without_a_charset(fixture_server, method, path,
                                                             raw, code):
    # TF Serving sets exactly "Content-Type: application/json" (http_rest_api_util.cc)
    req = urllib.request.Request(fixture_server + path, method=method,
                                 data=raw.encode() if raw is not None else None)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, headers = resp.status, resp.headers
    except urllib.error.HTTPError as err:
        status, headers = err.code, err.headers
    assert status == code
    assert headers.get_all("Content-Type") == ["application/json"]


def test_nan_outputs_are_the_bare_token(fixture_server):
    status, text = post(fixture_server, "/v1/models/half:predict", '{"instances": [NaN]}')
    assert status == 200 and text.replace(" ", "") == '{"predictions":[NaN]}'


def test_metadata_of_the_two_input_model(fixture_server):
    with urllib.request.urlopen(f"{fixture_server}/v1/models/two/metadata") as resp:
        sig = json.loads(resp.read())["metadata"]["signature_def"]["signature_def"][
            "serving_default"]
    assert {k: v["dtype"] for k, v in sig["inputs"].items()} == {"n": "DT_INT32",
                                                                "s": "DT_STRING"}
    assert sig["outputs"]["joined_bytes"]["dtype"] == "DT_STRING"
