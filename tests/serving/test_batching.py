"""Dynamic batching: concurrent requests run together and each gets its own rows back."""

import threading
import time

import numpy as np
import pytest

from serving.batching import Batcher, read_batching_parameters
from serving.errors import ServingError


class Doubler:
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
    with pytest.raises(ValueError, match="max_batch_size must be >= 1"):
        read_batching_parameters(path)
    path.write_text("pad_variable_length_inputs { value: 1 }")
    with pytest.raises(ValueError, match="unsupported"):
        read_batching_parameters(path)
