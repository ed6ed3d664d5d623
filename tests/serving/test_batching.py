"""Dynamic batching: concurrent requests run together and each gets its own rows back."""

import threading
import time

import numpy as np
import pytest

from serving.batching import Batcher, read_batching_parameters
from serving.errors import ServingError


class Doubler:
    batchable = staticmethod(lambda signature: True)

    """A fake servable: y = 2x, string lengths; records the batch sizes it ran."""

    def __init__(self, delay=0.0):
        self.calls, self.delay = [], delay

    def predict(self, signature, inputs):
        time.sleep(self.delay)
        self.calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2, "n": np.array([len(s) for s in inputs["s"]])}


def _parallel(batcher, servable, requests):
    results = [None] * len(requests)

    def go(i):
        results[i] = batcher.submit(servable, "", requests[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_concurrent_requests_share_a_run_and_get_their_own_rows():
    servable = Doubler()
    batcher = Batcher(max_batch_size=64, batch_timeout_micros=200_000, num_batch_threads=1)
    requests = [{"x": np.arange(i, i + 3, dtype="float32"),
                 "s": np.array([b"a" * i, b"bb", b"c" * (10 - i)], dtype=object)}
                for i in range(8)]
    results = _parallel(batcher, servable, requests)
    batcher.close()
    for req, res in zip(requests, results):
        np.testing.assert_array_equal(res["y"], req["x"] * 2)
        np.testing.assert_array_equal(res["n"], [len(s) for s in req["s"]])
    assert sum(servable.calls) == 24 and len(servable.calls) < 8  # batched


def test_max_batch_size_is_respected():
    servable = Doubler()
    batcher = Batcher(max_batch_size=4, batch_timeout_micros=100_000, num_batch_threads=1)
    requests = [{"x": np.ones(2, "float32"), "s": np.array([b"a", b"b"], dtype=object)}
                for _ in range(6)]
    _parallel(batcher, servable, requests)
    batcher.close()
    assert max(servable.calls) <= 4 and sum(servable.calls) == 12


def test_a_full_queue_answers_unavailable():
    servable = Doubler(delay=0.5)
    batcher = Batcher(max_batch_size=2, batch_timeout_micros=0, num_batch_threads=1,
                      max_enqueued_batches=1)
    req = {"x": np.ones(2, "float32"), "s": np.array([b"a", b"b"], dtype=object)}
    first = threading.Thread(target=batcher.submit, args=(servable, "", req))
    first.start()
    time.sleep(0.1)  # the first runs; the queue is empty again
    second = threading.Thread(target=batcher.submit, args=(servable, "", req))
    second.start()
    time.sleep(0.05)
    with pytest.raises(ServingError) as info:
        batcher.submit(servable, "", req)
    assert info.value.code == "UNAVAILABLE" and info.value.http_status == 503
    first.join()
    second.join()
    batcher.close()


def test_batching_parameters_file(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 32 }\nbatch_timeout_micros { value: 1000 }\n"
                    "num_batch_threads { value: 2 }\nmax_enqueued_batches { value: 4 }\n")
    assert read_batching_parameters(path) == {"max_batch_size": 32, "batch_timeout_micros": 1000,
                                              "num_batch_threads": 2, "max_enqueued_batches": 4}
    path.write_text("max_batch_size { value: 0 }")
    with pytest.raises(ValueError, match=r"max_batch_size must be in \[1, "):
        read_batching_parameters(path)
    path.write_text("max_batch_sizes { value: 1 }")  # a typo
    with pytest.raises(ValueError, match="unsupported"):
        read_batching_parameters(path)


class Picky(Doubler):
    """Fails any run that contains a negative x."""

    def predict(self, signature, inputs):
        if (inputs["x"] < 0).any():
            raise ServingError("INVALID_ARGUMENT", "negative input")
        return super().predict(signature, inputs)


def test_a_bad_request_fails_alone_not_its_batch():
    servable = Picky()
    batcher = Batcher(max_batch_size=64, batch_timeout_micros=200_000, num_batch_threads=1)
    good = {"x": np.ones(2, "float32"), "s": np.array([b"a", b"b"], dtype=object)}
    bad = {"x": -np.ones(1, "float32"), "s": np.array([b"c"], dtype=object)}
    outcomes = [None] * 4

    def go(i, req):
        try:
            outcomes[i] = batcher.submit(servable, "", req)["y"].tolist()
        except ServingError as err:
            outcomes[i] = err.message

    threads = [threading.Thread(target=go, args=(i, bad if i == 1 else good)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    batcher.close()
    assert outcomes == [[2.0, 2.0], "negative input", [2.0, 2.0], [2.0, 2.0]]


def test_a_request_larger_than_max_batch_size_is_refused():
    batcher = Batcher(max_batch_size=2, num_batch_threads=1)
    req = {"x": np.ones(3, "float32"), "s": np.array([b"a"] * 3, dtype=object)}
    with pytest.raises(ServingError, match="Task size 3 is larger than maximum input batch size"):
        batcher.submit(Doubler(), "", req)
    batcher.close()


def test_batching_file_with_comments_colons_and_ignored_fields(tmp_path):
    path = tmp_path / "b.config"
    path.write_text("# TF Serving style\nmax_batch_size: { value: 8 }\n"
                    "thread_pool_name { value: \"pool\" }\npad_variable_length_inputs { value: true }\n")
    assert read_batching_parameters(path)["max_batch_size"] == 8
    path.write_text("num_batch_threads { value: 100000 }")
    with pytest.raises(ValueError, match="num_batch_threads must be in"):
        read_batching_parameters(path)


def test_submit_async_batches_coroutines_and_survives_a_cancelled_one():
    import asyncio

    servable = Doubler(delay=0.05)
    batcher = Batcher(max_batch_size=64, batch_timeout_micros=100_000, num_batch_threads=2)
    requests = [{"x": np.full(i + 1, i, dtype="float32"),
                 "s": np.array([b"s" * i] * (i + 1), dtype=object)} for i in range(10)]

    async def main():
        tasks = [asyncio.ensure_future(batcher.submit_async(servable, "", r)) for r in requests]
        await asyncio.sleep(0.01)
        tasks[3].cancel()  # a client that went away while its batch waited
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    batcher.close()
    assert isinstance(results[3], asyncio.CancelledError)
    for i, (req, res) in enumerate(zip(requests, results)):
        if i != 3:
            np.testing.assert_array_equal(res["y"], req["x"] * 2)
            np.testing.assert_array_equal(res["n"], [i] * (i + 1))
    assert sum(servable.calls) == 55 and len(servable.calls) == 1  # one run for all ten


def test_submit_async_raises_the_requests_own_error():
    import asyncio

    class Refuser(Doubler):
        def predict(self, signature, inputs):
            if (inputs["x"] < 0).any():
                raise ServingError("INVALID_ARGUMENT", "negative")
            return super().predict(signature, inputs)

    batcher = Batcher(max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1)
    good = {"x": np.ones(2, "float32"), "s": np.array([b"a", b"b"], dtype=object)}
    bad = {"x": -np.ones(1, "float32"), "s": np.array([b"c"], dtype=object)}

    servable = Refuser()

    async def main():
        return await asyncio.gather(batcher.submit_async(servable, "", good),
                                    batcher.submit_async(servable, "", bad),
                                    return_exceptions=True)

    ok, err = asyncio.run(main())
    batcher.close()
    np.testing.assert_array_equal(ok["y"], [2, 2])
    assert isinstance(err, ServingError) and err.code == "INVALID_ARGUMENT"
    assert servable.calls == [2]  # the merged run failed; each then ran on its own


def test_hurry_runs_queued_requests_without_waiting_for_the_timeout():
    servable = Doubler()
    batcher = Batcher(max_batch_size=64, batch_timeout_micros=60_000_000, num_batch_threads=1)
    req = {"x": np.ones(2, "float32"), "s": np.array([b"a", b"b"], dtype=object)}
    result = {}
    thread = threading.Thread(target=lambda: result.update(batcher.submit(servable, "", req)))
    thread.start()
    time.sleep(0.2)
    assert not result  # waiting for batch-mates
    started = time.monotonic()
    batcher.hurry()
    thread.join(timeout=10)
    assert time.monotonic() - started < 5
    np.testing.assert_array_equal(result["y"], [2, 2])
    batcher.close()
