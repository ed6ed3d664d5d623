"""A request body that does not decompress is answered 400 and logged in no more than one
line: aiohttp, draining the rest of such a body after the answer, used to log the same error
again as an "Unhandled exception" with a traceback, a page of log per request for anyone
sending broken gzip (found by benchmarks/fuzz_server.py)."""

import asyncio
import logging

from tests.serving.test_abuse import _post, _serve


def test_a_body_that_does_not_decompress_logs_no_traceback(caplog):
    async def scenario(url, channel, servable, metrics):
        for body in (b"\x1f\x8b\x08\x00" + b"garbage" * 2000, b"this is not gzip"):
            status, answer = await _post(url, body, headers={"Content-Encoding": "gzip"})
            assert status == 400 and "Content-Encoding" in answer["error"], answer
        await asyncio.sleep(0.3)  # aiohttp drains the rest after answering
        status, answer = await _post(url, {"instances": ["abc"]})
        assert status == 200

    with caplog.at_level(logging.DEBUG):
        _serve(scenario)
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [(r.name, r.getMessage()) for r in noisy]
