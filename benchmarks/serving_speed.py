"""Serving throughput and latency: in process vs nwp-serve's REST and gRPC APIs.

Side by side in one run, on one exported model, in alternating rounds (in process, REST,
gRPC, then again), so that the machine's drift hits every path alike:

* **in process**: ``signatures["serving_default"]`` called directly on batches of
  ``--clients`` prompts (the practical limit of batching), TensorFlow's default threading;
* **REST / gRPC with batching**: ``--clients`` concurrent clients, each sending one prompt
  per request and the next as soon as the answer is in, against ``nwp-serve
  --enable_batching``. The clients are C load generators, ``wrk`` (REST) and ``h2load``
  (gRPC, HTTP/2 with gRPC framing), so that they take little CPU from the server they share
  the machine with; without them (``--python-clients``) Python threads stand in and the
  rates are lower bounds;
* **single client**: one client, one prompt per request, a persistent connection
  (``http.client`` / a gRPC stub): median (p50) latency, against one prompt in process.

With ``--pin CLIENT_CPU,SERVER_CPU`` (default ``0,1``) the comparison measures the server
alone: the server runs on ``SERVER_CPU`` only (``taskset -c``), the load generators
(``wrk``/``h2load``, or this process's Python clients) on ``CLIENT_CPU`` only, and the
in-process signature (every thread of this process) is pinned to ``SERVER_CPU`` while it
runs, so both sides get the same single core. Every row then also gives the CPU microseconds
per prompt of the process that serves it (the server from ``/proc/<pid>/stat``, the
in-process path from this process's CPU time), next to the empty-handler floor
(``--ceiling``, the same stack without a model, pinned the same way).

Every request of the load phases is checked: ``wrk``/``h2load`` count non-2xx answers, and the
server's own counter (``/monitoring/prometheus/metrics``) must show every gRPC call ``OK``.

Usage (Debian: ``apt-get install wrk nghttp2-client``)::

    python benchmarks/serving_speed.py --model_base_path saved_models/ptb [--pin 0,1]
        [--ceiling]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import grpc  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc  # noqa: E402

PROMPTS = ["the company said", "in the", "shares of the", "the new york stock", "it is",
           "the market", "a spokesman for the", "mr."]
MODEL = "m"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def predict_request(prompt):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL
    req.inputs["text"].CopyFrom(tf.make_tensor_proto([prompt], dtype=tf.string))
    return req


def cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pin_this_process(cpus):
    """Move every thread of this process (TensorFlow's pools included) onto ``cpus``; a
    no-op for None. (``os.sched_setaffinity`` per thread id: the system call ``taskset``
    makes.)"""
    if cpus is None:
        return
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):  # a thread that just ended
            pass


def taskset(cpu):
    """The command prefix that runs a program on CPU ``cpu`` only (``[]`` for None)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def rest_rate_wrk(url, clients, seconds, workdir, prefix=()):
    """Requests/s of ``wrk`` with ``clients`` connections cycling through PROMPTS."""
    script = os.path.join(workdir, "predict.lua")
    bodies = ", ".join(json.dumps(json.dumps({"instances": [p]})) for p in PROMPTS)
    with open(script, "w") as f:
        f.write(f"local bodies = {{{bodies}}}\nlocal i = 0\n"
                'local headers = {["Content-Type"] = "application/json"}\n'
                "request = function()\n  i = i % #bodies + 1\n"
                '  return wrk.format("POST", nil, headers, bodies[i])\nend\n')
    out = subprocess.run([*prefix, "wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "-s", script, url],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failed requests:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def grpc_rate_h2load(target, clients, seconds, workdir, prefix=()):
    """Calls/s of ``h2load`` processes (one per prompt, ``clients`` connections in all), each
    sending a framed ``PredictRequest`` (gRPC over HTTP/2, one stream per connection)."""
    procs = []
    for i, prompt in enumerate(PROMPTS):
        n = clients // len(PROMPTS) + (i < clients % len(PROMPTS))
        if n == 0:
            continue
        body = predict_request(prompt).SerializeToString()
        path = os.path.join(workdir, f"grpc{i}.bin")
        with open(path, "wb") as f:  # gRPC message: not compressed, 4-byte length, bytes
            f.write(b"\0" + struct.pack(">I", len(body)) + body)
        procs.append(subprocess.Popen(
            [*prefix, "h2load", "-c", str(n), "-m", "1", "-D", str(seconds), "-d", path,
             "-H", "content-type: application/grpc", "-H", "te: trailers",
             f"http://{target}/tensorflow.serving.PredictionService/Predict"],
            stdout=subprocess.PIPE, text=True))
    total = 0.0
    for proc in procs:
        out = proc.communicate()[0]
        done = re.search(r"requests: .* (\d+) succeeded, (\d+) failed, (\d+) errored", out)
        if done is None or int(done.group(2)) or int(done.group(3)):
            raise SystemExit(f"h2load saw failed requests:\n{out}")
        total += float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    return total


def python_rate(make_call, clients, seconds):
    """Requests/s of ``clients`` Python threads, each calling its own ``make_call()``
    with one prompt after another."""
    stop = time.monotonic() + seconds

    def loop(i):
        call, n = make_call(), 0
        while time.monotonic() < stop:
            call(PROMPTS[(i + n) % len(PROMPTS)])
            n += 1
        return n

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        total = sum(pool.map(loop, range(clients)))
    return total / (time.monotonic() - start)


class RestClient:
    """One persistent HTTP/1.1 connection (what a real client library keeps)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def __call__(self, prompt):
        self.conn.request("POST", f"/v1/models/{MODEL}:predict",
                          body=json.dumps({"instances": [prompt]}),
                          headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"REST answered {response.status}: {body[:300]!r}")


def wait_for(process, rest_port, seconds=120):
    """Return once the server ``process`` answers a REST predict; exit if it dies or is slow."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            RestClient(rest_port)("the")
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"the server did not start: {process.args}")
            time.sleep(0.3)


def p50_ms(call, n):
    times = []
    for i in range(n):
        start = time.perf_counter()
        call(PROMPTS[i % len(PROMPTS)])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def grpc_calls_by_status(rest_port):
    """``{status: count}`` of the gRPC calls the server has answered (its own counter)."""
    with urllib.request.urlopen(
            f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics") as r:
        text = r.read().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith(":tensorflow:serving:request_count_total{") and \
                'entrypoint="GRPC"' in line:
            status = re.search(r'status="(\w+)"', line).group(1)
            counts[status] = counts.get(status, 0) + float(line.rsplit(" ", 1)[1])
    return counts


def serve_empty(rest_port, grpc_port):
    """The floor of this stack's per-request cost: an aiohttp REST handler and a grpc.aio
    Predict that parse the request and answer a fixed top-5 without running a model (the
    ``--ceiling`` rows). Runs until killed."""
    import asyncio

    import numpy as np
    from aiohttp import web

    from serving.grpc_server import to_ndarray, to_tensor_proto

    words = np.array([[b"the", b"of", b"and", b"to", b"a"]], dtype=object)
    probs = np.array([[0.3, 0.2, 0.1, 0.05, 0.01]], dtype=np.float32)

    async def rest(request):
        json.loads(await request.read())
        return web.json_response({"predictions": [{"words": [w.decode() for w in words[0]],
                                                   "probabilities": probs[0].tolist()}]})

    class Empty(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):  # noqa: N802
            to_ndarray(request.inputs["text"])
            reply = predict_pb2.PredictResponse()
            to_tensor_proto(words, reply.outputs["words"])
            to_tensor_proto(probs, reply.outputs["probabilities"])
            return reply

    async def run():
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Empty(), server)
        server.add_insecure_port(f"127.0.0.1:{grpc_port}")
        await server.start()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", rest)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", rest_port).start()
        await asyncio.Event().wait()

    asyncio.run(run())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_base_path", default="saved_models/ptb")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=int, default=8, help="per path and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-batch-size", type=int, default=None,
                   help="server's max_batch_size (default: --clients)")
    p.add_argument("--timeout-us", type=int, default=0, help="server's batch_timeout_micros")
    p.add_argument("--batch-threads", type=int, default=1, help="server's num_batch_threads")
    p.add_argument("--intra-op", type=int, default=0,
                   help="server's --tensorflow_intra_op_parallelism (0: TensorFlow's default)")
    p.add_argument("--latency-requests", type=int, default=300)
    p.add_argument("--python-clients", action="store_true",
                   help="Python threads instead of wrk/h2load (lower bounds)")
    p.add_argument("--ceiling", action="store_true",
                   help="also load an empty REST and gRPC server (no model) the same way")
    p.add_argument("--pin", nargs="?", const="0,1", default=None,
                   metavar="CLIENT_CPU,SERVER_CPU",
                   help="pin the load generators to one CPU and the server (and the "
                        "in-process baseline) to another (default 0,1); adds CPU "
                        "microseconds per prompt")
    p.add_argument("--server-flag", action="append", default=[], metavar="FLAG",
                   help="one more nwp-serve flag for the server under test, e.g. "
                        "--server-flag=--prefer_tflite_model (serving_default from the LiteRT "
                        "bundle); repeatable")
    p.add_argument("--serve-empty", nargs=2, type=int, metavar=("REST_PORT", "GRPC_PORT"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_empty:
        return serve_empty(*args.serve_empty)
    tools = not args.python_clients and shutil.which("wrk") and shutil.which("h2load")
    if not args.python_clients and not tools:
        raise SystemExit("wrk and h2load not found (Debian: apt-get install wrk nghttp2-client);"
                         " or pass --python-clients")
    max_batch = args.max_batch_size or args.clients
    client_cpu = server_cpu_id = None
    if args.pin is not None:
        try:
            client_cpu, server_cpu_id = (int(c) for c in args.pin.split(","))
        except ValueError:
            raise SystemExit(f"--pin takes two CPU numbers, CLIENT,SERVER (e.g. 0,1); got "
                             f"{args.pin!r}") from None
        usable = os.sched_getaffinity(0)
        if {client_cpu, server_cpu_id} - usable or client_cpu == server_cpu_id:
            raise SystemExit(f"--pin needs two different CPUs of {sorted(usable)}; got "
                             f"{args.pin}")
        if not shutil.which("taskset"):
            raise SystemExit("--pin needs taskset (Debian: apt-get install util-linux)")
    on_server_cpu = None if server_cpu_id is None else {server_cpu_id}
    on_client_cpu = None if client_cpu is None else {client_cpu}

    versions = sorted(int(v) for v in os.listdir(args.model_base_path) if v.isdigit())
    signature = tf.saved_model.load(
        os.path.join(args.model_base_path, str(versions[-1]))).signatures["serving_default"]
    batch = tf.constant([PROMPTS[i % len(PROMPTS)] for i in range(args.clients)])

    def in_process_rate(seconds):
        """Prompts/s and this process's CPU seconds per prompt, on the server's CPU."""
        pin_this_process(on_server_cpu)
        start, cpu, calls = time.monotonic(), time.process_time(), 0
        while time.monotonic() - start < seconds:
            signature(text=batch)
            calls += 1
        cpu, prompts = time.process_time() - cpu, calls * args.clients
        pin_this_process(on_client_cpu)
        return prompts / (time.monotonic() - start), cpu / prompts

    for _ in range(10):
        signature(text=batch)

    workdir = tempfile.mkdtemp(prefix="serving_speed-")
    params = os.path.join(workdir, "batching.config")
    with open(params, "w") as f:
        f.write(f"max_batch_size {{ value: {max_batch} }}\n"
                f"batch_timeout_micros {{ value: {args.timeout_us} }}\n"
                f"num_batch_threads {{ value: {args.batch_threads} }}\n"
                f"max_enqueued_batches {{ value: 1000 }}\n")
    rest_port, grpc_port = free_port(), free_port()
    server = subprocess.Popen(
        [*taskset(server_cpu_id), sys.executable, "-m", "serving.rest", f"--rest_api_port={rest_port}",
         f"--port={grpc_port}", f"--model_name={MODEL}",
         f"--model_base_path={args.model_base_path}", "--enable_batching",
         f"--batching_parameters_file={params}",
         f"--max_batch_size_per_request={args.clients}",
         f"--tensorflow_intra_op_parallelism={args.intra_op}",
         "--file_system_poll_wait_seconds=0", *args.server_flag],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL}:predict"
    grpc_target = f"127.0.0.1:{grpc_port}"
    rows = {"in process": [], "REST": [], "gRPC": []}
    server_cpu = {"REST": [], "gRPC": []}
    cpu_per_prompt = {"in process": [], "REST": [], "gRPC": []}
    pin_this_process(on_client_cpu)
    try:
        wait_for(server, rest_port)
        channel = grpc.insecure_channel(grpc_target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        def grpc_call(prompt):
            stub.Predict(predict_request(prompt), timeout=30)

        grpc_call("the")

        def rest_load(seconds):
            if tools:
                return rest_rate_wrk(url, args.clients, seconds, workdir, taskset(client_cpu))
            return python_rate(lambda: RestClient(rest_port), args.clients, seconds)

        def grpc_load(seconds):
            if tools:
                return grpc_rate_h2load(grpc_target, args.clients, seconds, workdir,
                                        taskset(client_cpu))
            return python_rate(lambda: grpc_call, args.clients, seconds)

        rest_load(2), grpc_load(2)  # warm up both paths and their batch sizes
        before = grpc_calls_by_status(rest_port)
        for _ in range(args.rounds):
            rate, cpu = in_process_rate(args.seconds)
            rows["in process"].append(rate)
            cpu_per_prompt["in process"].append(cpu)
            for name, load in (("REST", rest_load), ("gRPC", grpc_load)):
                cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
                rows[name].append(load(args.seconds))
                server_cpu[name].append((cpu_seconds(server.pid) - cpu0)
                                        / (time.monotonic() - t0))
                cpu_per_prompt[name].append(server_cpu[name][-1] / rows[name][-1])
        after = grpc_calls_by_status(rest_port)
        failed = {k: v - before.get(k, 0) for k, v in after.items()
                  if k != "OK" and v > before.get(k, 0)}
        # h2load ends each phase by resetting the calls still in flight: those are CANCELLED
        # (at most one per client and phase); any other status is a failure.
        if set(failed) - {"CANCELLED"} or failed.get("CANCELLED", 0) > args.clients * args.rounds:
            raise SystemExit(f"gRPC calls that did not answer OK: {failed}")

        latency = {"in process": [], "REST": [], "gRPC": []}
        rest_client = RestClient(rest_port)
        calls = {"in process": lambda s: signature(text=tf.constant([s])),
                 "REST": rest_client, "gRPC": grpc_call}
        cpus = {"in process": on_server_cpu, "REST": on_client_cpu, "gRPC": on_client_cpu}
        for name, call in calls.items():
            pin_this_process(cpus[name])
            p50_ms(call, 20)  # warm
        for _ in range(args.rounds):
            for name, call in calls.items():
                pin_this_process(cpus[name])
                latency[name].append(p50_ms(call, args.latency_requests // args.rounds))
        pin_this_process(on_client_cpu)
    finally:
        server.terminate()
        server.wait(timeout=60)

    ceiling = {}
    if args.ceiling and tools:
        rest_port, grpc_port = free_port(), free_port()
        empty = subprocess.Popen([*taskset(server_cpu_id), sys.executable,
                                  os.path.abspath(__file__), "--serve-empty",
                                  str(rest_port), str(grpc_port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(empty, rest_port)
            empty_url = f"http://127.0.0.1:{rest_port}/v1/models/{MODEL}:predict"
            for name, load in (
                    ("REST", lambda t: rest_rate_wrk(empty_url, args.clients, t, workdir,
                                                     taskset(client_cpu))),
                    ("gRPC", lambda t: grpc_rate_h2load(f"127.0.0.1:{grpc_port}",
                                                        args.clients, t, workdir,
                                                        taskset(client_cpu)))):
                load(2)
                cpu0, t0 = cpu_seconds(empty.pid), time.monotonic()
                rate = load(args.seconds)
                ceiling[name] = rate, (cpu_seconds(empty.pid) - cpu0) / (time.monotonic() - t0)
        finally:
            empty.terminate()
            empty.wait(timeout=60)
    shutil.rmtree(workdir, ignore_errors=True)

    base = statistics.median(rows["in process"])
    base_latency = statistics.median(latency["in process"])
    print(f"# {args.model_base_path} v{versions[-1]}, {os.cpu_count()} CPUs, TF {tf.__version__}; "
          f"{args.clients} clients ({'wrk / h2load' if tools else 'Python threads'}), "
          f"{args.rounds} rounds x {args.seconds} s per path")
    print(f"# server: max_batch_size {max_batch}, batch_timeout_micros {args.timeout_us}, "
          f"num_batch_threads {args.batch_threads}, intra-op threads "
          f"{args.intra_op or 'default'}"
          + "".join(f", {flag}" for flag in args.server_flag))
    print("# load average (1, 5, 15 min) at the end: "
          + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    print("# pinned: " + (f"load generators on CPU {client_cpu}, server and in-process "
                          f"signature on CPU {server_cpu_id} (taskset)" if args.pin else
                          "no (every process on every CPU)"))
    print("| path | prompts/s (median) | per round | / in process (per round) | "
          "server CPU (cores) | CPU us / prompt | p50, 1 client (ms) | - in process (ms) |")
    print("|---|---:|---|---|---:|---:|---:|---:|")
    for name in ("in process", "REST", "gRPC"):
        rates = rows[name]
        ratios = [r / b for r, b in zip(rates, rows["in process"])]
        cpu = f"{statistics.median(server_cpu[name]):.2f}" if name in server_cpu else "-"
        p50 = statistics.median(latency[name])
        us = 1e6 * statistics.median(cpu_per_prompt[name])
        print(f"| {name}{' + batching' if name != 'in process' else f', batches of {args.clients}'}"
              f" | {statistics.median(rates):,.0f} | {', '.join(f'{r:,.0f}' for r in rates)} | "
              f"{statistics.median(rates) / base:.2f} ({', '.join(f'{r:.2f}' for r in ratios)})"
              f" | {cpu} | {us:,.0f} | {p50:.2f} | {p50 - base_latency:+.2f} |")
    for name, (rate, cpu) in ceiling.items():
        print(f"| {name}, empty handler (no model; 1 round) | {rate:,.0f} | | "
              f"{rate / base:.2f} | {cpu:.2f} | {1e6 * cpu / rate:,.0f} | | |")


if __name__ == "__main__":
    main()
