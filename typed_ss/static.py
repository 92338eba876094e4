"""The browser client's files inside the installed package, and a Starlette route that serves them.

A page needs ``ss.js`` (or its ES module entry ``ss.mjs``), and a Python-only user should not need npm
to get it: the wheel carries the client in ``typed_ss/codegen/static`` (pyproject.toml's
``[tool.hatch.build.targets.wheel.force-include]``), and a source checkout has it in ``clients/js``, its
one source. :func:`client_path` finds a file in either; :mod:`typed_ss.codegen.runtime` reads the same
files through it to copy them next to generated clients.

::

    app = Starlette(routes=[
        WebSocketRoute("/socket", ss),
        client_route("/static/ss.js"),                # <script src="/static/ss.js">
        client_route("/static/ss.mjs", module=True),  # import SS from "/static/ss.mjs"
    ], lifespan=ss.lifespan)
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from typed_ss.errors import ConfigurationError

__all__ = ["CLIENT_FILES", "client_files", "client_path", "client_route"]

CLIENT_FILES: Final = ("ss.js", "ss.mjs", "ss.d.ts", "ss-typed.js", "ss-typed.mjs", "ss-typed.d.ts")
"""The client's files: the plain client (``ss.js``, its ES module entry ``ss.mjs``, its types
``ss.d.ts``) and the typed runtime that generated clients call (``ss-typed.*``)."""

_PACKAGED: Final = Path(__file__).resolve().parent / "codegen" / "static"
_SOURCE: Final = Path(__file__).resolve().parents[1] / "clients" / "js"

# RFC 9239: JavaScript is text/javascript (Starlette adds the charset to text/* types).
_JAVASCRIPT: Final = "text/javascript"
# The URL stays the same when typed-ss is upgraded and the file changes under it. A browser may keep
# its copy but must revalidate it (answered with 304 while the ETag matches), so a page never runs a
# client older than the server it talks to.
_CACHE_CONTROL: Final = "no-cache"


def client_path(name: str) -> Path:
    """The path of one of the client's files (a name in :data:`CLIENT_FILES`, such as ``"ss.js"``):
    in ``typed_ss/codegen/static`` of an installed wheel, else in ``clients/js`` of a source checkout.

    Raises:
        ValueError: ``name`` is not one of :data:`CLIENT_FILES`.
        FileNotFoundError: the file is in neither place (a broken installation).
    """
    if name not in CLIENT_FILES:
        raise ValueError(f"{name!r} is not one of the client's files: {', '.join(CLIENT_FILES)}")
    # An installed wheel has its own copy; a source checkout has none (typed_ss/codegen/static is not in
    # the repository) and reads clients/js, so an edit there is served without a rebuild.
    for directory in (_PACKAGED, _SOURCE):
        path = directory / name
        if path.is_file():
            return path
    raise FileNotFoundError(f"typed-ss's {name} is in neither {_PACKAGED} nor {_SOURCE}")


def client_files() -> dict[str, Path]:
    """Every file of :data:`CLIENT_FILES`, by name, with its :func:`client_path`."""
    return {name: client_path(name) for name in CLIENT_FILES}


def client_route(path: str = "/ss.js", *, module: bool = False) -> Route:
    """A route serving the browser client: ``ss.js`` (a classic script, which defines ``window.SS``),
    or with ``module=True`` its ES module entry ``ss.mjs`` (``import SS from "/ss.mjs"``).

    ``ss.mjs`` holds no implementation: it imports ``./ss.js``, which the browser fetches from next to
    it, so a ``module=True`` route needs a plain route at the sibling path too, as in
    ``client_route("/static/ss.js")`` with ``client_route("/static/ss.mjs", module=True)``.

    The file is read once, here (a broken installation fails at start-up, not on a request), and served
    as ``text/javascript`` with a strong ETag and ``Cache-Control: no-cache``: browsers keep it and
    revalidate it (304), so an upgraded server never talks to a cached older client.

    Raises:
        ConfigurationError: ``module=True`` at a path ending in ``/ss.js``, where ``ss.mjs`` would import
            itself instead of ``ss.js``.
    """
    if module and path.rsplit("/", 1)[-1] == "ss.js":
        raise ConfigurationError(
            f"client_route({path!r}, module=True): ss.mjs imports ./ss.js from next to it; serve it at "
            "another path (such as /ss.mjs), with client_route() serving ss.js at the sibling path"
        )
    name = "ss.mjs" if module else "ss.js"
    body = client_path(name).read_bytes()
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"Cache-Control": _CACHE_CONTROL, "ETag": etag, "X-Content-Type-Options": "nosniff"}

    async def serve_client(request: Request) -> Response:
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=_JAVASCRIPT, headers=headers)

    # GET only: Starlette adds HEAD to a GET route.
    return Route(path, serve_client, methods=["GET"], name=f"typed-ss {name}")


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (RFC 9110 13.1.2: ``*``, or a list compared
    weakly, so a ``W/`` prefix that a proxy may have added still matches)."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))
