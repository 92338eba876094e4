"""The native transport (typed_ss.serve, NativeServer) on what only it does: its HTTP front (the upgrade
checks, plain answers, refusals with real statuses), the message rules picows leaves to it (fragments,
UTF-8, sizes, the frame sequence, the close handshake), TLS, and the process (`typed-ss serve`, SIGTERM).

Everything else runs through it too: `make test` runs the live suites a second time with
TYPED_SS_TRANSPORT=native (tests/support.py's `running`, tests/serve.py)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import CloseCode as WsCloseCode
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from tests.apps import echo_server
from tests.backends.grpc_certs import CertificateAuthority
from tests.server_process import ROOT
from tests.support import connect_client, eventually
from typed_ss import CloseCode, NativeServer, Server, Socket
from typed_ss.client import connect as client_connect
from typed_ss.static import client_path

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def native(ss: Server, **options: object) -> AsyncIterator[NativeServer]:
    async with NativeServer(ss, port=0, **options) as server:  # type: ignore[arg-type]
        yield server


def http(server: NativeServer) -> str:
    return f"http://127.0.0.1:{server.port}"


class Raw:
    """A WebSocket client by hand, for what a well-behaved client library refuses to send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._frames = StreamReader()

    @classmethod
    async def upgrade(cls, port: int, extra: str = "", path: str = "/socket") -> tuple[Raw, bytes]:
        """Send an upgrade request; returns the client and the response head."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        return cls(reader, writer), head

    def send(self, opcode: Opcode, data: bytes, *, fin: bool = True, rsv1: bool = False) -> None:
        serialized = bytearray(Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[]))
        if rsv1:  # what a client sends as if it had negotiated compression (websockets will not)
            serialized[0] |= 0x40
        self.writer.write(serialized)

    async def frame(self) -> Frame:
        """The next frame from the server."""
        parser = Frame.parse(self._frames.read_exact, mask=False, max_size=None, extensions=[])
        while True:
            try:
                next(parser)
            except StopIteration as done:
                frame: Frame = done.value
                return frame
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            assert data, "the server ended the connection without a close frame"
            self._frames.feed_data(data)
            parser = Frame.parse(self._frames.read_exact, mask=False, max_size=None, extensions=[])

    async def close_code(self) -> int:
        """Read frames up to the server's close frame; its code."""
        while (frame := await self.frame()).opcode != Opcode.CLOSE:
            pass
        return int.from_bytes(frame.data[:2], "big")

    def close(self) -> None:
        self.writer.close()


# --- the HTTP front -----------------------------------------------------------------------------------


async def test_plain_requests_get_the_client_file_the_health_and_clear_refusals() -> None:
    ss = echo_server()
    async with native(ss) as server, httpx.AsyncClient(base_url=http(server)) as web:
        script = await web.get("/ss.js")
        assert (script.status_code, script.headers["content-type"]) == (200, "text/javascript; charset=utf-8")
        assert script.content == client_path("ss.js").read_bytes()
        head = await web.head("/ss.js")
        assert (head.status_code, head.content) == (200, b"")
        health = await web.get("/health")
        assert health.status_code == 200
        assert health.json()["accepting"] is True
        assert (await web.get("/socket")).status_code == 426  # a WebSocket endpoint, asked plainly
        assert (await web.get("/elsewhere")).status_code == 404
        assert (await web.post("/socket", content=b"x")).status_code == 405


async def test_upgrade_requests_are_checked_before_the_core_sees_them() -> None:
    ss = echo_server()
    async with native(ss) as server:
        for extra, path, status in [
            ("Connection: Upgrade\r\n", "/elsewhere", b"404"),
            ("Connection: close\r\n", "/socket", b"400"),  # an Upgrade header is not an upgrade
        ]:
            raw, head = await Raw.upgrade(server.port, extra, path)
            assert head.split()[1] == status, head
            raw.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /socket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 426")  # no Sec-WebSocket-Version 13
        writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /socket HTTP/1.1\r\n" + b"X-Long: " + b"x" * 20_000 + b"\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 431")
        writer.close()
        assert not ss.sockets


async def test_browsers_connection_header_and_the_subprotocol() -> None:
    ss = echo_server()
    async with native(ss) as server:
        # Firefox sends "keep-alive, Upgrade".
        raw, head = await Raw.upgrade(
            server.port, "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Protocol: chat, sac-sock\r\n"
        )
        assert head.startswith(b"HTTP/1.1 101"), head
        assert b"sec-websocket-protocol: sac-sock" in head.lower()
        hello = await raw.frame()
        assert bytes(hello.data).startswith(b"__hello\x01J\x02")
        raw.close()
        async with connect(f"ws://127.0.0.1:{server.port}/socket") as plain:  # no subprotocol offered
            assert plain.subprotocol is None
            hello_text = await plain.recv()
            assert isinstance(hello_text, str)
            assert hello_text.startswith("__hello")


