"""``nwp-serve --event_loop=uvloop``: the same answers as the SavedModel in process, over REST
and gRPC, on uvloop's loop; a clean SIGTERM exit; a clear start-up error without the
package."""

import json
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.conftest import ROOT, launch_server

PROMPTS = ["the name of the", "return"]


def test_uvloop_answers_as_the_savedmodel_in_process(exported, tmp_path):
    pytest.importorskip("uvloop")
    import grpc

    expected = tf.saved_model.load(str(exported[1])).signatures["serving_default"](
        text=tf.constant(PROMPTS))
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 0 }\n")
    proc, port, grpc_port = launch_server(
        "--model_name=nwp", f"--model_base_path={exported[0]}", "--event_loop=uvloop",
        "--enable_batching", f"--batching_parameters_file={params}", grpc=True)
    try:
        body = json.dumps({"instances": PROMPTS}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/nwp:predict", data=body)
        with urllib.request.urlopen(request, timeout=60) as answer:
            rest = json.load(answer)["predictions"]
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            req = predict_pb2.PredictRequest()
            req.model_spec.name = "nwp"
            req.inputs["text"].CopyFrom(tf.make_tensor_proto(PROMPTS, dtype=tf.string))
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                req, timeout=60)
        want_words = [[w.decode() for w in row] for row in expected["words"].numpy()]
        assert [row["words"] for row in rest] == want_words
        np.testing.assert_allclose([row["probabilities"] for row in rest],
                                   expected["probabilities"].numpy(), rtol=1e-6)
        assert tf.make_ndarray(reply.outputs["words"]).tolist() == \
            expected["words"].numpy().tolist()
        np.testing.assert_allclose(tf.make_ndarray(reply.outputs["probabilities"]),
                                   expected["probabilities"].numpy(), rtol=1e-6)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "event loop: uvloop.Loop" in out  # the loop that ran, as the server saw it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_uvloop_missing_is_a_start_up_error_before_any_model_loads(tmp_path):
    # The package cannot be imported (sys.modules entry None); the model path does not even
    # exist, so only a check made before loading can produce this message.
    code = ("import sys; sys.modules['uvloop'] = None; from serving.server import main; "
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run(
        [sys.executable, "-c", code, "--event_loop=uvloop", "--rest_api_port=0", "--port=0",
         f"--model_base_path={tmp_path / 'missing'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--event_loop=uvloop needs the uvloop package: pip install uvloop" in proc.stderr
    assert "missing" not in proc.stderr  # failed before looking for the model


def test_event_loop_flag_refuses_unknown_loops():
    proc = subprocess.run([sys.executable, "-m", "serving.server", "--event_loop=trio"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "invalid choice: 'trio'" in proc.stderr
