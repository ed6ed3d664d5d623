"""--max_concurrent_heavy_requests: heavy requests (over 4096 estimated tokens) run a few at
a time, light ones never wait for them, and an abandoned heavy request never runs or, once
running, keeps its slot until its run ends (benchmarks/abuse.py: a client timing out its
heavy requests had queued minutes of model work on 128 threads, and p99 of small
requests went 14x)."""

import asyncio
import concurrent.futures
import json
import threading
import time

import aiohttp
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from serving.limits import HEAVY_TOKENS, HeavyGate
from serving.server import main as serve_main
from serving.rest import make_app
from tests.serving.test_abuse import FakeServable, _manager


class Work:
    """Runs in a thread pool that sleep ``seconds``, recording how many overlap."""

    def __init__(self, seconds=0.2):
        self.seconds, self.lock = seconds, threading.Lock()
        self.running = self.peak = self.started = self.finished = 0

    def __call__(self):
        with self.lock:
            self.running += 1
            self.started += 1
            self.peak = max(self.peak, self.running)
        time.sleep(self.seconds)
        with self.lock:
            self.running -= 1
            self.finished += 1
        return "done"


def test_heavy_runs_take_turns_and_light_ones_do_not_wait():
    async def main():
        gate, heavy, light = HeavyGate(1), Work(0.2), Work(0.0)
        loop = asyncio.get_running_loop()
        pool = concurrent.futures.ThreadPoolExecutor(8)
        start = lambda work: lambda: loop.run_in_executor(pool, work)  # noqa: E731
        heavies = [asyncio.ensure_future(gate.run(HEAVY_TOKENS + 1, start(heavy)))
                   for _ in range(3)]
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        assert await gate.run(HEAVY_TOKENS, start(light)) == "done"  # not heavy: no wait
        assert time.perf_counter() - t < 0.15
        assert await asyncio.gather(*heavies) == ["done"] * 3
        assert heavy.peak == 1 and heavy.finished == 3
        unlimited, many = HeavyGate(0), Work(0.2)
        await asyncio.gather(*(unlimited.run(10 ** 6, start(many)) for _ in range(3)))
        assert many.peak == 3
        pool.shutdown()

    asyncio.run(main())


def test_an_abandoned_heavy_run_never_starts_or_keeps_its_slot_until_it_ends():
    async def main():
        gate, heavy = HeavyGate(1), Work(0.3)
        loop = asyncio.get_running_loop()
        pool = concurrent.futures.ThreadPoolExecutor(8)
        start = lambda: loop.run_in_executor(pool, heavy)  # noqa: E731
        first = asyncio.ensure_future(gate.run(HEAVY_TOKENS + 1, start))
        waiting = asyncio.ensure_future(gate.run(HEAVY_TOKENS + 1, start))
        await asyncio.sleep(0.05)
        first.cancel()  # its caller gives up while it runs
        waiting.cancel()  # this one gives up before its turn
        third = asyncio.ensure_future(gate.run(HEAVY_TOKENS + 1, start))
        await asyncio.sleep(0.1)
        assert heavy.started == 1  # the third waits for the first's run, not its caller
        assert await third == "done"
        assert heavy.started == 2 and heavy.peak == 1
        for task in (first, waiting):
            assert task.cancelled()
        pool.shutdown()

    asyncio.run(main())


def test_rest_heavy_requests_run_one_at_a_time_and_abandoned_ones_never_run():
    servable, peak, running, rows = FakeServable(), [0], [0], [0]
    original = servable._loaded.signatures["score"]

    def slow_score(text):
        running[0] += 1
        rows[0] += int(text.shape[0])
        peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        running[0] -= 1
        return original(text)

    servable._loaded.signatures["score"] = slow_score
    heavy = {"signature_name": "score", "instances": ["x" * 300] * 20}  # 20 * 256 tokens

    async def main():
        app = make_app(_manager(servable), gate=HeavyGate(1))
        async with TestServer(app, host="127.0.0.1") as server:
            url = f"http://127.0.0.1:{server.port}/v1/models/m:predict"

            async def post(body, timeout=30):
                async with ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
                    async with s.post(url, data=json.dumps(body)) as resp:
                        return resp.status

            first = asyncio.ensure_future(post(heavy))
            await asyncio.sleep(0.1)
            with pytest.raises(asyncio.TimeoutError):  # waits for the slot, gives up
                await post(heavy, timeout=0.1)
            second = asyncio.ensure_future(post(heavy))
            t = time.perf_counter()
            assert await post({"instances": ["the"]}) == 200  # light: no wait
            assert time.perf_counter() - t < 0.25
            assert await first == 200 and await second == 200
            await asyncio.sleep(0.4)

    asyncio.run(main())
    assert peak[0] == 1
    assert rows[0] == 40  # two requests of 20 rows; the abandoned one never ran


def test_a_negative_heavy_request_limit_is_refused_at_start(capsys):
    with pytest.raises(SystemExit) as exit_info:
        serve_main(["--max_concurrent_heavy_requests=-1"])
    assert exit_info.value.code == 2
    assert "--max_concurrent_heavy_requests must be >= 0" in capsys.readouterr().err


def test_grpc_shares_the_slot_and_a_call_past_its_deadline_while_waiting_never_runs():
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving.grpc_server import make_grpc_server
    from tests.serving.test_abuse import _free_port

    servable, peak, running, rows = FakeServable(), [0], [0], [0]
    original = servable._loaded.signatures["score"]

    def slow_score(text):
        running[0] += 1
        rows[0] += int(text.shape[0])
        peak[0] = max(peak[0], running[0])
        time.sleep(0.3)
        running[0] -= 1
        return original(text)

    servable._loaded.signatures["score"] = slow_score
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = "m", "score"
    request.inputs["text"].CopyFrom(tf.make_tensor_proto(["x" * 300] * 20))

    async def main():
        manager, gate, port = _manager(servable), HeavyGate(1), _free_port()
        app = make_app(manager, gate=gate)
        server = make_grpc_server(manager, "127.0.0.1", port, gate=gate)
        await server.start()
        try:
            async with TestServer(app, host="127.0.0.1") as rest, \
                    grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                url = f"http://127.0.0.1:{rest.port}/v1/models/m:predict"
                async with ClientSession() as session:
                    first = asyncio.ensure_future(session.post(url, data=json.dumps(
                        {"signature_name": "score", "instances": ["x" * 300] * 20})))
                    await asyncio.sleep(0.1)
                    with pytest.raises(grpc.aio.AioRpcError) as info:  # waits behind REST
                        await stub.Predict(request, timeout=0.1)
                    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                    second = await stub.Predict(request, timeout=30)
                    assert list(second.outputs["num_tokens"].int_val) == [301] * 20
                    assert (await first).status == 200
                await asyncio.sleep(0.4)
        finally:
            await server.stop(0)

    asyncio.run(main())
    assert peak[0] == 1
    assert rows[0] == 40  # REST's and the second call's rows; the timed-out call never ran