async def test_the_authenticate_hook_may_await_and_its_refusal_is_an_http_status() -> None:
    ss: Server[str] = Server()

    @ss.authenticate
    async def authenticate(request: HTTPConnection) -> str | None:
        await asyncio.sleep(0.01)  # a look-up: the upgrade waits for it
        return request.query_params.get("token") if request.query_params.get("token") != "bad" else None

    @ss.on("whoami")
    async def whoami(sock: Socket[str], data: bytes) -> str:
        return sock.identity

    async with native(ss) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.url + "?token=bad"):
                pass
        assert refused.value.response.status_code == 403
        async with client_connect(server.url + "?token=ann") as client:
            assert await client.call("whoami", b"", returns=str) == "ann"


# --- messages ------------------------------------------------------------------------------------------


async def test_fragments_are_joined_into_one_message_and_bounded_as_one() -> None:
    ss = echo_server(max_message_size=1000)
    async with native(ss) as server, connect_client(server.url.removesuffix("/socket")) as bystander:
        async with connect(server.url, subprotocols=["sac-sock"]) as ws:  # type: ignore[list-item]
            await ws.recv()  # __hello
            await ws.send(["echo_text", "\x02", "héllo ", "world"])  # four frames, one message
            assert await ws.recv() == "echo_text\x01S\x02héllo world"
            await ws.send([b"echo\x02", b"x" * 600, b"y" * 600])  # 1205 bytes in frames of 600 at most
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == CloseCode.MESSAGE_TOO_BIG
        await bystander.send("echo_text", "still here")
        assert (await bystander.expect("echo_text")).payload == "still here"


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        ([(Opcode.TEXT, b"say\x02\xff\xfe", True, False)], WsCloseCode.INVALID_DATA),
        ([(Opcode.CONT, b"orphan", True, False)], WsCloseCode.PROTOCOL_ERROR),
        ([(Opcode.TEXT, b"a", False, False), (Opcode.TEXT, b"b", True, False)], WsCloseCode.PROTOCOL_ERROR),
        ([(Opcode.TEXT, b"x\x02y", True, True)], WsCloseCode.PROTOCOL_ERROR),  # rsv1, never negotiated
        ([(Opcode.BINARY, b"x" * 2000, True, False)], WsCloseCode.MESSAGE_TOO_BIG),  # one frame too big
    ],
    ids=["invalid-utf8", "orphan-continuation", "message-inside-message", "rsv1", "frame-too-big"],
)
async def test_a_broken_message_closes_that_connection_with_its_code_and_no_error_log(
    frames: list[tuple[Opcode, bytes, bool, bool]], code: int, caplog: pytest.LogCaptureFixture
) -> None:
    ss = echo_server(max_message_size=1000)
    async with native(ss) as server, connect_client(server.url.removesuffix("/socket")) as bystander:
        raw, head = await Raw.upgrade(
            server.port, "Connection: Upgrade\r\nSec-WebSocket-Protocol: sac-sock\r\n"
        )
        assert head.startswith(b"HTTP/1.1 101")
        await raw.frame()  # __hello
        for opcode, data, fin, rsv1 in frames:
            raw.send(opcode, data, fin=fin, rsv1=rsv1)
        assert await raw.close_code() == code
        raw.close()
        await eventually(lambda: len(ss.sockets) == 1)
        await bystander.send("echo_text", "still here")
        assert (await bystander.expect("echo_text")).payload == "still here"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_the_clients_close_is_answered_with_its_code_and_what_follows_is_dropped() -> None:
    ss = echo_server()
    seen: list[str] = []

    @ss.on("note")
    async def note(sock: Socket, text: str) -> None:
        seen.append(text)

    async with native(ss) as server:
        raw, _ = await Raw.upgrade(server.port, "Connection: Upgrade\r\n")
        await raw.frame()  # __hello
        raw.send(Opcode.TEXT, b"note\x02before")
        raw.send(Opcode.CLOSE, (4321).to_bytes(2, "big") + b"bye")
        raw.send(Opcode.TEXT, b"note\x02after")
        assert await raw.close_code() == 4321
        assert await raw.reader.read() == b""  # then the server ends the connection
        raw.close()
        await eventually(lambda: not ss.sockets)
    assert seen == ["before"]


# --- TLS and the process ----------------------------------------------------------------------------------


