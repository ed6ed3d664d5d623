"""The page ``nwp-serve`` shows at ``/`` ("see the model think"), unless ``--no_web_page``.

Three static files ship in the package (``serving/web/``: ``index.html``, ``app.js``,
``style.css``); no build step, nothing fetched from the network. The page calls only the
public REST API (``GET /v1/models/NAME``, ``.../metadata``, ``POST ...:predict``) of the
server that served it. The one thing that API cannot tell a browser is which models the
server has (TF Serving has no list call), so the page is sent with the configured model
names in a ``<meta name="nwp-models">`` tag; nor can it tell the server's limits on one
request (``--max_request_bytes``, ``--max_request_tokens``), sent in
``<meta name="nwp-limits">`` so that the page cuts a text too long for them to its end
(with a note) instead of sending what the API would refuse.

Routes: ``GET /`` (the page) and ``GET /web/<file>`` (its script and style sheet). Every
other path still goes to the REST API's handler.
"""

from __future__ import annotations

import html
import json
import pathlib

from aiohttp import web

WEB_DIR = pathlib.Path(__file__).with_name("web")
_TYPES = {"app.js": "text/javascript", "style.css": "text/css"}
# The page may talk to its own origin only: no CDN, no network beyond this server.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
MODELS_PLACEHOLDER = "__NWP_MODELS__"
LIMITS_PLACEHOLDER = "__NWP_LIMITS__"


def add_routes(app, model_names, limits=None):
    """Register the page's routes on ``app`` (before the API's catch-all route).

    Args:
        app: the ``aiohttp.web.Application``.
        model_names: a callable returning the names of the configured models.
        limits: ``{"max_request_bytes": int, "max_request_tokens": int,
            "prompt_token_cap": int}``, the server's limits on one request (sent in a
            ``<meta name="nwp-limits">`` tag, so that the page cuts a text too long for them
            instead of sending what the API refuses); None: no limits are sent.
    """
    files = {name: (WEB_DIR / name).read_bytes() for name in _TYPES}
    page = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    page = page.replace(LIMITS_PLACEHOLDER,
                        html.escape(json.dumps(limits or {}, sort_keys=True), quote=True))
    headers = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
               "Cache-Control": "no-cache"}

    async def index(request):
        names = html.escape(json.dumps(sorted(model_names())), quote=True)
        return web.Response(text=page.replace(MODELS_PLACEHOLDER, names),
                            content_type="text/html", charset="utf-8", headers=headers)

    async def static(request):
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(body=files[name], content_type=_TYPES[name], charset="utf-8",
                            headers=headers)

    app.router.add_get("/", index)
    app.router.add_get("/web/{name}", static)
