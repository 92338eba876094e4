"""The Python client (typed_ss.client) against real servers: replies and errors of every kind, calls the
server makes, order, limits, and reconnects after each kind of close; then its sans-I/O parts (frames,
the reconnect rules and delays)."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from tests.apps import make_app
from tests.call_app import AddQuery, AddResult, Answer, Profile, Question, add_call_handlers
from tests.support import eventually, free_socket, running
from typed_ss import (
    CallClosed,
    CallError,
    CloseCode,
    EncodeError,
    HandlerError,
    HandlerSignatureError,
    InvalidName,
    LimitExceeded,
    PayloadValidationError,
    Server,
    Socket,
    uvicorn_settings,
)
from typed_ss.client import Client, ClientClosed, ReconnectPolicy, connect, should_reconnect
from typed_ss.client.frames import client_frame, parse_server_frame
from typed_ss.client.reconnect import Retry
from typed_ss.protocol import ErrorPayload, encode_frame

pytestmark = pytest.mark.timeout(60)

FAST = ReconnectPolicy(base=0.01, cap=0.05)
"""Reconnect at once, in tests: waits below 50 ms."""


def app_server(**options: Any) -> tuple[Server, list[object]]:
    """A server whose handlers return every kind of reply and fail in every way; ``log`` records what
    its handlers saw, in order."""
    ss = Server(**options)
    log: list[object] = []

    add_call_handlers(ss, log)

    @ss.on("ack")
    async def ack(sock: Socket, data: str) -> None:
        log.append(("ack", data))

    @ss.on("note")
    async def note(sock: Socket, text: str) -> None:
        log.append(("note", text))
        await sock.emit("noted", text)

    @ss.on("kick")
    async def kick(sock: Socket, code: int) -> None:
        await sock.close(code)

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        await sock.join(room)
        log.append(("join", room))

    @ss.on("shout")
    async def shout(sock: Socket, text: str) -> None:
        for room in sock.rooms:
            await sock.roomcast(room, "shouted", text)

    @ss.on("whoami")
    async def whoami(sock: Socket, header: str) -> dict[str, str | None]:
        return {
            "ss_contract": sock.request.query_params.get("ss_contract"),
            "header": sock.request.headers.get(header),
        }

    return ss, log


# --- calls ---------------------------------------------------------------------------------------------


async def test_replies_of_every_payload_kind_decode_as_returns_says() -> None:
    ss, log = app_server()
    async with running(make_app(ss), ss) as url, connect(url + "/socket") as client:
        assert client.id == next(iter(ss.sockets))
        assert (client.max_calls, client.max_message_size, client.contract) == (
            64,
            ss.limits.max_message_size,
            ss.contract.fingerprint,
        )
        assert await client.call("add", AddQuery(1, 2), returns=AddResult) == AddResult(3)
        assert await client.call("upper", "tea", returns=str) == "TEA"
        assert await client.call("reverse", b"\x00\x01\xff", returns=bytes) == b"\xff\x01\x00"
        assert await client.call("profile", "ann", returns=Profile) == Profile(name="ann")
        assert await client.call("count", [1, 2, 3], returns=int) == 3
        assert await client.call("count", [], returns=dict[str, int] | int) == 0
        await client.call("ack", "x")  # -> None: an acknowledgement (anything else would not decode)
        assert await client.call("add", {"a": 2, "b": 2}, returns=dict[str, int]) == {"sum": 4}
    assert log == [("add", 1, 2), ("ack", "x"), ("add", 2, 2)]


async def test_errors_of_every_kind() -> None:
    ss, _ = app_server()
    async with running(make_app(ss), ss) as url, connect(url + "/socket") as client:
        with pytest.raises(CallError) as refused:
            await client.call("refuse", "tea")
        assert (refused.value.code, refused.value.message, refused.value.data) == (
            "not_found",
            "no room tea",
            {"room": "tea"},
        )
        with pytest.raises(CallError) as invalid:
            await client.call("add", {"a": 1}, returns=AddResult)
        assert invalid.value.code == "invalid_payload"
        assert "`b`" in invalid.value.message
        with pytest.raises(CallError) as crashed:
            await client.call("crash", b"")
        assert (crashed.value.code, crashed.value.message) == (
            "handler_error",
            "the handler for this event failed",
        )
        with pytest.raises(CallError) as unknown:
            await client.call("nobody", "x")
        assert unknown.value.code == "unknown_event"
        with pytest.raises(PayloadValidationError) as wrong_type:
            await client.call("upper", "tea", returns=int)  # a text reply is no int
        assert "the reply" in wrong_type.value.detail
        with pytest.raises(PayloadValidationError):
            await client.call("add", AddQuery(1, 2), returns=Answer)
        # Refused before anything is sent; the connection is fine afterwards.
        with pytest.raises(InvalidName):
            await client.call("__hello", "x")
        with pytest.raises(EncodeError):
            await client.emit("note", object())
        assert await client.call("upper", "still here", returns=str) == "STILL HERE"


async def test_a_call_without_a_reply_times_out_and_its_late_reply_is_dropped() -> None:
    ss, _ = app_server()
    async with running(make_app(ss), ss) as url, connect(url + "/socket") as client:
        with pytest.raises(TimeoutError, match="slow"):
            await client.call("slow", 0.5, returns=str, timeout=0.05)
        # The late "done" arrives meanwhile and belongs to no call: the next call gets its own reply.
        assert await client.call("upper", "next", returns=str) == "NEXT"
        assert await client.call("slow", 0, returns=str) == "done"


async def test_calls_and_emits_keep_the_sockets_order_both_ways() -> None:
    ss, log = app_server()
    noted: list[str] = []
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket")
        client.on("noted", noted.append, payload_type=str)
        async with client:
            # Started in this order, each sends before it waits: the server sees them in this order.
            results = await asyncio.gather(
                client.emit("note", "1"),
                client.call("add", AddQuery(2, 0), returns=AddResult),
                client.emit("note", "3"),
                client.call("ack", "4"),
                client.emit("note", "5"),
                client.call("add", AddQuery(6, 0), returns=AddResult),
            )
            await eventually(lambda: len(noted) == 3)
    assert list(results) == [None, AddResult(2), None, None, None, AddResult(6)]
    assert log == [("note", "1"), ("add", 2, 0), ("note", "3"), ("ack", "4"), ("note", "5"), ("add", 6, 0)]
    assert noted == ["1", "3", "5"]


async def test_waiting_calls_fail_at_once_when_the_connection_closes() -> None:
    ss, log = app_server()
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket", reconnect=False)
        async with client:
            pending = asyncio.create_task(client.call("slow", 30.0, returns=str, timeout=60.0))
            await eventually(lambda: ("slow", 30.0) in log)  # the server is working on it
            server_side = ss.get_socket(client.id or "")
            assert server_side is not None
            await server_side.close(CloseCode.NORMAL)
            await eventually(pending.done, within=10)  # long before the call's own timeout
            with pytest.raises(CallClosed):
                pending.result()
            await client.wait_closed()
            assert (client.closed, client.close_code) == (True, CloseCode.NORMAL)
            with pytest.raises(ClientClosed):
                await client.call("upper", "x", returns=str)
            with pytest.raises(ClientClosed):
                await client.emit("note", "x")


async def test_calls_past_max_calls_fail_at_once_without_being_sent() -> None:
    ss, log = app_server(max_calls=2)
    async with running(make_app(ss), ss) as url, connect(url + "/socket") as client:
        assert client.max_calls == 2
        waiting = [asyncio.create_task(client.call("slow", 0.3, returns=str)) for _ in range(2)]
        await eventually(lambda: log.count(("slow", 0.3)) == 1)  # both sent; the server runs the first
        third = client.call("add", AddQuery(1, 1), returns=AddResult)
        with pytest.raises(CallError) as too_many:
            third.send(None)  # fails on its first step: it never waits, and sends nothing
        assert too_many.value.code == "too_many_calls"
        assert await asyncio.gather(*waiting) == ["done", "done"]
        assert await client.call("add", AddQuery(1, 1), returns=AddResult) == AddResult(2)
    assert log == [("slow", 0.3), ("slow", 0.3), ("add", 1, 1)]  # the refused call never reached it


async def test_a_frame_over_the_servers_limit_is_refused_before_it_is_sent() -> None:
    ss, log = app_server(max_message_size=1024)
    async with running(make_app(ss), ss) as url, connect(url + "/socket") as client:
        assert client.max_message_size == 1024
        with pytest.raises(LimitExceeded):
            await client.emit("note", "x" * 2000)
        with pytest.raises(LimitExceeded):
            await client.call("note", "é" * 600)  # 1200 bytes in UTF-8
        await client.call("ack", "fits")
        assert client.connected
    assert log == [("ack", "fits")]


# --- the server's calls and events ----------------------------------------------------------------


def asking_server() -> tuple[Server, list[object]]:
    """A server whose ``ask`` handler calls the client back with the event it is given."""
    ss = Server()
    confirm = ss.event("confirm", Question, reply=Answer)
    results: list[object] = []

    @ss.on("ask")
    async def ask(sock: Socket, event: str) -> None:
        try:
            if event == "confirm":
                results.append(await confirm.call(sock, Question("tea?"), timeout=5.0))
            elif event == "listen":
                results.append(await sock.call(event, "ann", returns=None, timeout=5.0))
            else:
                results.append(await sock.call(event, "ann", returns=str, timeout=5.0))
        except Exception as exc:
            results.append(exc)

    return ss, results


async def test_the_servers_calls_are_answered_by_handle_and_failures_become_error_replies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ss, results = asking_server()
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket")

        async def confirm(q: Question) -> Answer:
            return Answer(q.text == "tea?")

        def greet(name: str) -> str:  # a plain function works too
            return f"hello {name}"

        def refuse(name: str) -> str:
            raise HandlerError("busy", "later", data=[1])

        def crash(name: str) -> str:
            raise RuntimeError("client secret")

        def lies(name: str) -> str:
            bad: Any = 42
            return bad  # type: ignore[no-any-return]

        client.handle("confirm", confirm)
        client.handle("greet", greet)
        client.handle("refuse", refuse)
        client.handle("crash", crash)
        client.handle("lies", lies)
        client.on("listen", lambda name: None, payload_type=str)  # on: calls get an acknowledgement
        async with client:
            for event in ["confirm", "greet", "refuse", "crash", "lies", "nobody", "listen"]:
                await client.emit("ask", event)
            await eventually(lambda: len(results) == 7)
    answer, greeting, refused, crashed, lied, unknown, acknowledged = results
    assert (answer, greeting) == (Answer(True), "hello ann")
    assert isinstance(refused, CallError)
    assert (refused.code, refused.message, refused.data) == ("busy", "later", [1])
    assert isinstance(crashed, CallError)
    assert (crashed.code, crashed.message) == ("handler_error", "the handler for this event failed")
    assert isinstance(lied, CallError)
    assert lied.code == "handler_error"
    assert isinstance(unknown, CallError)
    assert (unknown.code, unknown.message) == ("unknown_event", "no handler for event 'nobody'")
    assert acknowledged is None  # JSON null: what a handler `-> None` replies
    assert "client secret" not in repr(results)
    assert any("client secret" in str(r.exc_info) for r in caplog.records if r.exc_info)


async def test_a_reply_reaches_a_call_made_from_a_handler_that_is_still_running() -> None:
    ss, _ = app_server()
    sums: list[object] = []
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket")

        async def on_noted(text: str) -> None:
            # The reader takes this call's reply while this handler, which waits for it, runs.
            sums.append(await client.call("add", AddQuery(int(text), 1), returns=AddResult))

        client.on("noted", on_noted)
        async with client:
            for n in range(3):
                await client.emit("note", str(n))
            await eventually(lambda: len(sums) == 3)
    assert sums == [AddResult(1), AddResult(2), AddResult(3)]


async def test_handlers_decode_by_annotation_and_server_errors_reach_their_hook() -> None:
    ss = Server()
    chats = ss.event("chat", AddQuery)
    received: list[object] = []
    errors: list[ErrorPayload] = []

    @ss.on("go")
    async def go(sock: Socket, data: bytes) -> None:
        await chats.emit(sock, AddQuery(1, 2))
        await sock.emit("text", "tea")
        await sock.emit("raw", b"\x00\xff")
        await sock.emit("bad", {"a": "not an int"})
        await sock.emit("after", "still in order")

    @ss.on("typed")
    async def typed(sock: Socket, q: AddQuery) -> None:
        pass

    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket")

        async def on_chat(q: AddQuery) -> None:
            received.append(q)

        def on_raw(data: bytes) -> None:
            received.append(data)

        client.on("chat", on_chat)
        client.on("text", received.append, payload_type=str)
        client.on("raw", on_raw)
        client.on("bad", on_chat)  # its payload does not decode: logged, and the handler is not called
        client.on("after", received.append, payload_type=str)
        client.on_server_error(errors.append)
        async with client:
            await client.emit("go", b"")
            await client.emit("typed", {"a": "x"})
            await eventually(lambda: len(received) == 4 and errors)
    assert received == [AddQuery(1, 2), "tea", b"\x00\xff", "still in order"]
    assert [(e.event, e.code) for e in errors] == [("typed", "invalid_payload")]


def test_a_handler_that_cannot_be_called_is_refused_at_registration() -> None:
    client = connect("ws://127.0.0.1:1/socket")

    async def two(a: bytes, b: bytes) -> None: ...

    with pytest.raises(HandlerSignatureError):
        client.on("x", two)  # type: ignore[arg-type]
    with pytest.raises(InvalidName):
        client.on("__error", lambda data: None)
    with pytest.raises(HandlerSignatureError):
        client.handle("x", lambda data: None, payload_type=bytes, returns=socket.socket)


# --- connecting and reconnecting -------------------------------------------------------------------


@asynccontextmanager
async def serving(ss: Server, sock: socket.socket) -> AsyncIterator[None]:
    """Serve ``ss`` on ``sock`` until the block ends: a server that can stop and start again on its
    port (``running`` picks a new port each time)."""
    settings = {**uvicorn_settings(ss), "log_level": "warning", "log_config": None}
    uv = uvicorn.Server(uvicorn.Config(make_app(ss), **settings))
    task = asyncio.create_task(uv.serve(sockets=[sock]))
    try:
        await eventually(lambda: uv.started or task.done(), within=10)
        if task.done():
            task.result()
        yield
    finally:
        uv.should_exit = True
        await asyncio.wait_for(task, timeout=15)
        sock.close()


async def test_it_reconnects_after_a_restart_and_sends_the_emits_held_meanwhile_in_order() -> None:
    first_sock = free_socket()
    port = first_sock.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/socket"
    connected: list[str | None] = []
    disconnected: list[int] = []
    client = connect(url, reconnect=FAST)

    @client.on_connected
    async def rejoined() -> None:
        connected.append(client.id)
        await client.emit("note", "hook")  # goes before the held emits

    client.on_disconnected(disconnected.append)
    first, _ = app_server()
    async with serving(first, first_sock):
        await client.start()
        await client.join("tea")
        first_id = client.id
    # The server is gone: emits are held, calls fail at once.
    await eventually(lambda: not client.connected)
    for n in range(5):
        await client.emit("note", str(n))
    assert client.queued == 5
    with pytest.raises(CallClosed):
        client.call("upper", "x", returns=str).send(None)  # at once: a call is never held
    second, log = app_server()
    try:
        async with serving(second, free_socket(port)):
            await eventually(lambda: client.connected and client.queued == 0, within=10)
            await eventually(lambda: len(log) == 7)
            second_id = client.id
            assert second_id not in (None, first_id)
            shouted: list[str] = []
            client.on("shouted", shouted.append, payload_type=str)
            await client.emit("shout", "back in tea")
            await eventually(lambda: shouted == ["back in tea"])
            await client.close()
    finally:
        await client.close()
    # The room first (joined again by the client), then the hook's emit, then the held ones in order.
    assert log == [("join", "tea"), ("note", "hook"), *(("note", str(n)) for n in range(5))]
    assert connected == [first_id, second_id]
    assert disconnected[0] in (CloseCode.GOING_AWAY, CloseCode.SERVICE_RESTART)
    assert disconnected[1:] == [CloseCode.NORMAL]  # close() ends the second connection


@pytest.mark.parametrize("code", [CloseCode.SERVICE_RESTART, CloseCode.SLOW_CONSUMER, 1011, 1013])
async def test_it_reconnects_after_codes_that_say_come_back(code: int) -> None:
    ss, _ = app_server()
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket", reconnect=FAST)
        codes: list[int] = []
        client.on_disconnected(codes.append)
        async with client:
            first_id = client.id
            await client.emit("kick", code)
            await eventually(lambda: client.connected and client.id != first_id)
            assert codes == [code]
            assert client.close_code == code
            assert await client.call("upper", "again", returns=str) == "AGAIN"


@pytest.mark.parametrize("code", [CloseCode.NORMAL, CloseCode.POLICY_VIOLATION, 4000, 4999, 3000])
async def test_it_does_not_reconnect_after_codes_that_say_stay_away(code: int) -> None:
    ss, _ = app_server()
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket", reconnect=FAST)
        async with client:
            await client.emit("note", "held? no: sent")
            await client.emit("kick", code)
            await client.wait_closed()
            assert (client.closed, client.close_code) == (True, code)
            assert len(ss.sockets) == 0
            with pytest.raises(ClientClosed):
                await client.emit("note", "after")


async def test_an_application_code_listed_in_the_policy_reconnects() -> None:
    ss, _ = app_server()
    async with running(make_app(ss), ss) as url:
        policy = ReconnectPolicy(base=0.01, cap=0.05, reconnect_codes=frozenset({4000}))
        async with connect(url + "/socket", reconnect=policy) as client:
            first_id = client.id
            await client.emit("kick", 4000)
            await eventually(lambda: client.connected and client.id != first_id)


async def test_a_refused_contract_asks_for_a_reload_and_does_not_reconnect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ss, _ = app_server(contract_check="refuse")
    reloads: list[bool] = []
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket", contract="0" * 32, reconnect=FAST)
        client.on_reload_needed(lambda: reloads.append(True))
        async with client:
            await client.wait_closed()
            assert client.contract == ss.contract.fingerprint  # __hello came first
            assert (client.close_code, reloads) == (CloseCode.CONTRACT_MISMATCH, [True])
    assert any("4010" in r.getMessage() for r in caplog.records)


async def test_closing_just_after_the_server_refused_the_contract_still_reports_4010() -> None:
    ss, _ = app_server(contract_check="refuse")
    async with running(make_app(ss), ss) as url:
        for attempt in range(1, 6):  # the server's close and the client's race differently each time
            client = connect(url + "/socket", contract="0" * 32, reconnect=FAST)
            hooks: list[object] = []
            client.on_reload_needed(functools.partial(hooks.append, "reload"))
            client.on_disconnected(hooks.append)
            async with client:
                with pytest.raises(CallClosed):  # the server sends __hello, closes, and reads nothing
                    await client.call("upper", "x", returns=str)
            assert (client.close_code, hooks) == (CloseCode.CONTRACT_MISMATCH, [4010, "reload"]), attempt


async def test_a_message_over_the_clients_own_limit_closes_with_1009_and_it_reconnects() -> None:
    ss, _ = app_server()
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket", max_message_size=200, reconnect=FAST)
        codes: list[int] = []
        client.on_disconnected(codes.append)
        async with client:
            first_id = client.id
            await client.emit("note", "x" * 300)  # noted: echoed back, over the client's limit
            await eventually(lambda: client.connected and client.id != first_id)
            assert (codes, client.close_code) == ([CloseCode.MESSAGE_TOO_BIG], CloseCode.MESSAGE_TOO_BIG)


async def test_a_leave_the_server_refuses_keeps_the_room_for_the_next_connection() -> None:
    ss, _ = app_server()

    @ss.on("leave")
    async def leave(sock: Socket, room: str) -> None:
        if room == "stay":
            raise HandlerError("not_now", "stay a little")
        await sock.leave(room)

    async with running(make_app(ss), ss) as url, connect(url + "/socket") as client:
        await client.join("stay")
        await client.join("go")
        with pytest.raises(CallError, match="not_now"):
            await client.leave("stay")
        await client.leave("go")
        assert client.rooms == ("stay",)


async def test_the_contract_fingerprint_and_headers_reach_the_server() -> None:
    ss, _ = app_server()
    async with running(make_app(ss), ss) as url:
        target = url + "/socket?room=tea&ss_contract=old"
        async with connect(target, contract="f" * 32, headers={"X-Token": "t1"}) as client:
            seen = await client.call("whoami", "x-token", returns=dict[str, str])
            assert seen == {"ss_contract": "f" * 32, "header": "t1"}
            offered = await client.call("whoami", "sec-websocket-protocol", returns=dict[str, str])
            assert offered["header"] == "sac-sock"
        async with connect(url + "/socket", subprotocols=["chat"]) as plain:
            assert await plain.call("whoami", "x-token", returns=dict[str, str | None]) == {
                "ss_contract": None,
                "header": None,
            }
            offered = await plain.call("whoami", "sec-websocket-protocol", returns=dict[str, str | None])
            assert offered["header"] == "sac-sock, chat"


async def test_emits_before_the_first_connection_go_after_the_connected_hook_in_order() -> None:
    ss, log = app_server()
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket", max_queue=3)
        client.on_connected(lambda: client.emit("note", "hook"))
        for n in range(4):
            await client.emit("note", str(n))  # 4 into a queue of 3: the oldest is dropped
        assert (client.queued, client.dropped, client.state) == (3, 1, "idle")
        with pytest.raises(CallClosed):
            client.call("ack", "not connected yet").send(None)  # at once
        async with client:
            assert client.connected
            await eventually(lambda: len(log) == 4)
    assert log == [("note", "hook"), ("note", "1"), ("note", "2"), ("note", "3")]


async def test_the_first_connection_fails_loudly_and_later_ones_give_up_after_max_attempts() -> None:
    unused = free_socket()
    port = unused.getsockname()[1]
    unused.close()  # nothing listens there now
    with pytest.raises(ConnectionRefusedError):
        await connect(f"ws://127.0.0.1:{port}/socket").start()

    ss, _ = app_server()
    sock = free_socket()
    policy = ReconnectPolicy(base=0.01, cap=0.02, max_attempts=3)
    client = connect(f"ws://127.0.0.1:{sock.getsockname()[1]}/socket", reconnect=policy)
    async with serving(ss, sock):
        await client.start()
        await client.emit("note", "lost")
    await client.wait_closed()  # three refused attempts, then it gave up
    assert client.closed
    with pytest.raises(ClientClosed):
        await client.emit("note", "x")


async def test_close_from_a_handler_ends_the_client_without_waiting_for_itself() -> None:
    ss, _ = app_server()
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket")

        async def on_noted(text: str) -> None:
            await client.close()

        client.on("noted", on_noted)
        async with client:
            await client.emit("note", "bye")
            await asyncio.wait_for(client.wait_closed(), 10)
            assert client.close_code == CloseCode.NORMAL
        await eventually(lambda: len(ss.sockets) == 0)


async def test_a_handler_that_raises_is_logged_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ss, _ = app_server()
    seen: list[str] = []
    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket")

        def on_noted(text: str) -> None:
            seen.append(text)
            if text == "boom":
                raise RuntimeError("handler bug")

        client.on("noted", on_noted)
        async with client:
            for text in ["a", "boom", "b"]:
                await client.emit("note", text)
            await eventually(lambda: len(seen) == 3)
            assert client.connected
    assert seen == ["a", "boom", "b"]
    assert any(r.levelno == logging.ERROR and "noted" in r.getMessage() for r in caplog.records)


# --- sans I/O: frames and the reconnect rules -------------------------------------------------------


def test_client_frames_are_the_protocols_own_encoding_without_the_type_letter() -> None:
    assert client_frame(encode_frame("add", {"a": 1})) == 'add\x02{"a":1}'
    assert client_frame(encode_frame("add", {"a": 1}), "c7") == 'add\x01c7\x02{"a":1}'
    assert client_frame(encode_frame("up", "tea"), "r12") == "up\x01r12\x02tea"
    assert client_frame(encode_frame("rev", b"\x01\x02"), "r3") == b"rev\x01r3\x02\x01\x02"
    assert client_frame(encode_frame("é", b"")) == "é".encode() + b"\x02"


def test_server_frames_split_as_the_js_client_splits_them() -> None:
    frame = parse_server_frame('add\x01Jr7\x02{"sum":3}')
    assert (frame.event, frame.letter, frame.marker, frame.payload) == ("add", "J", ("r", 7), b'{"sum":3}')
    call = parse_server_frame(b"sign\x01Bc2\x02\x01\x02")
    assert (call.event, call.letter, call.marker, call.payload) == ("sign", "B", ("c", 2), b"\x01\x02")
    event = parse_server_frame("chat\x01S\x02a\x01b\x02c")
    assert (event.marker, event.payload) == (None, b"a\x01b\x02c")


def test_the_close_code_decides_whether_to_reconnect() -> None:
    policy = ReconnectPolicy()
    back = [1001, 1006, 1009, 1011, 1012, 1013, 1002, 1007, 4008]
    away = [1000, 1008, 3000, 4000, 4010, 4999]
    assert [code for code in back + away if should_reconnect(code, policy)] == back
    listed = ReconnectPolicy(reconnect_codes=frozenset({4000, 1000, 4010}))
    assert should_reconnect(4000, listed)
    assert should_reconnect(1000, listed)
    assert not should_reconnect(4010, listed)  # the server would refuse this client every time


def test_the_waits_are_jittered_below_the_backoff_and_start_over_after_a_stable_connection() -> None:
    draws = iter([0.5, 0.5, 0.5, 0.5, 0.0, 0.999, 0.5, 0.5])
    retry = Retry(ReconnectPolicy(base=1.0, cap=4.0, reset_after=5.0, random=lambda: next(draws)))
    assert [retry.next_delay() for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]  # ceilings 1, 2, 4, 4 (cap)
    retry.opened(100.0)
    retry.closed(104.0)  # open 4 s: not stable, the backoff goes on
    assert retry.next_delay() == 0.0
    assert retry.next_delay() == pytest.approx(3.996)
    retry.opened(200.0)
    retry.closed(205.0)  # open 5 s: it starts over
    assert [retry.next_delay(), retry.next_delay()] == [0.5, 1.0]


def test_max_attempts_counts_failed_attempts_in_a_row() -> None:
    retry = Retry(ReconnectPolicy(max_attempts=2))
    assert retry.attempt_failed()
    retry.opened(0.0)  # a connection in between starts the count over
    assert retry.attempt_failed()
    assert not retry.attempt_failed()


def test_options_are_checked_when_the_client_is_made() -> None:
    with pytest.raises(TypeError, match="reconect"):
        Client("ws://x/socket", reconect=False)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="open_timeout"):
        connect("ws://x/socket", open_timeout=0)
    with pytest.raises(ValueError, match="base"):
        ReconnectPolicy(base=0)
