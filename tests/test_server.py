"""The server end to end: uvicorn on a free loopback port, real WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
from typing import Any

import pytest
from starlette.requests import HTTPConnection
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.apps import Point, Profile, echo_server, make_app
from tests.support import Client, connect_client, eventually, running
from typed_ss import (
    CloseCode,
    ConfigurationError,
    EncodeError,
    InvalidName,
    LimitExceeded,
    Server,
    Socket,
)
from typed_ss.origin import HandshakePolicy

# --- handshake -------------------------------------------------------------------------------------


async def test_handshake_selects_subprotocol_and_sends_hello_first() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        assert client.ws.subprotocol == "sac-sock"
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", client.id)
        assert client.hello == {
            "v": 1,
            "id": client.id,
            "max_message_size": 1024 * 1024,
            "contract": ss.contract.fingerprint,
            "max_calls": 64,
        }
        assert ss.get_socket(client.id) is not None
        assert len(ss.sockets) == 1


async def test_client_offering_no_subprotocol_is_accepted() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url, subprotocols=None) as client:
        assert client.ws.subprotocol is None
        await client.send("echo_text", "hi")
        assert (await client.expect("echo_text")).payload == "hi"


async def test_socket_ids_are_unique() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url:
        ids = set()
        for _ in range(20):
            async with connect_client(url) as client:
                ids.add(client.id)
        assert len(ids) == 20


async def test_server_alone_is_an_asgi_app() -> None:
    ss = echo_server()
    async with running(ss, ss) as url, connect_client(url, path="/") as client:
        await client.send("echo_text", "alone")
        assert (await client.expect("echo_text")).payload == "alone"


# --- the three data types ----------------------------------------------------------------------------


@pytest.mark.parametrize("frame_type", ["text", "binary"])
async def test_echo_of_each_data_type(frame_type: str) -> None:
    ss = echo_server()

    def payload(text: str) -> str | bytes:
        return text if frame_type == "text" else text.encode()

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("echo", payload("héllo"))
        frame = await client.expect("echo")
        assert (frame.letter, frame.binary, frame.payload) == ("B", True, "héllo".encode())

        await client.send("echo_text", payload("héllo"))
        frame = await client.expect("echo_text")
        assert (frame.letter, frame.binary, frame.payload) == ("S", False, "héllo")

        await client.send("echo_chat", payload('{"room":"r","text":"t"}'))
        frame = await client.expect("echo_chat")
        assert (frame.letter, frame.binary) == ("J", False)
        assert frame.json() == {"room": "r", "text": "t"}

        await client.send("profile", payload('{"name":"ann","age":3}'))
        assert (await client.expect("profile")).json() == {"name": "ann", "age": 3}


async def test_binary_payload_with_delimiters_and_empty_payload() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("echo", b"\x01\x02\x00\xff")
        assert (await client.expect("echo")).payload == b"\x01\x02\x00\xff"
        await client.send("echo", b"")
        assert (await client.expect("echo")).payload == b""


async def test_emit_types_exactly_as_the_protocol_table() -> None:
    ss = Server()

    @ss.on("types")
    async def types(sock: Socket, data: bytes) -> None:
        await sock.emit("t", "text")
        await sock.emit("t", bytearray(b"\x00\x01"))
        await sock.emit("t", memoryview(b"mv"))
        await sock.emit("t", None)
        await sock.emit("t", 42)
        await sock.emit("t", [1, "a"])
        await sock.emit("t", Point(1, 2))
        await sock.emit("t", Profile(name="b", age=1))

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("types")
        raw = [await client.ws.recv() for _ in range(8)]
        assert raw == [
            "t\x01S\x02text",
            b"t\x01B\x02\x00\x01",
            b"t\x01B\x02mv",
            "t\x01J\x02null",
            "t\x01J\x0242",
            't\x01J\x02[1,"a"]',
            't\x01J\x02{"x":1,"y":2}',
            't\x01J\x02{"name":"b","age":1}',
        ]


async def test_unencodable_data_raises_in_the_caller_and_sends_nothing() -> None:
    ss = Server()
    errors: list[Exception] = []

    @ss.on("bad")
    async def bad(sock: Socket, data: bytes) -> None:
        for value in (object(), "\ud800"):
            try:
                await sock.emit("x", value)
            except EncodeError as exc:
                errors.append(exc)
        await sock.emit("done", "")

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("bad")
        assert (await client.recv()).event == "done"
        assert len(errors) == 2


# --- rooms and casts -------------------------------------------------------------------------------


async def test_join_leave_and_empty_rooms_are_deleted() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as a, connect_client(url) as b:
        for client in (a, b):
            await client.send("join", "lobby")
            await client.expect("joined")
        sock_a = ss.get_socket(a.id)
        assert sock_a is not None
        assert sock_a.rooms == {"lobby"}
        assert sock_a.in_room("lobby")
        assert ss.hub.room_size("lobby") == 2
        await a.send("leave", "lobby")
        await a.expect("left")
        assert ss.hub.room_size("lobby") == 1
        assert not sock_a.in_room("lobby")
        await b.send("leave", "lobby")
        await b.expect("left")
        assert "lobby" not in ss.hub.room_names


async def test_roomcast_reaches_members_sender_included_and_not_others() -> None:
    ss = echo_server()
    async with (
        running(make_app(ss), ss) as url,
        connect_client(url) as member,
        connect_client(url) as other_member,
        connect_client(url) as outsider,
    ):
        for client in (member, other_member):
            await client.send("join", "r1")
            await client.expect("joined")
        await member.send("roomcast", '{"room":"r1","text":"hi"}')
        for client in (member, other_member):
            assert (await client.expect("chat")).json() == {"room": "r1", "text": "hi"}
        await outsider.nothing_within(0.2)
        # A non-member may roomcast too, and does not receive it.
        await outsider.send("roomcast", '{"room":"r1","text":"from outside"}')
        for client in (member, other_member):
            assert (await client.expect("chat")).json()["text"] == "from outside"
        await outsider.nothing_within(0.2)


async def test_broadcast_reaches_everyone_including_the_sender() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as a, connect_client(url) as b, connect_client(url) as c:
            await a.send("broadcast", "hello all")
            for client in (a, b, c):
                frame = await client.expect("news")
                assert (frame.letter, frame.payload) == ("S", "hello all")
            await ss.broadcast("server_news", {"n": 1})
            for client in (a, b, c):
                assert (await client.expect("server_news")).json() == {"n": 1}


async def test_socketcast_reaches_exactly_one_socket() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as a, connect_client(url) as b, connect_client(url) as c:
            await a.send("socketcast", b.id)
            assert (await b.expect("direct")).payload == f"from {a.id}"
            await a.nothing_within(0.1)
            await c.nothing_within(0.1)
            await ss.socketcast(c.id, "direct", b"\x00")
            assert (await c.expect("direct")).payload == b"\x00"
            await ss.socketcast("no-such-socket", "direct", "x")  # not an error


async def test_room_limits_at_the_limit_and_past_it() -> None:
    ss = Server(max_rooms_per_socket=3, max_room_name_length=8)
    outcomes: list[str] = []

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        try:
            await sock.join(room)
            outcomes.append("ok")
        except (LimitExceeded, InvalidName) as exc:
            outcomes.append(type(exc).__name__)
        await sock.emit("done", room)

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        for room in ["a", "b", "12345678", "123456789", "d", "a", "__socket_id:x", ""]:
            await client.send("join", room)
            await client.expect("done")
    assert outcomes == ["ok", "ok", "ok", "InvalidName", "LimitExceeded", "ok", "InvalidName", "InvalidName"]


# --- hooks -----------------------------------------------------------------------------------------


async def test_hooks_run_in_order_and_disconnect_sees_rooms() -> None:
    ss = Server()
    log: list[str] = []

    @ss.on_connect
    async def connected(sock: Socket) -> None:
        await asyncio.sleep(0.05)  # the first message must still wait for this hook
        log.append("connect")

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        log.append("message")
        await sock.join(room)

    @ss.on_disconnect
    async def disconnected(sock: Socket) -> None:
        log.append(f"disconnect {sorted(sock.rooms)}")

    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as client:
            await client.send("join", "x")
            await client.send("join", "y")
            await eventually(lambda: log.count("message") == 2)
        await eventually(lambda: len(log) == 4)
    assert log == ["connect", "message", "message", "disconnect ['x', 'y']"]


async def test_failing_connect_hook_closes_with_1011() -> None:
    ss = Server()

    @ss.on_connect
    async def connected(sock: Socket) -> None:
        raise RuntimeError("no")

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == CloseCode.INTERNAL_ERROR


async def test_server_side_close_sends_the_code_after_queued_frames() -> None:
    ss = Server()

    @ss.on("kick")
    async def kick(sock: Socket, reason: str) -> None:
        await sock.emit("bye", reason)
        await sock.close(4000, reason)
        await sock.emit("after", "dropped")  # a closing socket drops emits

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("kick", "go away")
        assert (await client.expect("bye")).payload == "go away"
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert (client.ws.close_code, client.ws.close_reason) == (4000, "go away")
        await eventually(lambda: not ss.sockets)


# --- errors reach the client, the socket stays open --------------------------------------------------


async def test_invalid_payload_gets_error_event_and_socket_stays_open() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("echo_chat", '{"room": 1}')
        error = (await client.expect("__error")).json()
        assert error["event"] == "echo_chat"
        assert error["code"] == "invalid_payload"
        assert "$.room" in error["detail"]

        await client.send("profile", '{"name": "x", "age": "old"}')
        error = (await client.expect("__error")).json()
        assert (error["code"], error["event"]) == ("invalid_payload", "profile")
        assert "age" in error["detail"]

        await client.send("echo_chat", "undefined")  # what the original client sends for no data
        assert (await client.expect("__error")).json()["code"] == "invalid_payload"

        await client.send("echo_text", "still open")
        assert (await client.expect("echo_text")).payload == "still open"


async def test_handler_exception_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as a, connect_client(url) as b:
        await a.send("fail")
        error = (await a.expect("__error")).json()
        assert error == {
            "event": "fail",
            "code": "handler_error",
            "detail": "the handler for this event failed",
        }
        assert "boom" not in str(error)
        for client in (a, b):
            await client.send("echo_text", "ok")
            assert (await client.expect("echo_text")).payload == "ok"
    failures = [r for r in caplog.records if "the handler for event 'fail' failed" in r.getMessage()]
    assert len(failures) == 1
    assert a.id in failures[0].getMessage()
    assert failures[0].exc_info is not None


async def test_unknown_and_reserved_events_from_clients_are_dropped() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.send("nobody_listens", "x")
        await client.send("__hello", "{}")
        await client.send("__error", "{}")
        await client.nothing_within(0.2)
        await client.send("echo_text", "fine")
        assert (await client.expect("echo_text")).payload == "fine"


# --- origin and authentication -----------------------------------------------------------------------


async def test_cross_origin_is_refused_with_403_before_accept() -> None:
    ss = echo_server()
    connects: list[str] = []

    @ss.on_connect
    async def connected(sock: Socket) -> None:
        connects.append(sock.id)

    async with running(make_app(ss), ss) as url:
        with pytest.raises(InvalidStatus) as refused:
            async with connect_client(url, origin="http://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        port = url.rsplit(":", 1)[1]
        async with connect_client(url, origin=f"http://127.0.0.1:{port}") as client:
            assert client.id
        async with connect_client(url) as client:  # no Origin header: not a browser
            assert client.id
    assert len(connects) == 2


async def test_allowed_origins_widen_same_origin() -> None:
    ss = Server(allowed_origins=["https://app.example.com"])
    async with running(make_app(ss), ss) as url:
        async with connect_client(url, origin="https://APP.example.com") as client:
            assert client.id
        with pytest.raises(InvalidStatus):
            async with connect_client(url, origin="https://other.example.com"):
                pass
    anyone = Server(allowed_origins=["*"])
    async with running(make_app(anyone), anyone) as url:
        async with connect_client(url, origin="https://other.example.com") as client:
            assert client.id


async def test_authentication_hook_refuses_or_stores_identity() -> None:
    ss = Server()

    @ss.authenticate
    async def auth(request: HTTPConnection) -> str | None:
        token = request.query_params.get("token") or request.cookies.get("token")
        if token == "crash":
            raise RuntimeError("auth backend down")
        return f"user-{token}" if token else None

    @ss.on("whoami")
    async def whoami(sock: Socket, data: bytes) -> None:
        await sock.emit("you", {"identity": sock.identity, "agent": sock.request.headers.get("x-agent")})

    async with running(make_app(ss), ss) as url:
        with pytest.raises(InvalidStatus) as refused:
            async with connect_client(url):
                pass
        assert refused.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as crashed:
            async with connect_client(url, path="/socket?token=crash"):
                pass
        assert crashed.value.response.status_code == 500
        async with connect_client(url, path="/socket?token=7", additional_headers={"x-agent": "t"}) as client:
            await client.send("whoami")
            assert (await client.expect("you")).json() == {"identity": "user-7", "agent": "t"}
        async with connect_client(url, additional_headers={"cookie": "token=c"}) as client:
            await client.send("whoami")
            assert (await client.expect("you")).json()["identity"] == "user-c"
    assert not ss.sockets


# --- message size ----------------------------------------------------------------------------------


async def test_message_over_the_limit_closes_with_1009_and_at_the_limit_passes() -> None:
    limit = 4096
    ss = echo_server(max_message_size=limit)
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        assert client.hello["max_message_size"] == limit
        at_limit = "echo\x02" + "a" * (limit - 5)
        await client.ws.send(at_limit)
        assert len((await client.expect("echo")).payload) == limit - 5
        await client.ws.send(at_limit + "a")
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == CloseCode.MESSAGE_TOO_BIG
        # typed-ss's own check, where the ASGI server allows more than the server's limit
    async with running(make_app(ss), ss, ws_max_size=limit * 4) as url, connect_client(url) as client:
        await client.ws.send("echo\x02" + "é" * limit)  # fewer characters than bytes
        with pytest.raises(ConnectionClosed):
            await client.recv()
        assert client.ws.close_code == CloseCode.MESSAGE_TOO_BIG


async def test_open_connections_survive_other_clients_being_closed() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as steady:
        for _ in range(5):
            async with connect(url + "/socket", subprotocols=["sac-sock"]) as ws:  # type: ignore[list-item]
                await ws.recv()
        await steady.send("echo_text", "still here")
        assert (await steady.expect("echo_text")).payload == "still here"


async def test_clients_helper_reports_the_hello_id() -> None:
    # Guards the helper the other tests rely on.
    ss = echo_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        assert isinstance(client, Client)
        assert client.id in ss.sockets


# --- reserved room names in casts ------------------------------------------------------------------


async def test_roomcast_refuses_reserved_room_names_and_socketcast_still_works() -> None:
    ss = echo_server()
    typed = ss.event("typed_direct", str)
    async with running(make_app(ss), ss) as url, connect_client(url) as a, connect_client(url) as b:
        # The app roomcasts to a room its client names: a client must not reach a socket by its id.
        await a.send("roomcast", json.dumps({"room": f"__socket_id:{b.id}", "text": "hi"}))
        error = (await a.expect("__error")).json()
        assert (error["event"], error["code"]) == ("roomcast", "handler_error")
        sock_a = ss.get_socket(a.id)
        assert sock_a is not None
        for room in (f"__socket_id:{b.id}", "__anything", ""):
            with pytest.raises(InvalidName):
                await ss.roomcast(room, "direct", "x")
            with pytest.raises(InvalidName):
                await sock_a.roomcast(room, "direct", "x")
            with pytest.raises(InvalidName):
                await typed.roomcast(room, "x")
        await b.nothing_within(0.2)
        # socketcast, a roomcast to that very room underneath, keeps working from every entry point.
        await ss.socketcast(b.id, "direct", "1")
        await sock_a.socketcast(b.id, "direct", "2")
        await typed.socketcast(b.id, "3")
        assert [(await b.recv()).payload for _ in range(3)] == ["1", "2", "3"]
        await a.nothing_within(0.1)


# --- Origin scheme and allowed hosts -----------------------------------------------------------------


async def handshake_status(url: str, host: str, origin: str | None = None) -> int:
    """Send a WebSocket upgrade request with exactly these ``Host`` and ``Origin`` headers (as a
    DNS-rebinding page's browser would) and return the HTTP status of the answer."""
    address, port = url.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(address, int(port))
    try:
        lines = [
            "GET /socket HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Protocol: sac-sock",
        ]
        if origin is not None:
            lines.append(f"Origin: {origin}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = await asyncio.wait_for(reader.readline(), 5)
        return int(status_line.split()[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_an_origin_with_another_scheme_is_refused() -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url:
        port = url.rsplit(":", 1)[1]
        with pytest.raises(InvalidStatus) as refused:
            async with connect_client(url, origin=f"https://127.0.0.1:{port}"):
                pass
        assert refused.value.response.status_code == 403
        async with connect_client(url, origin=f"http://127.0.0.1:{port}") as client:
            assert client.id
        # Behind a TLS-terminating proxy that uvicorn trusts (127.0.0.1 by default), the scope says
        # wss: then the page is https and a plain-http origin is the foreign one.
        proxied = {"X-Forwarded-Proto": "https"}
        async with connect_client(url, origin=f"https://127.0.0.1:{port}", additional_headers=proxied) as c:
            assert c.id
        with pytest.raises(InvalidStatus):
            async with connect_client(url, origin=f"http://127.0.0.1:{port}", additional_headers=proxied):
                pass


async def test_dns_rebinding_is_refused_with_allowed_hosts(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    # Without allowed_hosts (the default) the rebinding page is same-origin with itself: documented.
    open_server = echo_server()
    async with running(make_app(open_server), open_server) as url:
        port = url.rsplit(":", 1)[1]
        assert await handshake_status(url, f"evil.example:{port}", f"http://evil.example:{port}") == 101

    ss = echo_server(allowed_hosts=["127.0.0.1", "*.example.com"])
    async with running(make_app(ss), ss) as url:
        port = url.rsplit(":", 1)[1]
        assert await handshake_status(url, f"evil.example:{port}", f"http://evil.example:{port}") == 403
        assert await handshake_status(url, f"evil.example:{port}") == 403  # not a browser: still the host
        assert await handshake_status(url, f"example.com:{port}") == 403  # *. is for subdomains only
        assert (
            await handshake_status(url, f"chat.example.com:{port}", f"http://chat.example.com:{port}") == 101
        )
        assert await handshake_status(url, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 101
        async with connect_client(url, origin=f"http://127.0.0.1:{port}") as client:
            await client.send("echo_text", "allowed")
            assert (await client.expect("echo_text")).payload == "allowed"
    refusals = [r for r in caplog.records if "refused a WebSocket" in r.getMessage()]
    assert len(refusals) == 3
    assert all(r.levelno == logging.WARNING for r in refusals)
    assert repr(f"evil.example:{port}") in refusals[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_allowed_hosts_with_a_port_allow_that_port_only() -> None:
    ss = echo_server(allowed_hosts=["127.0.0.1:1"])
    async with running(make_app(ss), ss) as url:
        with pytest.raises(InvalidStatus) as refused:
            async with connect_client(url):
                pass
        assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    "origin",
    [
        "http://[::1",
        "http://127.0.0.1:99999",
        "http://user@127.0.0.1",
        "null",
        "not a url",
        "http://é.example",
    ],
)
async def test_a_malformed_origin_is_refused_with_403_not_a_server_error(
    origin: str, caplog: pytest.LogCaptureFixture
) -> None:
    ss = echo_server()
    async with running(make_app(ss), ss) as url:
        port = url.rsplit(":", 1)[1]
        assert await handshake_status(url, f"127.0.0.1:{port}", origin) == 403
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        pytest.param({"allowed_hosts": "example.com"}, "a list of hosts", id="hosts-single-string"),
        pytest.param({"allowed_hosts": []}, "allowed_hosts is empty", id="hosts-empty"),
        pytest.param({"allowed_hosts": ["https://example.com"]}, "is a URL", id="hosts-url"),
        pytest.param({"allowed_hosts": ["a.*.example.com"]}, "may only start", id="hosts-inner-wildcard"),
        pytest.param({"allowed_hosts": ["example.com:0"]}, "is not a host", id="hosts-port-0"),
        pytest.param({"allowed_hosts": ["example.com:http"]}, "is not a host", id="hosts-port-name"),
        pytest.param({"allowed_hosts": [".example.com"]}, "is not a host", id="hosts-leading-dot"),
        pytest.param({"allowed_hosts": ["exa mple.com"]}, "is not a host", id="hosts-space"),
        pytest.param({"allowed_hosts": [""]}, "is not a host", id="hosts-empty-entry"),
        pytest.param({"allowed_hosts": [b"example.com"]}, "must be strings", id="hosts-bytes"),
        pytest.param(
            {"allowed_origins": "https://a.example"}, "a list of origins", id="origins-single-string"
        ),
        pytest.param({"allowed_origins": ["a.example"]}, "is not an origin", id="origins-no-scheme"),
        pytest.param({"allowed_origins": ["https://a.example/app"]}, "is not an origin", id="origins-path"),
        pytest.param({"allowed_origins": ["https://*.a.example"]}, "wildcards", id="origins-wildcard"),
    ],
)
def test_malformed_origin_and_host_settings_raise_configuration_error(
    options: dict[str, Any], says: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        Server(**options)


@pytest.mark.parametrize(
    ("scheme", "host", "origin", "allowed"),
    [
        ("ws", "chat.example.com", "http://chat.example.com", True),
        ("ws", "chat.example.com:80", "http://chat.example.com", True),  # the default port, written or not
        ("wss", "chat.example.com", "https://chat.example.com:443", True),
        ("wss", "CHAT.example.com.", "https://chat.example.com", True),  # case and the FQDN dot
        ("ws", "chat.example.com", "https://chat.example.com", False),  # the scheme differs
        ("wss", "chat.example.com", "http://chat.example.com", False),
        ("ws", "chat.example.com:8080", "http://chat.example.com", False),  # the port differs
        ("ws", "[::1]:8080", "http://[::1]:8080", True),
        ("ws", "chat.example.com", None, True),  # not a browser
        ("ws", None, "http://chat.example.com", False),
        ("ws", "chat.example.com", "https://app.example.com", True),  # allowed_origins
        ("wss", "chat.example.com", "HTTPS://APP.EXAMPLE.COM:443", True),
        ("ws", "chat.example.com", "http://app.example.com", False),  # allowed_origins has the scheme
    ],
)
def test_the_origin_rules(scheme: str, host: str | None, origin: str | None, allowed: bool) -> None:
    policy = HandshakePolicy(["https://app.example.com/"])
    assert (policy.refusal(scheme, host, origin) is None) is allowed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("chat.example.com", True),
        ("chat.example.com:8443", True),  # an entry without a port: any port
        ("127.0.0.1:8080", True),
        ("127.0.0.1:8081", False),  # an entry with a port: that port only
        ("127.0.0.1", False),
        ("a.b.example.com", True),
        ("example.com", False),
        ("badexample.com", False),
        ("[::1]:8080", True),
        ("evil.example", False),
        ("chat.example.com:x", False),
        ("", False),
    ],
)
def test_the_host_rules(host: str, allowed: bool) -> None:
    policy = HandshakePolicy((), ["chat.example.com", "127.0.0.1:8080", "*.example.com", "[::1]"])
    refusal = policy.refusal("ws", host, None)
    assert (refusal is None) is allowed
    if refusal is not None:
        assert (refusal.header, refusal.value) == ("host", host)
