"""Pages written for the original Sacrificial-Socket client work against typed-ss unchanged.

The original client file is not part of this repository; tests/browser/legacy_client.js stands in for
it (its header says how it matches the original). ``LEGACY_CLIENT=/path/to/sacrificial-socket.js``
runs these tests with another file, such as a local copy of the original.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page, expect
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, WebSocketRoute

from tests.browser.support import (
    Pages,
    binary_app,
    fresh_module,
    http_url,
    legacy_client_path,
    page,
    screenshot,
    script,
    served,
    wait_for_value,
)
from tests.support import running
from typed_ss import Recovery, Server, Socket

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120), pytest.mark.slow]

LEGACY_PAGE = Path(__file__).with_name("legacy_page")


def legacy_routes() -> list[BaseRoute]:
    """The original page's files where it expects them, and the client file at /js/sacrificial-socket.js."""
    return [
        served(LEGACY_PAGE / "index.html", "/legacy.html", "text/html"),
        script(LEGACY_PAGE / "app.js", "/js/app.js"),
        script(legacy_client_path(), "/js/sacrificial-socket.js"),
    ]


async def legacy_join(legacy: Page, room: str) -> None:
    messages = legacy.locator("#message-list li")
    await expect(messages.last).to_have_text("joined room: global")  # on connect
    await legacy.locator("#join-room-input").fill(room)
    await legacy.locator("#join-room-btn").click()
    await expect(messages.last).to_have_text(f"joined room: {room}")


async def test_an_original_chat_page_talks_to_the_typed_ss_chat_demo(pages: Pages) -> None:
    chat, ss = fresh_module("examples.chat.app")
    # The chat demo's app, unchanged, with the original page's files beside it.
    app = Starlette(routes=[*legacy_routes(), Mount("/", app=chat.app)], lifespan=ss.lifespan)
    async with running(app, ss) as url:
        legacy = await pages.open(http_url(url) + "/legacy.html")
        modern = await pages.open(http_url(url) + "/")
        await legacy.locator("#name-input").fill("lee")
        await legacy_join(legacy, "tea")
        await expect(modern.locator("#current-room")).to_have_text("global")
        await modern.locator("#name").fill("max")
        await modern.locator("#room").fill("tea")
        await modern.get_by_role("button", name="Join").click()
        await expect(modern.locator("#members")).to_have_text("(2 here)")

        await legacy.locator("#message-body-input").fill("hello from the old client")
        await legacy.locator("#message-send-btn").click()
        expected = "lee says: hello from the old client"
        await expect(modern.locator("#messages li.message")).to_have_text([expected])
        await expect(legacy.locator("#message-list li").last).to_have_text(expected)  # sender included

        await modern.get_by_label("Message").fill("hi lee, café ✓")
        await modern.get_by_role("button", name="Send").click()
        await expect(legacy.locator("#message-list li").last).to_have_text("max: hi lee, café ✓")
        await expect(legacy.locator("#message-list li")).to_have_text(
            ["joined room: global", "joined room: tea", expected, "max: hi lee, café ✓"]
        )
        await screenshot(legacy, "legacy-chat")


LEGACY_BINARY_PAGE = """<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>original client: binary</title></head>
<body>
  <script src="/js/sacrificial-socket.js"></script>
  <script>
    var ss = new SS('ws://' + window.location.host + '/socket');
    window.replies = [];
    ss.on('echo', function (data) {
      var type = Object.prototype.toString.call(data);
      window.replies.push({type: type, bytes: Array.from(new Uint8Array(data))});
      if (window.replies.length === 2) window.done = true;
    });
    ss.onConnect(function () {
      ss.emit('echo', new Uint8Array([0, 1, 2, 3, 255]).buffer); // ArrayBuffer: a binary frame
      ss.emit('echo', 'text');                                   // a text frame; echo answers in binary
    });
  </script>
</body>
</html>
"""


async def test_an_original_page_sends_and_receives_binary_frames(pages: Pages) -> None:
    binary = binary_app()
    routes = [
        script(legacy_client_path(), "/js/sacrificial-socket.js"),
        page("/legacy.html", LEGACY_BINARY_PAGE),
    ]
    app = Starlette(routes=[*routes, Mount("/", app=binary.app)], lifespan=binary.ss.lifespan)
    async with running(app, binary.ss) as url:
        legacy = await pages.open(http_url(url) + "/legacy.html")
        assert await wait_for_value(legacy, "window.done") is True
        replies = await legacy.evaluate("window.replies")
        assert replies == [
            {"type": "[object ArrayBuffer]", "bytes": [0, 1, 2, 3, 255]},
            {"type": "[object ArrayBuffer]", "bytes": list(b"text")},
        ]
        assert binary.received == [("echo", b"\x00\x01\x02\x03\xff"), ("echo", b"text")]


# A WebSocket that records what the client does, so the client's frames can be compared byte for byte
# with the original's (reference sacrificial-socket.md §2.3-2.5; checked against the original file).
STUB_WEBSOCKET = """
window.sockets = [];
window.WebSocket = function (url, protocol) {
  this.url = url; this.protocol = protocol; this.readyState = 0; this.sent = []; this.closeArgs = null;
  window.sockets.push(this);
};
window.WebSocket.prototype.send = function (data) {
  this.sent.push(typeof data === "string" ? data : Array.from(new Uint8Array(data)));
};
window.WebSocket.prototype.close = function () {
  this.closeArgs = Array.from(arguments);
  this.readyState = 2;
};
window.warnings = [];
console.warn = function (message) { window.warnings.push(message); };
"""

