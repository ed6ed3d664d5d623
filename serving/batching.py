"""Dynamic batching of predict requests (``--enable_batching``), like TF Serving's
``BasicBatchScheduler``: requests for the same model version and signature that arrive close
together are concatenated along dimension 0, run once, and split back.

Parameters (``--batching_parameters_file``, TF Serving's ``BatchingParameters`` text format,
e.g. ``max_batch_size { value: 32 }``):

* ``max_batch_size`` (default 1000): most rows in one run;
* ``batch_timeout_micros`` (default 0): how long the oldest request may wait for others;
* ``num_batch_threads`` (default: CPU count): runs in parallel;
* ``max_enqueued_batches`` (default 10): a request that would queue more than this many full
  batches is refused with UNAVAILABLE (HTTP 503).

Requests whose inputs cannot be concatenated with the others' (a different shape past
dimension 0, or rank 0), and signatures with an output whose shape past dimension 0 is not
fixed (``score``'s per-token log-probabilities), run on their own, so a request gets the
same answer batched or not. A request with more rows than ``max_batch_size`` is refused
(INVALID_ARGUMENT, as TF Serving without large-batch splitting). If a merged run fails,
its requests run one by one, so each gets its own answer or error.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import threading
import time

import numpy as np

from serving.errors import ServingError

DEFAULTS = {"max_batch_size": 1000, "batch_timeout_micros": 0,
            "num_batch_threads": os.cpu_count() or 1, "max_enqueued_batches": 10}
LIMITS = {"max_batch_size": (1, 1_000_000), "batch_timeout_micros": (0, 60_000_000),
          "num_batch_threads": (1, 256), "max_enqueued_batches": (1, 1_000_000)}
# TF Serving fields accepted and ignored (no effect here): padding, split, fixed sizes.
IGNORED = ("allowed_batch_sizes", "pad_variable_length_inputs", "thread_pool_name",
           "enable_large_batch_splitting", "max_execution_batch_size")


def read_batching_parameters(path):
    """``{name: int}`` from a BatchingParameters text proto (the four fields above).

    Raises:
        ValueError: unreadable file, an unknown field, a value < 0 (< 1 for all but the
            timeout), or text that is not ``name { value: N }`` entries.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise ValueError(f"Cannot read the batching parameters file {path}: {err}") from None
    text = re.sub(r"#[^\n]*", "", text)  # comments
    entry = re.compile(r"(\w+)\s*:?\s*\{\s*value\s*:\s*(\"[^\"]*\"|[\w.-]+)\s*\}")
    params = dict(DEFAULTS)
    for name, value in entry.findall(text):
        if name in IGNORED:
            continue
        if name not in DEFAULTS:
            raise ValueError(f"{path}: unsupported batching parameter {name!r}; supported: "
                             f"{', '.join(DEFAULTS)} (ignored: {', '.join(IGNORED)}).")
        try:
            params[name] = int(value)
        except ValueError:
            raise ValueError(f"{path}: {name} must be an integer, got {value}.") from None
    if entry.sub("", text).strip():
        raise ValueError(f"{path}: expected entries like 'max_batch_size {{ value: 32 }}'.")
    for name, value in params.items():
        low, high = LIMITS[name]
        if not low <= value <= high:
            raise ValueError(f"{path}: {name} must be in [{low}, {high}], got {value}.")
    return params


class _Task:
    __slots__ = ("inputs", "rows", "arrived", "done", "future", "result", "error")

    def __init__(self, inputs, future=None):
        self.inputs = inputs
        self.rows = next(iter(inputs.values())).shape[0]
        self.arrived = time.monotonic()
        self.future = future  # an asyncio future (submit_async) or None (submit)
        self.done = threading.Event() if future is None else None
        self.result = self.error = None


class _Queue:
    """The waiting requests of one (servable, signature): its tasks, oldest first, and the
    rows they hold."""

    __slots__ = ("servable", "signature", "tasks", "rows")

    def __init__(self, servable, signature):
        self.servable, self.signature = servable, signature
        self.tasks = collections.deque()
        self.rows = 0


def _settle(tasks):
    """On the tasks' event loop: hand each asyncio future its result or error."""
    for task in tasks:
        if task.future.done():  # the client went away; its request was cancelled
            continue
        if task.error is not None:
            task.future.set_exception(task.error)
        else:
            task.future.set_result(task.result)


