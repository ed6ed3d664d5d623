"""What one request may cost, checked before any tensor is built (REST and gRPC alike).

The server refuses, with INVALID_ARGUMENT (HTTP 400) naming the limit and the flag that
raises it, a request whose inputs would take more than ``--max_request_tensor_bytes`` of
memory once converted, or more than ``--max_request_tokens`` tokens of model work. Body
size (``--max_request_bytes``) is enforced by the transports themselves: aiohttp answers 413
and grpcio RESOURCE_EXHAUSTED for a larger message.

Cost model of one input tensor (bytes):

* a numeric or bool element costs its item size (float32: 4, int64: 8, bool: 1, ...);
* a string element costs :data:`STRING_ELEMENT_BYTES` (the Python ``bytes`` object, the
  pointer to it and TensorFlow's ``tstring``) plus its length.

This module has no TensorFlow import; it also holds :func:`parse_version`, the one rule for
version folder names shared by ``nwp-export`` and the server.
"""

from __future__ import annotations

import functools
import math
import re

from serving.errors import invalid

INT64_MAX = 2 ** 63 - 1
STRING_ELEMENT_BYTES = 64
MAX_PROMPT_TOKENS = 256  # nwp-export's default --max_prompt_tokens; generate's cap too
DEFAULT_MAX_TENSOR_BYTES = 256 << 20
DEFAULT_MAX_REQUEST_TOKENS = 1 << 18

# DataType name (tensorflow/core/framework/types.proto) -> item size in bytes; others: 16.
ITEM_BYTES = {"DT_FLOAT": 4, "DT_DOUBLE": 8, "DT_INT32": 4, "DT_UINT8": 1, "DT_INT16": 2,
              "DT_INT8": 1, "DT_INT64": 8, "DT_BOOL": 1, "DT_BFLOAT16": 2, "DT_UINT16": 2,
              "DT_COMPLEX128": 16, "DT_HALF": 2, "DT_UINT32": 4, "DT_UINT64": 8,
              "DT_COMPLEX64": 8}


@functools.cache
def _item_bytes():
    """:data:`ITEM_BYTES` keyed by the DataType enum values (``types_pb2``, imported here
    only: a TensorProto's cost is asked for by the gRPC server, which has TensorFlow
    loaded)."""
    from tensorflow.core.framework import types_pb2

    return {types_pb2.DataType.Value(name): size for name, size in ITEM_BYTES.items()}

_VERSION_RE = re.compile(r"[0-9]{1,19}")


def parse_version(name):
    """The version number a folder ``name`` stands for, or None.

    A version folder is named by ASCII digits only (no sign, no space, no ``²`` or other
    Unicode digit) and stands for 1 .. 2**63 - 1 (TF Serving's int64 versions).
    """
    if not isinstance(name, str) or not _VERSION_RE.fullmatch(name):
        return None
    value = int(name)
    return value if 1 <= value <= INT64_MAX else None


def tensor_bytes(num_elements, item_bytes=None, string_bytes=0):
    """Memory (bytes) of a tensor of ``num_elements``: numeric with ``item_bytes`` per
    element, or (``item_bytes`` None) strings whose lengths sum to ``string_bytes``."""
    if item_bytes is None:
        return num_elements * STRING_ELEMENT_BYTES + string_bytes
    return num_elements * item_bytes


def check_tensor_bytes(costs, limit):
    """Refuse inputs whose converted size exceeds ``limit``.

    Args:
        costs: ``{alias: bytes}`` from :func:`tensor_bytes`.
        limit: ``--max_request_tensor_bytes``.

    Raises:
        ServingError: INVALID_ARGUMENT naming the sizes, the limit and the flag.
    """
    total = sum(costs.values())
    if total > limit:
        detail = ", ".join(f"{a}: {c} bytes" for a, c in sorted(costs.items()))
        raise invalid(f"The request's inputs would take {total} bytes in memory ({detail}); "
                      f"this server takes at most {limit} (--max_request_tensor_bytes). Split "
                      "the request.")


