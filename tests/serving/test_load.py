"""A bounded load test on loopback: 32 concurrent clients for 30 s while versions change."""

import concurrent.futures
import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from serving.export import export_saved_model
from tests.conftest import running_server
from zoo import NextWordPredictor

CLIENTS, SECONDS = 32, 30.0


def _post(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read()


@pytest.mark.slow
def test_32_clients_for_30_seconds_see_no_failure_while_versions_change(tiny_run, tmp_path):
    predictor = NextWordPredictor.load(tiny_run)
    base = tmp_path / "models"
    export_saved_model(predictor, base, "m", version=1, top_k=5)
    with running_server("--model_name=m", f"--model_base_path={base / 'm'}",
                        "--enable_batching", "--file_system_poll_wait_seconds=0.5",
                        model="m") as (url, _):
        stop = time.monotonic() + SECONDS
        lock = threading.Lock()
        statuses, widths = {}, set()

        def client(i):
            n = 0
            while time.monotonic() < stop:
                status, body = _post(f"{url}/v1/models/m:predict",
                                     {"instances": ["the " * (i % 7) + "value"]})
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        widths.add(len(body["predictions"][0]["words"]))
                n += 1
            return n

        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            futures = [pool.submit(client, i) for i in range(CLIENTS)]
            time.sleep(5)
            export_saved_model(predictor, base, "m", version=2, top_k=3)  # a new version
            time.sleep(5)
            (base / "m" / "3").mkdir()  # half-written: no saved_model.pb yet
            (base / "m" / "4" / "variables").mkdir(parents=True)
            (base / "m" / "4" / "saved_model.pb").write_bytes(b"not a SavedModel")  # broken
            total = sum(f.result() for f in futures)
        assert statuses == {200: total}, statuses  # not one failed request
        assert widths == {5, 3}  # version 1 served, then version 2
        with urllib.request.urlopen(f"{url}/v1/models/m", timeout=10) as resp:
            states = {s["version"]: s["state"] for s in json.loads(resp.read())
                      ["model_version_status"]}
        assert states == {"4": "END", "3": "END", "2": "AVAILABLE", "1": "END"}
        assert total > 100
