"""Serving throughput and latency: in process vs nwp-serve's REST and gRPC APIs.

Side by side in one run, on one exported model:

* **in process**: ``signatures["serving_default"]`` called directly on batches of
  ``--clients`` prompts (the practical limit of batching) and on single prompts;
* **REST / gRPC with batching**: ``--clients`` concurrent clients (threads), each sending one
  prompt per request for ``--seconds``, against ``nwp-serve --enable_batching``
  (max_batch_size = clients, batch_timeout_micros ``--timeout-us``);
* **single client**: one client, one prompt per request: p50 latency.

The clients run on the same machine as the server (loopback), so on a 2-core machine they
take CPU from it: the ratios are a lower bound for a server with its own cores. Usage::

    python benchmarks/serving_speed.py --model_base_path saved_models/ptb
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

PROMPTS = ["the company said", "in the", "shares of the", "the new york stock", "it is",
           "the market", "a spokesman for the", "mr."]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rest_call(url, prompt):
    data = json.dumps({"instances": [prompt]}).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as r:
        r.read()


def grpc_call(stub, prompt):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = "m"
    req.inputs["text"].CopyFrom(tf.make_tensor_proto([prompt], dtype=tf.string))
    stub.Predict(req, timeout=30)


def throughput(call, clients, seconds):
    """Requests per second from ``clients`` threads calling ``call(prompt)``."""
    stop = time.monotonic() + seconds

    def loop(i):
        n = 0
        while time.monotonic() < stop:
            call(PROMPTS[(i + n) % len(PROMPTS)])
            n += 1
        return n

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(loop, range(clients)))
    return total / (time.monotonic() - start)


def p50_ms(call, n):
    times = []
    for i in range(n):
        start = time.perf_counter()
        call(PROMPTS[i % len(PROMPTS)])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_base_path", default="saved_models/ptb")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=15)
    p.add_argument("--timeout-us", type=int, default=2000)
    p.add_argument("--latency-requests", type=int, default=200)
    args = p.parse_args(argv)

    versions = sorted(int(v) for v in os.listdir(args.model_base_path) if v.isdigit())
    signature = tf.saved_model.load(
        os.path.join(args.model_base_path, str(versions[-1]))).signatures["serving_default"]
    batch = tf.constant([PROMPTS[i % len(PROMPTS)] for i in range(args.clients)])
    for _ in range(5):
        signature(text=batch)
    start, calls = time.monotonic(), 0
    while time.monotonic() - start < args.seconds:
        signature(text=batch)
        calls += 1
    in_process = calls * args.clients / (time.monotonic() - start)
    in_process_p50 = p50_ms(lambda s: signature(text=tf.constant([s])), args.latency_requests)

    params = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".batching.config")
    with open(params, "w") as f:
        f.write(f"max_batch_size {{ value: {args.clients} }}\n"
                f"batch_timeout_micros {{ value: {args.timeout_us} }}\n"
                f"num_batch_threads {{ value: {os.cpu_count()} }}\n"
                f"max_enqueued_batches {{ value: 1000 }}\n")
    rest_port, grpc_port = free_port(), free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.rest", f"--rest_api_port={rest_port}",
         f"--port={grpc_port}", "--model_name=m", f"--model_base_path={args.model_base_path}",
         "--enable_batching", f"--batching_parameters_file={params}",
         f"--max_batch_size_per_request={args.clients}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{rest_port}/v1/models/m:predict"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                rest_call(url, "the")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.3)
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        rest = throughput(lambda s: rest_call(url, s), args.clients, args.seconds)
        grpc_rate = throughput(lambda s: grpc_call(stub, s), args.clients, args.seconds)
        rest_p50 = p50_ms(lambda s: rest_call(url, s), args.latency_requests)
        grpc_p50 = p50_ms(lambda s: grpc_call(stub, s), args.latency_requests)
    finally:
        server.terminate()
        server.wait(timeout=30)
        os.remove(params)

    print(f"# {args.model_base_path} v{versions[-1]}, {os.cpu_count()} CPUs, "
          f"{args.clients} clients x {args.seconds:.0f} s, batch timeout {args.timeout_us} us")
    print("| path | prompts/s | / in process | p50 latency, 1 client (ms) | - in process (ms) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| in process, batches of {args.clients} | {in_process:,.0f} | 1.00 | "
          f"{in_process_p50:.2f} | 0 |")
    for name, rate, p50 in (("REST + batching", rest, rest_p50),
                            ("gRPC + batching", grpc_rate, grpc_p50)):
        print(f"| {name} | {rate:,.0f} | {rate / in_process:.2f} | {p50:.2f} | "
              f"{p50 - in_process_p50:+.2f} |")


if __name__ == "__main__":
    main()