def proto_cost(proto, alias="input"):
    """``(shape, bytes)`` of a TensorProto once converted, read from the proto only.

    A proto with fewer values than its shape asks for is filled with its last value (as
    ``tf.make_ndarray`` does), and that fill is counted.

    Raises:
        ServingError: INVALID_ARGUMENT for a negative dimension.
    """
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise invalid(f"Input {alias} has a negative dimension: {dims}.")
    size = math.prod(dims)
    from tensorflow.core.framework import types_pb2

    if proto.dtype == types_pb2.DT_STRING:
        values = proto.string_val
        given = sum(len(v) for v in values[:size])
        if len(values) < size:
            given += (size - len(values)) * (len(values[-1]) if len(values) else 0)
        return dims, tensor_bytes(size, None, given)
    return dims, tensor_bytes(size, _item_bytes().get(proto.dtype, 16))


def array_cost(array):
    """Bytes of a NumPy input array under the cost model (strings: object arrays of bytes)."""
    if array.dtype == object:
        return tensor_bytes(array.size, None, sum(len(v) for v in array.flat
                                                  if isinstance(v, (bytes, str))))
    return tensor_bytes(array.size, array.dtype.itemsize)


def estimate_tokens(signature_key, inputs, max_prompt_tokens=MAX_PROMPT_TOKENS):
    """An upper bound on the tokens a request makes the model process.

    Each prompt in ``text`` counts ``min(its length in bytes + 1, max_prompt_tokens)``
    tokens (a token is at least one character, plus the leading ``<eos>``; the export reads
    at most ``max_prompt_tokens``); ``generate`` adds each row's ``max_new_tokens`` (clipped
    to 0 .. 256 as the signature clips it).

    Args:
        signature_key: the signature (``""`` is ``serving_default``).
        inputs: ``{alias: np.ndarray}``.

    Returns:
        int tokens.
    """
    total = 0
    text = inputs.get("text")
    if text is not None and getattr(text, "dtype", None) == object:
        total += sum(min(len(v) + 1, max_prompt_tokens) if isinstance(v, bytes) else 1
                     for v in text.flat)
    new = inputs.get("max_new_tokens")
    if signature_key == "generate" and new is not None:
        import numpy as np

        total += int(np.clip(np.asarray(new, dtype=np.int64), 0, MAX_PROMPT_TOKENS).sum())
    return total


def check_tokens(signature_key, inputs, limit):
    """Refuse a request whose :func:`estimate_tokens` exceeds ``limit``
    (``--max_request_tokens``); returns the estimate.

    Raises:
        ServingError: INVALID_ARGUMENT naming the estimate, the limit and the flag.
    """
    tokens = estimate_tokens(signature_key, inputs)
    if tokens > limit:
        raise invalid(f"The request asks for up to {tokens} tokens of model work (prompt "
                      f"tokens, at most {MAX_PROMPT_TOKENS} a prompt, plus max_new_tokens); "
                      f"this server takes at most {limit} per request (--max_request_tokens). "
                      "Send fewer or shorter prompts, or fewer new tokens.")
    return tokens


HEAVY_TOKENS = 4096  # a request estimated at more tokens than this is "heavy" (HeavyGate)


class HeavyGate:
    """At most ``slots`` heavy requests (over :data:`HEAVY_TOKENS` by :func:`estimate_tokens`)
    run their model at once (``--max_concurrent_heavy_requests``; 0: no limit); lighter ones
    never wait here.

    A heavy request waits for a slot on the event loop, holding no thread; if its client
    hangs up (or its deadline passes) while it waits, it never runs. A slot is given back
    when the model run ends, not when the caller stops waiting for it: a run cannot be
    stopped once started, so a client that abandons requests cannot make more than ``slots``
    heavy runs share the CPU.
    """

    def __init__(self, slots, threshold=HEAVY_TOKENS):
        self.slots, self.threshold = slots, threshold
        self._semaphore = None  # made on first use, on the serving loop

    async def run(self, tokens, start):
        """``await start()`` (``start``: a function returning an awaitable, e.g. a model run
        in an executor), in a slot when ``tokens`` is over the threshold."""
        import asyncio

        if not self.slots or tokens <= self.threshold:
            return await start()
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.slots)
        semaphore = self._semaphore
        await semaphore.acquire()  # cancelled here: nothing ran, nothing to give back
        try:
            work = asyncio.ensure_future(start())
        except BaseException:
            semaphore.release()
            raise

        def done(future):
            semaphore.release()
            if not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning if abandoned

        work.add_done_callback(done)
        return await asyncio.shield(work)
