"""Bad requests are answered 400 and logged in at most one line, with no traceback (found by
benchmarks/fuzz_server.py: 2,438 tracebacks in the server's log for 12,000 requests). aiohttp
logged a malformed HTTP message (bad chunk size, unknown Content-Encoding, ...) with a
traceback, and, draining the rest of a body that did not decompress after the answer, the
same error again as an "Unhandled exception"."""

import asyncio
import logging
import urllib.parse

from tests.serving.test_abuse import _post, _serve


def test_a_body_that_does_not_decompress_logs_no_traceback(caplog):
    async def scenario(url, channel, servable, metrics):
        for body in (b"\x1f\x8b\x08\x00" + b"garbage" * 2000, b"this is not gzip"):
            status, answer = await _post(url, body, headers={"Content-Encoding": "gzip"})
            assert status == 400 and "Content-Encoding" in answer["error"], answer
        await asyncio.sleep(0.3)  # aiohttp drains the rest after answering
        host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
        for raw in (b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
                    b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                    b"Content-Encoding: br\r\n\r\n{}",
                    b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                    b"Connection: close\r\n\r\n{}SECRET-BYTES"):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(raw)
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            assert reply.split(b" ", 2)[1] == b"400", reply[:200]
        status, answer = await _post(url, {"instances": ["abc"]})
        assert status == 200

    with caplog.at_level(logging.DEBUG):
        _serve(scenario)
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [(r.name, r.getMessage()) for r in noisy]
    bad = [r.getMessage() for r in caplog.records if "bad HTTP request" in r.getMessage()]
    assert len(bad) >= 2 and all("\n" not in m and "SECRET" not in m for m in bad), bad
