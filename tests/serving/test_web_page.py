"""The page at ``/`` over plain HTTP (no browser): served by default, off with
``--no_web_page``, shipped as package data, and the REST API answers the same either way."""

import json
import pathlib
import urllib.error
import urllib.request

import pytest

from tests.conftest import running_server

WEB = pathlib.Path(__file__).resolve().parents[2] / "serving" / "web"


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def _post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _api_answers(url):
    """Status, metadata, the three signatures and two errors, as (code, body) pairs."""
    model = f"{url}/v1/models/nwp"
    status = _get(model)
    metadata = _get(model + "/metadata")
    return [
        (status[0], json.loads(status[2])),
        (metadata[0], json.loads(metadata[2])),
        _post(model + ":predict", {"instances": ["the name of", ""]}),
        _post(model + ":predict", {"signature_name": "generate", "instances": [
            {"text": "the", "max_new_tokens": 6, "temperature": 0.8, "top_k": 40,
             "top_p": 0.95, "seed": 3}]}),
        _post(model + ":predict", {"signature_name": "score", "instances": ["the name of it"]}),
        _post(model + ":predict", {"signature_name": "nope", "instances": ["the"]}),
        _post(f"{url}/v1/models/other:predict", {"instances": ["the"]}),
    ]


def test_package_data_lists_the_web_files():
    text = (WEB.parents[1] / "pyproject.toml").read_text()
    assert 'serving = ["web/*.html", "web/*.js", "web/*.css"]' in text
    assert {p.name for p in WEB.iterdir()} >= {"index.html", "app.js", "style.css"}


def test_page_is_served_and_no_web_page_turns_it_off(server, exported):
    status, headers, body = _get(server + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert '<meta name="nwp-models" content="[&quot;nwp&quot;]">' in page
    import html
    import re

    limits = re.search(r'<meta name="nwp-limits" content="([^"]*)">', page).group(1)
    assert json.loads(html.unescape(limits)) == {  # the server's (the fixture's flags)
        "max_request_bytes": 100000, "max_request_tokens": 1 << 18, "prompt_token_cap": 256}
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "http://" not in page and "https://" not in page  # nothing from the network
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, headers, body = _get(f"{server}/web/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind)
        assert body == (WEB / name).read_bytes()
        assert b"http://" not in body and b"https://" not in body
    for method in ("POST", "PUT"):  # other methods still reach the API's 404, as before
        request = urllib.request.Request(server + "/", data=b"{}", method=method)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(request, timeout=30)
        assert err.value.code == 404
    assert _get(server + "/web/index.htm")[0] == 404
    assert _get(server + "/web/..%2frest.py")[0] == 404
    with_page = _api_answers(server)

    with running_server("--model_name=nwp", f"--model_base_path={exported[0]}",
                        "--no_web_page") as (url, _):
        for path in ("/", "/web/app.js", "/web/style.css"):
            assert _get(url + path)[0] == 404, path
        without_page = _api_answers(url)
    assert with_page == without_page
    codes = [code for code, _ in with_page]
    assert codes == [200, 200, 200, 200, 200, 400, 404]


def test_no_web_page_flag_parses():
    from serving.server import build_parser

    assert build_parser().parse_args(["--no_web_page"]).no_web_page
    assert not build_parser().parse_args([]).no_web_page
