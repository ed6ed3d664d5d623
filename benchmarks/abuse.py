"""Good clients' latency while others abuse nwp-serve (REST, loopback only, bounded in time).

Two phases of ``--seconds`` each against one nwp-serve (default limits, no batching):

* **quiet**: ``--good`` well-behaved clients (threads, one persistent ``http.client``
  connection each) send small ``:predict`` requests (one prompt of 1-4 words) back to back;
* **abuse**: the same good clients, while a second process (asyncio, aiohttp) runs the
  abusers, each in a loop:

  - ``score``: 1,000 rows of 1,000-character prompts (about 256,000 tokens, just under
    ``--max_request_tokens``: admitted, the heaviest request the limits let in) and 1,100
    rows (over ``--max_batch_size_per_request``: refused before any work);
  - ``generate``: 400 rows x 256 new tokens (admitted) and 1,024 rows x 256 (266,240
    tokens, over ``--max_request_tokens``: refused);
  - abandoners: the admitted ``score`` request with a 0.3 s client timeout, then hang up;
  - holders: ``--holders`` connections that send headers announcing a 1 MB body, 100 bytes
    of it, then nothing, reopened when the server closes them.

Reported per phase: the good clients' requests, failures (anything but a 200 with 5 words),
p50 / p99 / max latency; and the abusers' outcomes. Target (issue 14): no good request fails
and p99 under abuse <= 10x p99 without.

Usage (starts its own nwp-serve on a tiny model it trains first, or on ``--model_base_path``)::

    python benchmarks/abuse.py --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.fuzz_server import start_server, tiny_model  # noqa: E402

PROMPTS = ["the company said", "in the", "shares of the", "the new york stock", "it is",
           "the market", "a spokesman for the", "mr."]
MODEL = "nwp"


def good_client(port, stop, latencies, failures, index):
    """Small :predict requests back to back on one persistent connection until ``stop``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    i = index
    while not stop.is_set():
        body = json.dumps({"instances": [PROMPTS[i % len(PROMPTS)]]})
        i += 1
        started = time.perf_counter()
        try:
            conn.request("POST", f"/v1/models/{MODEL}:predict", body,
                         {"Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = resp.read()
            ok = resp.status == 200 and len(json.loads(payload)["predictions"][0]["words"]) == 5
        except (OSError, http.client.HTTPException, ValueError, KeyError) as err:
            ok, payload = False, repr(err).encode()
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies.append(time.perf_counter() - started)
        if not ok:
            failures.append(payload[:200])
    conn.close()


def run_good(port, clients, seconds):
    stop, latencies, failures = threading.Event(), [], []
    threads = [threading.Thread(target=good_client, args=(port, stop, latencies, failures, k))
               for k in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=90)
    return latencies, failures


def summary(name, latencies, failures, seconds):
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0] * 99
    return (f"| {name} | {len(latencies)} | {len(latencies) / seconds:.0f} | {len(failures)} | "
            f"{q[49] * 1e3:.1f} | {q[98] * 1e3:.1f} | {max(latencies) * 1e3:.0f} |"), q[98]


# ---------------------------------------------------------------- the abusers (own process)


async def abusers(port, seconds, holders):
    from aiohttp import ClientSession, ClientTimeout

    url = f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict"
    long_text = ("the company said " * 60)[:1000]
    heavy_score = json.dumps({"signature_name": "score", "instances": [long_text] * 1000})
    over_score = json.dumps({"signature_name": "score", "instances": ["the"] * 1100})
    def gen(rows):
        return json.dumps({"signature_name": "generate", "inputs": {
            "text": ["the"] * rows, "max_new_tokens": [256] * rows, "temperature": [1.0] * rows,
            "top_k": [0] * rows, "top_p": [1.0] * rows, "seed": list(range(rows))}})

    heavy_gen, over_gen = gen(400), gen(1024)
    outcomes = collections.Counter()
    deadline = time.monotonic() + seconds

    async def loop(kind, bodies, timeout):
        async with ClientSession(timeout=ClientTimeout(total=timeout)) as session:
            i = 0
            while time.monotonic() < deadline:
                body = bodies[i % len(bodies)]
                i += 1
                try:
                    async with session.post(url, data=body, headers={
                            "Content-Type": "application/json"}) as resp:
                        await resp.read()
                        outcomes[f"{kind} {resp.status}"] += 1
                except TimeoutError:
                    outcomes[f"{kind} client timeout"] += 1
                except Exception as err:  # noqa: BLE001  counted, the loop goes on
                    outcomes[f"{kind} {type(err).__name__}"] += 1
                    await asyncio.sleep(0.1)

    async def hold():
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
                             "Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
                             .encode() + b'{"instances": ["' + b"a" * 84)
                await writer.drain()
                outcomes["holder opened"] += 1
                reply = await asyncio.wait_for(reader.read(200),
                                               max(deadline - time.monotonic(), 0.01))
                outcomes["holder closed by server " + (reply[9:12].decode() or "(no answer)")] += 1
                writer.close()
            except TimeoutError:
                writer.close()
            except OSError as err:
                outcomes[f"holder {type(err).__name__}"] += 1
                await asyncio.sleep(0.1)

    await asyncio.gather(
        loop("score", [heavy_score, over_score], 120), loop("generate", [heavy_gen, over_gen], 120),
        loop("abandon", [heavy_score], 0.3), loop("abandon", [heavy_gen], 0.3),
        *(hold() for _ in range(holders)))
    return outcomes


