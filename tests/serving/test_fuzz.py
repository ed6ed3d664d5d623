"""Property-based fuzzing of the REST API: any body on any path gets a JSON 4xx or a 200,
never a 5xx, and the server keeps answering."""

import json
import urllib.error
import urllib.request

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)

BODIES = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({}, optional={
        "instances": JSON, "inputs": JSON, "signature_name": JSON, "examples": JSON,
    }).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)
PATHS = st.one_of(
    st.sampled_from(["/v1/models/nwp:predict", "/v1/models/nwp/versions/1:predict",
                     "/v1/models/nwp:classify", "/v1/models/nwp:regress",
                     "/v1/models/nwp/labels/x:predict", "/v1/models/nwp/metadata",
                     "/v1/models/nwp"]),
    st.text(alphabet="abcv1/:%.-_0123456789", max_size=40).map(lambda p: "/v1/" + p),
)


def _send(url, method, data):
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=PATHS, body=BODIES, method=st.sampled_from(["POST", "GET", "PUT"]))
def test_fuzzed_requests_never_get_a_5xx(server, path, body, method):
    status, payload = _send(server + path.replace(" ", "%20"), method,
                            body if method != "GET" else None)
    assert status < 500, (status, path, body, payload[:300])
    if status != 200 and status != 404:
        assert "error" in json.loads(payload)


def test_the_server_still_answers_after_the_fuzzing(server):
    status, payload = _send(server + "/v1/models/nwp:predict", "POST",
                            json.dumps({"instances": ["the"]}).encode())
    assert status == 200 and len(json.loads(payload)["predictions"][0]["words"]) == 5