FRAMES = """() => {
  const ss = new SS("ws://example.test/socket");
  const ws = sockets[0];
  const result = {url: ws.url, protocol: ws.protocol, binaryType: ws.binaryType, received: []};
  ss.emit("too-early", "x"); // still connecting: dropped with a warning
  ws.readyState = 1;
  ws.onopen({});
  ss.emit("join", "global");
  ss.emit("message", {Room: "global", Message: "hi"});
  ss.emit("a", 5);
  ss.emit("a");
  ss.emit("a", null);
  ss.emit("a", true);
  ss.emit("u8", Uint8Array.of(1, 2, 3));
  ss.emit("echobin", Uint8Array.of(1, 2, 3).buffer);
  ss.emit("\\u00e9", Uint8Array.of(7).buffer);
  const bytes = (text) => Uint8Array.from(text, (c) => c.charCodeAt(0)).buffer;
  const show = (v) => v instanceof ArrayBuffer ? {bytes: Array.from(new Uint8Array(v))} : v;
  for (const name of ["echo", "x", "echobin", "ev", "multi", "\\u00c3\\u00a9", "\\u00e9", "nostx"]) {
    ss.on(name, (data) => result.received.push([name, show(data)]));
  }
  for (const frame of [
    "echo\\x01S\\x02hello", "x\\x01J\\x0242", bytes("echobin\\x01B\\x02\\xde\\xad"), "ev\\x02a\\x01b",
    "multi\\x01SJ\\x02[1]", bytes("\\xc3\\xa9\\x01B\\x02\\x07"), '__hello\\x01J\\x02{"v":1}', bytes("nostx"),
  ]) {
    ws.onmessage({data: frame});
  }
  ss.close();
  result.sent = ws.sent;
  result.closeArgs = ws.closeArgs;
  result.warnings = warnings;
  return result;
}"""


async def test_the_legacy_client_frames_are_the_originals(pages: Pages) -> None:
    legacy = await pages.open()
    await legacy.add_script_tag(content=STUB_WEBSOCKET)
    await legacy.add_script_tag(path=legacy_client_path())
    result = await legacy.evaluate(FRAMES)
    assert (result["url"], result["protocol"], result["binaryType"]) == (
        "ws://example.test/socket",
        "sac-sock",
        "arraybuffer",
    )
    assert result["warnings"] == ["websocket is not open yet"]
    assert result["sent"] == [
        "join\x02global",
        'message\x02{"Room":"global","Message":"hi"}',
        "a\x025",
        "a\x02undefined",  # no data: String(undefined)
        "a\x02null",
        "a\x02true",
        'u8\x02{"0":1,"1":2,"2":3}',  # a typed array is an object: JSON
        [*b"echobin", 2, 1, 2, 3],  # only an ArrayBuffer goes binary
        [0xE9, 2, 7],  # "é" truncated to one byte (Latin-1), not UTF-8
    ]
    assert result["received"] == [
        ["echo", "hello"],
        ["x", 42],
        ["echobin", {"bytes": [0xDE, 0xAD]}],
        ["ev", "ab"],  # no header section: the first 0x01 in the payload is lost
        ["multi", [1]],
        ["\u00c3\u00a9", {"bytes": [7]}],  # a UTF-8 name in a binary frame is read as Latin-1
        ["nostx", ""],  # a binary frame without 0x02: the empty string
    ]
    # The original file calls ws.close() without a code (the reference's §3.3 says 1000; the file does not).
    assert result["closeArgs"] == []


LEGACY_RECOVERY_PAGE = """<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>original client: a server with recovery on</title></head>
<body>
  <script src="/js/sacrificial-socket.js"></script>
  <script>
    var ss = new SS('ws://' + window.location.host + '/socket');
    window.got = [];
    ss.on('profile', function (data) { window.got.push(['profile', data]); });
    ss.on('note', function (data) { window.got.push(['note', data]); });
    ss.on('room', function (data) { window.got.push(['room', data]); window.done = true; });
    ss.onConnect(function () { ss.emit('join', 'tea'); });
  </script>
</body>
</html>
"""


async def test_an_original_page_reads_the_frames_of_a_server_with_recovery_on(pages: Pages) -> None:
    # Kept frames carry an offset flag (o<tag>.<offset>, digits only): the original client takes each
    # character of the flags for a flag, and none of them may look like its J.
    ss = Server(recovery=Recovery())

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        await sock.join(room)
        await sock.emit("profile", {"name": "lee"})  # J, to the socket's own stream
        await sock.emit("note", "plain text")  # S
        await ss.roomcast(room, "room", {"room": room})  # J, to the room's stream

    app = Starlette(
        routes=[
            script(legacy_client_path(), "/js/sacrificial-socket.js"),
            page("/legacy.html", LEGACY_RECOVERY_PAGE),
            WebSocketRoute("/socket", ss),
        ],
        lifespan=ss.lifespan,
    )
    async with running(app, ss) as url:
        legacy = await pages.open(http_url(url) + "/legacy.html")
        assert await wait_for_value(legacy, "window.done") is True
        assert await legacy.evaluate("window.got") == [
            ["profile", {"name": "lee"}],
            ["note", "plain text"],
            ["room", {"room": "tea"}],
        ]
