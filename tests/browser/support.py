"""Helpers for the browser tests: how Chromium is found and launched, pages with error tracking,
screenshots, and condition waits."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Error, Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import Route, WebSocketRoute

from typed_ss import Server, Socket

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
CLIENT_DIR = ROOT / "clients" / "js"

# The flags this machine's Chromium is known to run with. Playwright adds most of them (and a fresh
# --user-data-dir) itself, and repeating them is harmless; --disable-gpu and --disable-quic are the extra
# ones. Without the background-networking flags Chromium keeps trying to reach the closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Upper bound for one condition, in ms (Playwright's unit). Conditions normally hold within milliseconds.
WAIT_MS = 15_000


def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail(
            "Chromium is not installed (no `chromium` on PATH). Run `make test`, which installs it, or "
            "`scripts/ensure-system-packages chromium` (Debian's chromium package, /usr/bin/chromium)."
        )
    return path


@dataclass
class Pages:
    """Opens pages, each in its own browser context (its own cookies and storage, like another person).
    Records uncaught page errors and console messages; ``close`` asserts there were no page errors."""

    browser: Browser
    contexts: list[BrowserContext] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def open(self, url: str | None = None) -> Page:
        context = await self.browser.new_context()
        context.set_default_timeout(WAIT_MS)
        self.contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        page.on("console", lambda message: self._console(page, message))
        if url is not None:
            await page.goto(url)
        return page

    def _console(self, page: Page, message: ConsoleMessage) -> None:
        self.console.append(f"{page.url} [{message.type}] {message.text}")

    async def close(self) -> None:
        for context in self.contexts:
            with contextlib.suppress(Error):  # already gone with the browser
                await context.close()
        assert not self.errors, f"uncaught errors in the page: {self.errors}\nconsole: {self.console}"


async def screenshot(page: Page, name: str) -> Path:
    """Saves a full-page PNG under artifacts/browser/ and checks that the file is a non-empty PNG."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    path.unlink(missing_ok=True)
    await page.screenshot(path=path, full_page=True)
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{path} is not a PNG"
    assert len(data) > 1000, f"{path} is only {len(data)} bytes"
    return path


async def wait_for_value(page: Page, expression: str) -> object:
    """Waits until the JS ``expression`` is neither undefined nor null, and returns its value."""
    handle = await page.wait_for_function(
        f"() => {{ const v = ({expression}); return v === undefined || v === null ? null : [v]; }}",
        timeout=WAIT_MS,
    )
    value = await handle.json_value()
    await handle.dispose()
    assert isinstance(value, list)
    return value[0]


def http_url(ws_url: str) -> str:
    """The page URL for a server that ``tests.support.running`` gave as ``ws://host:port``."""
    return ws_url.replace("ws://", "http://", 1)


def fresh_module(name: str) -> tuple[ModuleType, Server]:
    """A freshly executed example module and its ``ss``: a Server must not outlive its event loop."""
    module = importlib.reload(importlib.import_module(name))
    server = module.ss
    assert isinstance(server, Server)
    return module, server


def legacy_client_path() -> Path:
    """The stand-in for the original client, or the file named by LEGACY_CLIENT (for example a local,
    uncommitted copy of the original sacrificial-socket.js, to check the stand-in against it)."""
    return Path(os.environ.get("LEGACY_CLIENT") or Path(__file__).with_name("legacy_client.js"))


def served(path: Path, at: str, media_type: str) -> Route:
    """A route serving one file."""

    async def endpoint(request: Request) -> Response:
        return FileResponse(path, media_type=media_type)

    return Route(at, endpoint)


def script(path: Path, at: str | None = None) -> Route:
    """A JavaScript file at ``at`` (default ``/<its name>``); modules need a JavaScript MIME type."""
    return served(path, at or "/" + path.name, "text/javascript")


def page(path: str, html: str) -> Route:
    async def endpoint(request: Request) -> Response:
        return HTMLResponse(html)

    return Route(path, endpoint)


# A page that loads typed-ss's client as a classic script, the way the README shows.
CLASSIC_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>typed-ss client: binary frames</title></head>
<body>
  <h1>binary frames</h1>
  <p>Status: <span id="status">connecting</span></p>
  <script src="/ss.js"></script>
  <script>
    "use strict";
    window.ss = new SS("ws://" + location.host + "/socket");
    ss.onConnect(function () { document.getElementById("status").textContent = "connected"; });
    // Sends one event and resolves with the data of the first reply to it.
    window.roundTrip = function (event, data) {
      return new Promise(function (resolve) {
        ss.on(event, function (reply) { ss.off(event); resolve(reply); });
        ss.emit(event, data);
      });
    };
  </script>
</body>
</html>
"""

# A page that loads the client through the ES module entry.
MODULE_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>typed-ss client: ES module</title></head>
<body>
  <h1>ES module</h1>
  <script type="module">
    import SS, { SS as Named } from "/ss.mjs";
    const ss = new SS("ws://" + location.host + "/socket");
    const result = {
      type: typeof SS,
      sameAsNamed: SS === Named,
      sameAsGlobal: window.SS === SS,
      hasSSError: typeof SS.SSError === "function",
    };
    ss.on("echo", (reply) => {
      result.replyIsArrayBuffer = reply instanceof ArrayBuffer;
      result.reply = Array.from(new Uint8Array(reply));
      result.id = ss.id;
      window.moduleResult = result;
    });
    ss.emit("echo", Uint8Array.of(9, 8, 7, 1, 2)); // queued until the connection opens
  </script>
</body>
</html>
"""

# An event name with 2- and 3-byte UTF-8 characters.
UTF8_EVENT = "écho-✓"


@dataclass
class BinaryApp:
    """A typed-ss server that echoes bytes, the pages above, and typed-ss's client files."""

    app: Starlette
    ss: Server
    received: list[tuple[str, bytes]]


def binary_app() -> BinaryApp:
    ss = Server()
    received: list[tuple[str, bytes]] = []

    @ss.on("echo")
    async def echo(sock: Socket, data: bytes) -> None:
        received.append(("echo", data))
        await sock.emit("echo", data)  # bytes: a B frame, a binary WebSocket message

    @ss.on(UTF8_EVENT)
    async def echo_utf8(sock: Socket, data: bytes) -> None:
        received.append((UTF8_EVENT, data))
        await sock.emit(UTF8_EVENT, data)

    routes = [
        WebSocketRoute("/socket", ss),
        page("/", CLASSIC_PAGE),
        page("/module.html", MODULE_PAGE),
        script(CLIENT_DIR / "ss.js"),
        script(CLIENT_DIR / "ss.mjs"),
    ]
    return BinaryApp(Starlette(routes=routes, lifespan=ss.lifespan), ss, received)
