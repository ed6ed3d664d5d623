"""``--prefer_tflite_model``: serving_default answered by the version's LiteRT bundle, equal
to the SavedModel's answer within 1e-5."""

import json
import shutil
import urllib.request

import numpy as np
import pytest

from serving.litert_export import write_bundle
from serving.servable import Servable
from tests.conftest import running_server
from zoo import NextWordPredictor

PROMPTS = ["", "the", "the value of the", "an unknownword here", "a, b; and (c)"]


@pytest.fixture(scope="module")
def with_bundle(exported, tiny_run, tmp_path_factory):
    """A model base path whose version 1 is the tiny export plus a float32 LiteRT bundle."""
    base = tmp_path_factory.mktemp("tflite_models") / "nwp"
    shutil.copytree(exported[1], base / "1")
    write_bundle(NextWordPredictor.load(str(tiny_run)), str(base / "1"),
                 quantization="float32")
    return base


def test_litert_answers_serving_default_as_the_saved_model_does(with_bundle):
    saved = Servable("nwp", 1, str(with_bundle / "1"))
    lite = Servable("nwp", 1, str(with_bundle / "1"), prefer_tflite=True)
    assert saved.litert is None and lite.litert is not None
    text = np.array([p.encode() for p in PROMPTS], dtype=object)
    want = saved.predict("", {"text": text})
    loaded, lite._loaded = lite._loaded, None  # serving_default must not need the SavedModel
    got = lite.predict("", {"text": text})
    lite._loaded = loaded
    assert got["words"].shape == want["words"].shape
    # the same words in the same order, unless two probabilities tie within rounding
    np.testing.assert_allclose(got["probabilities"], want["probabilities"], atol=1e-5)
    same = want["words"] == got["words"]
    close_ties = np.abs(np.diff(want["probabilities"], axis=1)) < 1e-5
    assert same.all() or close_ties.any(), (want["words"], got["words"])
    # the other signatures still run in the SavedModel
    np.testing.assert_allclose(lite.predict("score", {"text": text})["perplexity"],
                               saved.predict("score", {"text": text})["perplexity"])


def test_without_model_tflite_the_flag_changes_nothing(exported):
    assert Servable("nwp", 1, str(exported[1]), prefer_tflite=True).litert is None


@pytest.mark.slow
def test_nwp_serve_answers_with_the_bundle(with_bundle):
    with running_server("--model_name=nwp", f"--model_base_path={with_bundle}",
                        "--prefer_tflite_model") as (url, _):
        request = urllib.request.Request(f"{url}/v1/models/nwp:predict",
                                         data=json.dumps({"instances": ["the"]}).encode())
        with urllib.request.urlopen(request, timeout=60) as resp:
            answer = json.loads(resp.read())["predictions"][0]
    want = Servable("nwp", 1, str(with_bundle / "1")).predict(
        "", {"text": np.array([b"the"], dtype=object)})
    np.testing.assert_allclose(answer["probabilities"], want["probabilities"][0], atol=1e-5)
