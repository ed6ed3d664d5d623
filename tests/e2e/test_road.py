"""The whole road with the user's commands: nwp-train -> nwp-export -> nwp-serve -> nwp-client."""

import re
from urllib.parse import urlparse

import numpy as np
import tensorflow as tf

from tests.conftest import run_cli


def test_client_prints_the_served_top_5_for_each_prompt(server, exported):
    port = urlparse(server).port
    prompts = ["the value of", "return"]
    proc = run_cli("serving.client", "--rest_api_port", port, "--wait", "30", *prompts)
    lines = proc.stdout.strip().split("\n")
    assert len(lines) == len(prompts)
    direct = tf.saved_model.load(str(exported[1])).signatures["serving_default"](
        text=tf.constant(prompts))
    for i, line in enumerate(lines):
        pairs = re.findall(r"(\S+) \((\d\.\d{4})\)", line.split(" -> ", 1)[1])
        assert [w for w, _ in pairs] == [w.decode() for w in direct["words"].numpy()[i]]
        np.testing.assert_allclose([float(p) for _, p in pairs],
                                   direct["probabilities"].numpy()[i], atol=6e-5)


def test_client_reports_a_server_error_without_a_traceback(server):
    port = urlparse(server).port
    proc = run_cli("serving.client", "--rest_api_port", port, "--model_name", "missing", "x",
                   check=False)
    assert proc.returncode == 1
    assert "HTTP 404" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_without_any_version_refuses_to_start(tmp_path):
    proc = run_cli("serving.rest", "--model_base_path", tmp_path, "--rest_api_port", "0",
                   check=False, timeout=120)
    assert proc.returncode == 2
    assert "No loadable version of model" in proc.stderr and "Traceback" not in proc.stderr