def tls_contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 from a CA made now, and a client context
    trusting that CA."""
    issued = CertificateAuthority.create(directory).issue(directory, "native")
    assert isinstance(issued.cert, Path)
    assert isinstance(issued.key, Path)
    assert isinstance(issued.ca, Path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(issued.cert, issued.key)
    client = ssl.create_default_context(cafile=str(issued.ca))
    return server, client


async def test_wss_with_an_ssl_context(tmp_path: Path) -> None:
    ss = echo_server()

    @ss.on("scheme")
    async def scheme(sock: Socket, data: bytes) -> str:
        return sock.request.url.scheme

    server_context, client_context = tls_contexts(tmp_path)
    async with native(ss, ssl=server_context) as server:
        assert server.url.startswith("wss://")
        async with client_connect(server.url, ssl=client_context) as client:  # the Python client's option
            assert await client.call("scheme", b"", returns=str) == "wss"


APP = "tests.native_app:ss"


async def test_typed_ss_serve_closes_every_socket_with_1012_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "typed_ss",
        "serve",
        APP,
        "--port",
        "0",
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("typed-ss serving on ws://127.0.0.1:"), line
        url = line.split()[-1]
        async with client_connect(url, reconnect=False) as client:
            assert await client.call("echo_back", "hi", returns=str) == "hi"
            process.send_signal(signal.SIGTERM)
            await client.wait_closed()
            assert client.close_code == CloseCode.SERVICE_RESTART
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --- an ASGI app beside it -------------------------------------------------------------------------------


async def test_an_asgi_app_serves_every_other_request_and_its_lifespan_runs() -> None:
    ss = echo_server()
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        events.append("app start-up")
        yield
        events.append("app shutdown")

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.url.scheme}")

    async def other_socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("plain ASGI")
        await websocket.close()

    app = Starlette(
        routes=[Route("/hello", hello), WebSocketRoute("/other", other_socket)], lifespan=lifespan
    )
    ss.mount(app, "/socket")
    async with native(ss, app=app) as server:
        assert events == ["app start-up"]
        async with httpx.AsyncClient(base_url=http(server)) as web:
            for _ in range(3):  # on one kept-alive connection
                answer = await web.get("/hello")
                assert (answer.status_code, answer.text) == (200, "hello http")
            assert (await web.get("/nowhere")).status_code == 404
        async with connect(f"ws://127.0.0.1:{server.port}/other") as other:
            assert await other.recv() == "plain ASGI"
        async with client_connect(server.url) as client:  # the native path
            got: list[bytes] = []
            client.on("echo", got.append)
            await client.emit("echo", b"native")
            await eventually(lambda: got == [b"native"])
    assert events == ["app start-up", "app shutdown"]


# --- keepalive ----------------------------------------------------------------------------------------------


async def test_a_client_that_answers_pings_stays_and_one_that_does_not_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    ss = echo_server()
    async with native(ss, ping_interval=0.05) as server:
        assert any(task.name == "native keepalive" and task.state == "running" for task in ss.health().tasks)
        silent, _ = await Raw.upgrade(server.port, "Connection: Upgrade\r\n")
        answering, _ = await Raw.upgrade(server.port, "Connection: Upgrade\r\n")
        await eventually(lambda: len(ss.sockets) == 2)
        pings: list[bytes] = []

        async def answer() -> None:
            while True:
                frame = await answering.frame()
                if frame.opcode == Opcode.PING:
                    pings.append(bytes(frame.data))
                    answering.send(Opcode.PONG, bytes(frame.data))

        answerer = asyncio.create_task(answer())
        try:
            await eventually(lambda: len(ss.sockets) == 1)  # the silent one was dropped
            answered = len(pings)
            await eventually(lambda: len(pings) >= answered + 3)  # the other is still pinged
            assert len(ss.sockets) == 1
        finally:
            answerer.cancel()
        silent.close()
        answering.close()
    assert any("no answer to a ping" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any(task.name == "native keepalive" for task in ss.health().tasks)


async def test_the_request_path_is_percent_decoded_as_asgi_servers_give_it() -> None:
    ss = echo_server()

    @ss.on("where")
    async def where(sock: Socket, data: bytes) -> list[str]:
        return [sock.request.url.path, sock.request.scope["raw_path"].decode()]

    async with native(ss) as server:
        async with client_connect(f"ws://127.0.0.1:{server.port}/so%63ket") as client:
            assert await client.call("where", b"", returns=list[str]) == ["/socket", "/so%63ket"]


async def test_a_long_close_reason_is_cut_to_the_frame_without_cutting_a_character() -> None:
    ss = echo_server()

    @ss.on("bye")
    async def bye(sock: Socket, data: bytes) -> None:
        await sock.close(4000, "é" * 100)  # 200 bytes of UTF-8: a close frame holds 123

    async with native(ss) as server, connect(server.url, subprotocols=["sac-sock"]) as ws:  # type: ignore[list-item]
        await ws.recv()  # __hello
        await ws.send("bye\x02")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4000, "é" * 61)
