"""How long one large ``:predict`` body stalls other REST requests on the event loop.

Sends one body of N empty strings (``{"instances": ["", "", ...]}``, 2.8M strings is about
8 MB) while a second client sends ``GET /v1/models/m`` back to back, and prints the slowest
of those GETs (ms) and the big request's own time. The model is a stand-in (no TensorFlow
graph runs: the 2.8M rows are refused by --max_batch_size_per_request after parsing, which
is the part measured). Run it against any checkout with PYTHONPATH pointing at it::

    PYTHONPATH=. python benchmarks/loop_stall.py --strings 2800000
"""

import argparse
import asyncio
import json
import time

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from serving.rest import make_app
from serving.servable import ModelManager


class _Stub:
    name, version = "m", 1

    def input_dtypes(self, signature_name):
        import tensorflow as tf

        return {"text": tf.string}


async def measure(strings, rounds):
    manager = ModelManager({"m": "/nonexistent"}, loader=None)
    manager._servables["m"] = {1: _Stub()}
    manager._states["m"] = {1: ("AVAILABLE", "OK", "")}
    body = json.dumps({"instances": [""] * strings}).encode()
    app = make_app(manager, max_request_bytes=len(body) + 1)
    results = []
    async with TestServer(app, host="127.0.0.1") as server, ClientSession() as session:
        url = f"http://127.0.0.1:{server.port}"
        for _ in range(rounds):
            done, worst = asyncio.Event(), 0.0

            async def pinger():
                nonlocal worst
                while not done.is_set():
                    t = time.perf_counter()
                    async with session.get(url + "/v1/models/m") as r:
                        await r.read()
                    worst = max(worst, time.perf_counter() - t)

            async def big():
                t = time.perf_counter()
                async with session.post(url + "/v1/models/m:predict", data=body) as r:
                    status = r.status
                    await r.read()
                done.set()
                return status, time.perf_counter() - t

            ping = asyncio.create_task(pinger())
            await asyncio.sleep(0.05)
            status, took = await big()
            await ping
            results.append((worst, took, status))
    return len(body), results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strings", type=int, default=2_800_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    size, results = asyncio.run(measure(args.strings, args.rounds))
    for worst, took, status in results:
        print(f"body {size / 1e6:.1f} MB: slowest concurrent GET {worst * 1e3:.0f} ms, "
              f"big request {took * 1e3:.0f} ms (HTTP {status})")


if __name__ == "__main__":
    main()
