"""Fixtures of the serving tests: TF Serving-style test models (TF1 and TF2) and one
``nwp-serve`` serving them."""

import pytest

from tests.conftest import running_server
from tests.serving.tfserving_models import start_tf1_models, write_tf2_model


@pytest.fixture(scope="session")
def half_plus_models(tmp_path_factory):
    """``{name: base path}`` of the half_plus_two / half_plus_three fixture models
    (:mod:`tests.serving.tfserving_models`), each with one version, ``123`` as in TF Serving's
    test data: ``tf1_half_plus_two``, ``tf1_half_plus_three`` (TF1 style, reference
    variables) and ``tf2_half_plus_two`` (``tf.saved_model.save``)."""
    root = tmp_path_factory.mktemp("tfserving_models")
    bases = {name: root / name for name in
             ("tf1_half_plus_two", "tf1_half_plus_three", "tf2_half_plus_two")}
    tf1_done = start_tf1_models({bases["tf1_half_plus_two"] / "123": 2.0,
                                 bases["tf1_half_plus_three"] / "123": 3.0})
    write_tf2_model(bases["tf2_half_plus_two"] / "123", b=2.0)  # meanwhile, in process
    tf1_done()
    return bases


@pytest.fixture(scope="session")
def half_plus_config(half_plus_models, tmp_path_factory):
    """A ``--model_config_file`` serving every :func:`half_plus_models` model, version 123
    labelled ``stable``."""
    path = tmp_path_factory.mktemp("config") / "models.config"
    path.write_text("model_config_list {\n" + "".join(
        f'  config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow"'
        ' version_labels { key: "stable" value: 123 } }\n'
        for name, base in half_plus_models.items()) + "}\n")
    return path


@pytest.fixture(scope="session")
def half_plus_server(half_plus_config):
    """``(REST URL, gRPC target)`` of nwp-serve serving :func:`half_plus_models`."""
    with running_server(f"--model_config_file={half_plus_config}",
                        "--rest_api_timeout_in_ms=5000", model="tf1_half_plus_two",
                        grpc=True) as addresses:
        yield addresses
