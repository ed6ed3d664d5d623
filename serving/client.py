"""``nwp-client``: ask a TF-Serving-compatible REST server for the next words of prompts.

Works against ``nwp-serve`` and against ``tensorflow_model_server --rest_api_port``::

    nwp-client --rest_api_port 8501 --model_name nwp "the cat sat on the" "in the"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import quote


class ClientError(RuntimeError):
    """The server could not be reached or answered with an error (message included)."""


def _request(url, body=None, timeout=30.0):
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        try:
            message = json.loads(err.read()).get("error", "")
        except ValueError:
            message = err.reason
        raise ClientError(f"HTTP {err.code} from {url}: {message}") from None
    except (urllib.error.URLError, OSError) as err:
        raise ClientError(f"Cannot reach {url}: {err}") from None


def wait_until_available(base_url, model_name, timeout_s):
    """Poll ``GET /v1/models/<name>`` until a version is AVAILABLE.

    Raises:
        ClientError: not available after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status = _request(f"{base_url}/v1/models/{quote(model_name, safe='')}", timeout=5.0)
            if any(v.get("state") == "AVAILABLE" for v in status["model_version_status"]):
                return status
        except ClientError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise ClientError(f"Model {model_name} not available at {base_url} after "
                              f"{timeout_s:.0f} s.")
        time.sleep(0.5)


def predict_next_words(base_url, model_name, prompts, version=None):
    """``POST :predict`` with ``{"instances": prompts}``.

    Args:
        base_url: e.g. ``http://127.0.0.1:8501``.
        model_name: the served model.
        prompts: list of ``str``.
        version: optional int version; None asks for the latest.

    Returns:
        list, one ``{"words": [...], "probabilities": [...]}`` per prompt.

    Raises:
        ClientError: transport or server error, with the server's message.
    """
    path = f"/v1/models/{quote(model_name, safe='')}" + (
        f"/versions/{version}" if version is not None else "")
    return _request(f"{base_url}{path}:predict", {"instances": list(prompts)})["predictions"]


def build_parser():
    p = argparse.ArgumentParser(prog="nwp-client", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("prompts", nargs="+", help="texts whose next word to predict")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--rest_api_port", type=int, default=8501)
    p.add_argument("--model_name", default="nwp")
    p.add_argument("--version", type=int, default=None)
    p.add_argument("--wait", type=float, default=0.0,
                   help="seconds to wait for the model to become available")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    base_url = f"http://{args.host}:{args.rest_api_port}"
    try:
        if args.wait:
            wait_until_available(base_url, args.model_name, args.wait)
        predictions = predict_next_words(base_url, args.model_name, args.prompts, args.version)
    except ClientError as err:
        print(f"nwp-client: error: {err}", file=sys.stderr)
        return 1
    for prompt, pred in zip(args.prompts, predictions):
        ranked = ", ".join(f"{w} ({p:.4f})" for w, p in zip(pred["words"],
                                                              pred["probabilities"]))
        print(f"{prompt!r} -> {ranked}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