class Batcher:
    """Thread-safe dynamic batcher.

    :meth:`submit` blocks the calling thread until the request's rows ran;
    :meth:`submit_async` is the same for a coroutine and holds no thread while it waits (the
    batch thread wakes the event loop once per batch). Batches run on ``num_batch_threads``
    threads; the model itself runs outside the GIL.

    Args:
        max_batch_size, batch_timeout_micros, num_batch_threads, max_enqueued_batches: see
            the module docstring.
    """

    def __init__(self, max_batch_size=1000, batch_timeout_micros=0, num_batch_threads=1,
                 max_enqueued_batches=10):
        self.max_batch_size = max_batch_size
        self.timeout = batch_timeout_micros / 1e6
        self.max_rows_queued = max_enqueued_batches * max_batch_size
        # (servable id, signature) -> _Queue
        self._queues = {}
        self._rows_queued = 0
        self._cond = threading.Condition()
        self._closed = False
        self._hurry = False  # shutting down: run queued requests without waiting for mates
        self.batches_run = 0
        self._threads = [threading.Thread(target=self._work, daemon=True, name=f"batch-{i}")
                         for i in range(num_batch_threads)]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _batchable(servable, signature_name, inputs):
        arrays = list(inputs.values())
        return (arrays and all(a.ndim for a in arrays)
                and len({a.shape[0] for a in arrays}) == 1
                and servable.batchable(signature_name))

    def _enqueue(self, servable, signature_name, task):
        if task.rows > self.max_batch_size:
            raise ServingError("INVALID_ARGUMENT", f"Task size {task.rows} is larger than "
                                                   f"maximum input batch size "
                                                   f"{self.max_batch_size}")
        key = (id(servable), signature_name)
        with self._cond:
            if self._closed:
                raise ServingError("UNAVAILABLE", "The server is shutting down.")
            if self._rows_queued + task.rows > self.max_rows_queued:
                raise ServingError("UNAVAILABLE", "The batch scheduling queue is full; retry "
                                                  "later.")
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = _Queue(servable, signature_name)
            queue.tasks.append(task)
            queue.rows += task.rows
            self._rows_queued += task.rows
            # A waiting thread must learn of a new deadline (first task of a queue), of a
            # full batch, or that there is no deadline at all; otherwise its timed wait or
            # the end of its current batch brings it back.
            if len(queue.tasks) == 1 or queue.rows >= self.max_batch_size or not self.timeout:
                self._cond.notify()

    def submit(self, servable, signature_name, inputs):
        """Run ``servable.predict(signature_name, inputs)`` batched with other requests;
        blocks until done. ``inputs``: ``{alias: np.ndarray}`` with equal dimension 0.

        Returns:
            ``{alias: np.ndarray}``: this request's rows of the outputs.

        Raises:
            ServingError: UNAVAILABLE when the queue is full or the batcher is closed,
                INVALID_ARGUMENT for more rows than ``max_batch_size``; the servable's own
                errors.
        """
        if not self._batchable(servable, signature_name, inputs):
            return servable.predict(signature_name, inputs)  # cannot be batched
        task = _Task(inputs)
        self._enqueue(servable, signature_name, task)
        task.done.wait()
        if task.error is not None:
            raise task.error
        return task.result

    async def submit_async(self, servable, signature_name, inputs):
        """:meth:`submit` for a coroutine on a running asyncio loop: the same results and
        errors, without a thread blocked per request. A request that cannot be batched runs
        in the loop's default executor."""
        loop = asyncio.get_running_loop()
        if not self._batchable(servable, signature_name, inputs):
            return await loop.run_in_executor(None, servable.predict, signature_name, inputs)
        task = _Task(inputs, loop.create_future())
        self._enqueue(servable, signature_name, task)
        return await task.future

    def _take(self):
        """Under the lock: the next batch ``(servable, signature, tasks)`` or None."""
        now = time.monotonic()
        for key, queue in self._queues.items():
            tasks = queue.tasks
            if (queue.rows >= self.max_batch_size or self._hurry
                    or now - tasks[0].arrived >= self.timeout):
                batch, total = [], 0
                while tasks and (not batch or total + tasks[0].rows <= self.max_batch_size):
                    total += tasks[0].rows
                    batch.append(tasks.popleft())
                queue.rows -= total
                self._rows_queued -= total
                if not tasks:
                    del self._queues[key]
                return queue.servable, queue.signature, batch
        return None

    def _work(self):
        while True:
            with self._cond:
                while True:
                    if self._closed and not self._queues:
                        return
                    job = self._take()
                    if job is not None:
                        break
                    waits = [self.timeout - (time.monotonic() - queue.tasks[0].arrived)
                             for queue in self._queues.values()]
                    self._cond.wait(timeout=max(min(waits), 1e-4) if waits else None)
                if self._queues:  # more work: let another thread look at it
                    self._cond.notify()
            self._run(*job)

    def _run(self, servable, signature, tasks):
        try:
            shapes = {(k, v.shape[1:], v.dtype.kind) for t in tasks for k, v in t.inputs.items()}
            merged_ok = len(tasks) > 1 and len(shapes) == len(tasks[0].inputs)
            if merged_ok:
                try:
                    merged = {k: np.concatenate([t.inputs[k] for t in tasks])
                              for k in tasks[0].inputs}
                    outputs = servable.predict(signature, merged)
                    start = 0
                    for task in tasks:
                        task.result = {k: v[start:start + task.rows] for k, v in outputs.items()}
                        start += task.rows
                except Exception:  # noqa: BLE001  find whose request it was: one at a time
                    merged_ok = False
            if not merged_ok:
                for task in tasks:
                    try:
                        task.result = servable.predict(signature, task.inputs)
                    except Exception as err:  # noqa: BLE001  this request's own error
                        task.error = err
            with self._cond:
                self.batches_run += 1
        finally:
            by_loop = {}
            for task in tasks:
                if task.future is None:
                    task.done.set()
                else:
                    by_loop.setdefault(task.future.get_loop(), []).append(task)
            for loop, group in by_loop.items():  # one wake-up per loop and batch
                try:
                    loop.call_soon_threadsafe(_settle, group)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    pass

    def hurry(self):
        """From now on run every queued request at once, without waiting
        ``batch_timeout_micros`` for batch-mates (the server is shutting down)."""
        with self._cond:
            self._hurry = True
            self._cond.notify_all()

    def close(self):
        """Refuse new requests, run the queued ones at once, then stop the threads."""
        with self._cond:
            self._closed = self._hurry = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