def abuser_main(port, seconds, holders):
    outcomes = asyncio.run(abusers(port, seconds, holders))
    print(json.dumps(dict(outcomes)), flush=True)


# ---------------------------------------------------------------- main


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20, help="length of each phase")
    p.add_argument("--good", type=int, default=8, help="well-behaved clients")
    p.add_argument("--holders", type=int, default=50, help="connections holding half a body")
    p.add_argument("--model_base_path", default=None,
                   help="an export to serve (default: train and export a tiny model)")
    p.add_argument("--server_flags", default="", help="extra nwp-serve flags, space separated")
    p.add_argument("--_abuser", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._abuser:
        abuser_main(int(args._abuser[0]), float(args._abuser[1]), int(args._abuser[2]))
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as workdir, open(os.path.join(workdir, "log"), "w+") as log:
        base = args.model_base_path or tiny_model(workdir)
        proc, port, _ = start_server(base, log, args.server_flags.split())
        try:
            run_good(port, args.good, 2)  # warm-up
            quiet, quiet_fail = run_good(port, args.good, args.seconds)
            abuser = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "--_abuser", str(port),
                 str(args.seconds + 1), str(args.holders)],
                stdout=subprocess.PIPE, text=True)
            time.sleep(1)  # the abusers get going
            loud, loud_fail = run_good(port, args.good, args.seconds)
            out, _ = abuser.communicate(timeout=180)
            outcomes = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
                stopped = "stopped on SIGTERM"
            except subprocess.TimeoutExpired:  # still running abandoned work
                proc.kill()
                proc.wait(timeout=30)
                stopped = "did not stop within 60 s of SIGTERM (killed)"
    print(f"# nwp-serve on {'the tiny model' if not args.model_base_path else base}; "
          f"{args.good} good clients, {args.seconds:.0f} s per phase; flags: "
          f"{args.server_flags or '(defaults)'}")
    print("| phase | good requests | per s | failed | p50 (ms) | p99 (ms) | max (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    line, p99_quiet = summary("quiet", quiet, quiet_fail, args.seconds)
    print(line)
    line, p99_loud = summary("under abuse", loud, loud_fail, args.seconds)
    print(line)
    print("abusers: " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))
    ratio = p99_loud / p99_quiet if p99_quiet else float("inf")
    met = not quiet_fail and not loud_fail and ratio <= 10
    print(f"p99 under abuse / quiet: {ratio:.1f}x; good requests failed: "
          f"{len(quiet_fail) + len(loud_fail)}; target (0 failed, <= 10x): "
          f"{'met' if met else 'not met'}; {time.monotonic() - started:.0f} s wall")
    print(f"server: {stopped}")
    for failure in (quiet_fail + loud_fail)[:5]:
        print("FAILED", failure)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
