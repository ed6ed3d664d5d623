"""Does the page at ``/`` cost REST API clients anything? nwp-serve with the page (the
default) vs ``--no_web_page``, side by side in one run.

Both servers run on the same exported model at once (an idle one only polls its model
folder); the load goes to one at a time, in alternating rounds (page on, page off, then
off, on, ...), so that the machine's drift hits both alike; each round's ratio compares two
back-to-back measurements. Each round: ``--clients`` Python threads,
each with its own persistent ``http.client`` connection, sending one prompt per
``POST /v1/models/NAME:predict`` and the next as soon as the answer is in, for
``--seconds``. Every answer must be 200, and both servers must give the same answers to the
same prompts. Python clients share the CPUs with the server, so the rates are lower bounds,
the same for both.

Usage::

    python benchmarks/web_page_overhead.py --model_base_path saved_models/ptb
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPTS = ["the company said", "in the", "shares of the", "the new york stock", "it is",
           "the market", "a spokesman for the", "mr."]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base_path, name, *flags):
    port = free_port()
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "serving.rest", f"--rest_api_port={port}",
                             "--port=0", f"--model_name={name}", f"--model_base_path={base_path}",
                             *flags], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/{name}", timeout=2)
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.seek(0)
                raise SystemExit(f"server did not start: {log.read()[-3000:]}")
            time.sleep(0.3)


def page_status(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).status
    except urllib.error.HTTPError as err:
        return err.code


def answers(port, name):
    out = []
    for prompt in PROMPTS:
        body = json.dumps({"instances": [prompt]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{name}:predict",
                                         data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            out.append(json.loads(response.read()))
    return out


def load(port, name, clients, seconds):
    """``(requests/s, p50 ms, p99 ms)`` of ``clients`` closed-loop clients for ``seconds``."""
    latencies = [[] for _ in range(clients)]
    failures = []
    stop = time.perf_counter() + seconds
    path = f"/v1/models/{name}:predict"
    bodies = [json.dumps({"instances": [p]}).encode() for p in PROMPTS]

    def client(i):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = i
        while time.perf_counter() < stop:
            body = bodies[n % len(bodies)]
            n += 1
            t0 = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            latencies[i].append(time.perf_counter() - t0)
            if response.status != 200:
                failures.append(response.status)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if failures:
        raise SystemExit(f"{len(failures)} answers were not 200: {sorted(set(failures))}")
    flat = sorted(x for per in latencies for x in per)
    p99 = flat[min(len(flat) - 1, int(0.99 * len(flat)))]
    return len(flat) / wall, 1000 * statistics.median(flat), 1000 * p99


def router_cost(n=20000):
    """Microseconds aiohttp's router takes to resolve ``POST /v1/models/m:predict`` with the
    page's routes (``GET /``, ``GET /web/{name}``, registered before the API's catch-all, as
    :func:`serving.rest.make_app` does) and without: ``(with, without)``, best of 5."""
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from serving import web_page

    async def handler(request):
        return web.Response()

    def app(page):
        application = web.Application()
        if page:
            web_page.add_routes(application, lambda: ["m"], {})
        application.router.add_route("*", "/{tail:.*}", handler)
        return application

    async def best(application):
        request = make_mocked_request("POST", "/v1/models/m:predict", app=application)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                match = await application.router.resolve(request)
            times.append((time.perf_counter() - t0) / n * 1e6)
        assert match.handler is handler
        return min(times)

    return tuple(asyncio.run(best(app(page))) for page in (True, False))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_base_path", required=True)
    p.add_argument("--model_name", default="m")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--enable_batching", action="store_true",
                   help="start both servers with --enable_batching")
    args = p.parse_args(argv)
    flags = ["--enable_batching"] if args.enable_batching else []
    started = time.perf_counter()
    servers = {"page on (default)": start_server(args.model_base_path, args.model_name, *flags),
               "--no_web_page": start_server(args.model_base_path, args.model_name,
                                             "--no_web_page", *flags)}
    try:
        ports = {label: port for label, (_, port) in servers.items()}
        assert [page_status(port) for port in ports.values()] == [200, 404]
        same = len({json.dumps(answers(port, args.model_name)) for port in ports.values()}) == 1
        for port in ports.values():  # warm both up
            load(port, args.model_name, args.clients, 1.0)
        results = {label: [] for label in ports}
        for i in range(args.rounds):  # ABBA: each round's order reversed, against drift
            for label, port in (list(ports.items()) if i % 2 == 0 else
                                list(ports.items())[::-1]):
                results[label].append(load(port, args.model_name, args.clients, args.seconds))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    import tensorflow as tf

    print(f"# {args.model_base_path}, {os.cpu_count()} CPUs, TF {tf.__version__}; "
          f"{args.clients} Python clients (threads, keep-alive), {args.rounds} alternating "
          f"rounds x {args.seconds:g} s per server{'; --enable_batching' if flags else ''}")
    print(f"# same answers with and without the page: {same}")
    print("| server | requests/s (median) | per round | p50 ms (median) | p99 ms (median) |")
    print("|---|---:|---|---:|---:|")
    for label, rounds in results.items():
        rates = [r for r, _, _ in rounds]
        print(f"| {label} | {statistics.median(rates):,.0f} | "
              f"{', '.join(f'{r:,.0f}' for r in rates)} | "
              f"{statistics.median(p for _, p, _ in rounds):.2f} | "
              f"{statistics.median(p for _, _, p in rounds):.2f} |")
    on, off = (statistics.median(r for r, _, _ in rounds) for rounds in results.values())
    ratios = [a[0] / b[0] for a, b in zip(*results.values())]
    print(f"# page on / page off, requests/s: {on / off:.3f} (medians); per round "
          f"{', '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}")
    with_page, without = router_cost()
    print(f"# routing POST :predict in aiohttp, in process: {with_page:.2f} us with the page's "
          f"routes, {without:.2f} us without ({with_page - without:+.2f} us a request)")
    print(f"{time.perf_counter() - started:.2f} s wall")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
