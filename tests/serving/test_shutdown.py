"""Graceful shutdown: on SIGTERM, REST and gRPC requests already in flight are answered,
then the server exits 0."""

import concurrent.futures
import json
import signal
import time
import urllib.request

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from tests.conftest import launch_server


def test_sigterm_finishes_requests_in_flight_without_waiting_for_batch_mates(exported,
                                                                            tmp_path):
    params = tmp_path / "batching.config"
    # Every request would wait 60 s for batch-mates, so it is surely in flight at the
    # SIGTERM; at shutdown the batcher runs it at once.
    params.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 60000000 }\n")
    proc, port, grpc_port = launch_server(
        "--model_name=nwp", f"--model_base_path={exported[0]}", "--enable_batching",
        f"--batching_parameters_file={params}", grpc=True)
    url = f"http://127.0.0.1:{port}/v1/models/nwp"
    try:
        def rest():
            body = json.dumps({"instances": ["the name of the"]}).encode()
            with urllib.request.urlopen(urllib.request.Request(f"{url}:predict", data=body),
                                        timeout=60) as r:
                return r.status, json.loads(r.read())

        def grpc_call():
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                req = predict_pb2.PredictRequest()
                req.model_spec.name = "nwp"
                req.inputs["text"].CopyFrom(tf.make_tensor_proto(["return"], dtype=tf.string))
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                return stub.Predict(req, timeout=60)

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            rest_answer, grpc_answer = pool.submit(rest), pool.submit(grpc_call)
            time.sleep(1.0)
            assert not rest_answer.done() and not grpc_answer.done()  # waiting in the batcher
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            status, body = rest_answer.result(timeout=90)
            reply = grpc_answer.result(timeout=90)
            answered_after = time.monotonic() - signalled
        assert answered_after < 20  # not the 60 s batch timeout
        assert status == 200 and len(body["predictions"][0]["words"]) == 5
        assert len(tf.make_ndarray(reply.outputs["words"])[0]) == 5
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigterm_under_grpc_load_answers_every_call_ok_or_unavailable(exported):
    """Clients calling in a loop when SIGTERM comes: every call they made ends OK or
    UNAVAILABLE ("shutting down", retryable), none CANCELLED; then exit 0."""
    import threading

    proc, _, grpc_port = launch_server("--model_name=nwp", f"--model_base_path={exported[0]}",
                                       grpc=True)
    outcomes, lock = {}, threading.Lock()
    try:
        def client():
            with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                req = predict_pb2.PredictRequest()
                req.model_spec.name = "nwp"
                req.inputs["text"].CopyFrom(tf.make_tensor_proto(["the"], dtype=tf.string))
                while True:  # until the server says it is going away
                    try:
                        stub.Predict(req, timeout=30)
                        code = "OK"
                    except grpc.RpcError as err:
                        code = err.code().name
                    with lock:
                        outcomes[code] = outcomes.get(code, 0) + 1
                    if code != "OK":
                        return

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=60)
        assert proc.wait(timeout=60) == 0
        assert outcomes.get("OK", 0) > 0 and set(outcomes) <= {"OK", "UNAVAILABLE"}, outcomes
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
