"""Calls on the wire, against a real server: a handler's return value is its reply; errors are typed
error replies, never a silent timeout; the server calls clients and waits for their replies.

The client's calls are written by hand, since their frames are the point (docs/protocol.md section 5):
``<event> 0x01 c<id> 0x02 <payload>`` is a call, the answer ``<event> 0x01 <letter>r<id> 0x02 ...``
or ``<event> 0x01 Je<id> 0x02 {"code", "message", "data"}``. The server's calls are answered by the
Python client (typed_ss.client, whose frames tests/test_client.py checks), since what they test is the
server's side: its typed replies, timeouts and failures.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tests.apps import make_app
from tests.call_app import Answer, Question, add_call_handlers
from tests.support import Client, connect_client, eventually, running
from typed_ss import (
    CallClosed,
    CallError,
    HandlerError,
    PayloadValidationError,
    Server,
    Socket,
)
from typed_ss.client import connect

pytestmark = pytest.mark.timeout(60)


def call_server() -> Server:
    ss = Server()
    add_call_handlers(ss)

    @ss.on("ack")
    async def ack(sock: Socket, data: str) -> None:
        pass

    return ss


async def call(client: Client, event: str, call_id: int, payload: str | bytes) -> tuple[str, object]:
    """Send a call and read its answer: ``(flags, value)``, the value JSON-decoded for J frames."""
    if isinstance(payload, bytes):
        await client.ws.send(event.encode() + b"\x01c" + str(call_id).encode() + b"\x02" + payload)
    else:
        await client.ws.send(f"{event}\x01c{call_id}\x02{payload}")
    frame = await client.recv()
    assert frame.event == event, frame
    value: object = json.loads(frame.payload) if frame.letter.startswith("J") else frame.payload
    return frame.letter, value


async def test_a_handlers_return_value_is_its_reply_in_every_payload_kind() -> None:
    ss = call_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        assert await call(client, "add", 1, '{"a": 1, "b": 2}') == ("Jr1", {"sum": 3})
        assert await call(client, "upper", 2, "tea") == ("Sr2", "TEA")
        assert await call(client, "reverse", 3, b"\x00\x01\xff") == ("Br3", b"\xff\x01\x00")
        assert await call(client, "profile", 4, "ann") == ("Jr4", {"name": "ann"})
        assert await call(client, "count", 5, "[1, 2, 3]") == ("Jr5", 3)
        assert await call(client, "ack", 6, "x") == ("Jr6", None)  # -> None: an empty acknowledgement
        # The same events without the call flag: nothing comes back, as for the original client.
        await client.send("add", '{"a": 1, "b": 2}')
        await client.send("ack", "x")
        await client.nothing_within(0.2)


async def test_errors_reach_the_caller_as_typed_error_replies(caplog: pytest.LogCaptureFixture) -> None:
    ss = call_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        assert await call(client, "refuse", 1, "tea") == (
            "Je1",
            {"code": "not_found", "message": "no room tea", "data": {"room": "tea"}},
        )
        flags, invalid = await call(client, "add", 2, '{"a": 1}')
        assert flags == "Je2"
        assert isinstance(invalid, dict)
        assert invalid["code"] == "invalid_payload"
        assert "`b`" in invalid["message"]
        assert await call(client, "crash", 3, b"") == (
            "Je3",
            {"code": "handler_error", "message": "the handler for this event failed", "data": None},
        )
        assert await call(client, "nobody", 4, "x") == (
            "Je4",
            {"code": "unknown_event", "message": "no handler for event 'nobody'", "data": None},
        )
        # A return value its annotation does not allow is the handler's bug: an error for the caller,
        # an error line for the developer.
        assert await call(client, "lies", 5, b"") == (
            "Je5",
            {"code": "handler_error", "message": "the handler for this event failed", "data": None},
        )
        # HandlerError without a call: an __error event with the application's code.
        await client.send("refuse", "kitchen")
        assert (await client.expect("__error")).json() == {
            "event": "refuse",
            "code": "not_found",
            "detail": "no room kitchen",
        }
    assert "secret internals" not in json.dumps([r.getMessage() for r in caplog.records if r.levelno < 40])
    assert any("does not allow" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


@pytest.mark.parametrize("flags", ["c0", "c01", "cX", "c", "c2147483648", "r", "e-1"])
async def test_a_malformed_call_marker_is_a_malformed_frame(flags: str) -> None:
    ss = call_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        await client.ws.send(f"add\x01{flags}\x02" + '{"a": 1, "b": 2}')
        assert await call(client, "add", 7, '{"a": 2, "b": 2}') == ("Jr7", {"sum": 4})


async def test_calls_and_events_keep_the_sockets_order_and_a_slow_call_blocks_no_other_socket() -> None:
    ss = call_server()

    @ss.on("note")
    async def note(sock: Socket, text: str) -> None:
        await sock.emit("noted", text)

    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as slow, connect_client(url) as other:
            await slow.ws.send("slow\x01c1\x021.0")
            await slow.send("note", "after the slow call")
            for i in range(5):  # meanwhile another socket is served
                assert await call(other, "upper", i + 1, f"x{i}") == (f"Sr{i + 1}", f"X{i}")
            first = await slow.recv()
            assert (first.event, first.letter, first.payload) == ("slow", "Sr1", "done")
            assert (await slow.expect("noted")).payload == "after the slow call"


def asking_server() -> tuple[Server, list[object]]:
    ss = Server()
    results: list[object] = []
    confirm = ss.event("confirm", Question, reply=Answer)

    background: set[asyncio.Task[None]] = set()

    @ss.on("ask_me")
    async def ask_me(sock: Socket, how: str) -> None:
        # In the handler itself: the client's reply reaches the call although the handler is busy.
        await ask(sock, how)

    @ss.on("ask_me_later")
    async def ask_me_later(sock: Socket, how: str) -> None:
        # From another task, as an HTTP route or another socket's handler would call.
        task = asyncio.create_task(ask(sock, how))
        background.add(task)
        task.add_done_callback(background.discard)

    async def ask(sock: Socket, how: str) -> None:
        try:
            if how == "typed":
                results.append(await confirm.call(sock, Question("tea?"), timeout=5.0))
            elif how == "untyped":
                results.append(await sock.call("confirm", Question("coffee?"), returns=Answer, timeout=5.0))
            elif how == "short":
                results.append(await confirm.call(sock, Question("hurry?"), timeout=0.2))
            else:
                results.append(await sock.call("greet", "who?", returns=str, timeout=5.0))
        except Exception as exc:
            results.append(exc)

    return ss, results


async def test_the_server_calls_a_client_and_gets_a_typed_reply() -> None:
    ss, results = asking_server()
    asked: list[Question] = []

    async def confirm(question: Question) -> Answer:
        asked.append(question)
        return Answer(question.text == "tea?")

    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket")
        client.handle("confirm", confirm)
        client.handle("greet", lambda who: "ann", payload_type=str, returns=str)
        async with client:
            for how in ("typed", "untyped", "text"):
                await client.emit("ask_me", how)
            await eventually(lambda: len(results) == 3)
    assert results == [Answer(True), Answer(False), "ann"]
    assert asked == [Question("tea?"), Question("coffee?")]


async def test_a_call_fails_on_a_bad_reply_an_error_reply_no_reply_and_a_closed_socket() -> None:
    ss, results = asking_server()
    asked: list[str] = []
    late = asyncio.Event()

    async def confirm(question: Question) -> dict[str, str]:
        asked.append(question.text)
        if len(asked) == 1:
            return {"yes": "maybe"}  # no Answer: the server's call fails to decode it
        if len(asked) == 2:
            raise HandlerError("busy", "later", data=[1])
        if len(asked) == 3:
            await late.wait()  # answered only after the server's call timed out: dropped
            return {"yes": "late"}
        await asyncio.Event().wait()  # never answered: the client leaves first
        raise AssertionError("unreachable")

    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket")
        client.handle("confirm", confirm)
        async with client:
            await client.emit("ask_me", "typed")
            await eventually(lambda: len(results) == 1)
            await client.emit("ask_me", "typed")
            await eventually(lambda: len(results) == 2)
            await client.emit("ask_me", "short")
            await eventually(lambda: len(results) == 3)
            late.set()
            await client.emit("ask_me_later", "typed")
            await eventually(lambda: len(asked) == 4)  # the server's call reached the client
        await eventually(lambda: len(results) == 4)  # failed as soon as the connection closed
    bad_reply, error_reply, timed_out, closed = results
    assert isinstance(bad_reply, PayloadValidationError)
    assert "reply" in bad_reply.detail
    assert isinstance(error_reply, CallError)
    assert (error_reply.code, error_reply.message, error_reply.data) == ("busy", "later", [1])
    assert isinstance(timed_out, TimeoutError)
    assert isinstance(closed, CallClosed)


async def test_calls_past_max_calls_fail_at_once() -> None:
    ss = Server(max_calls=2)
    outcomes: list[object] = []
    background: set[asyncio.Task[None]] = set()

    @ss.on("flood")
    async def flood(sock: Socket, data: bytes) -> None:
        async def one() -> None:
            try:
                outcomes.append(await sock.call("ping", "?", returns=str, timeout=5.0))
            except CallError as exc:
                outcomes.append(exc.code)

        for _ in range(3):
            task = asyncio.create_task(one())
            background.add(task)
            task.add_done_callback(background.discard)
            await asyncio.sleep(0)  # each call is made before the next

    answer = asyncio.Event()

    async def ping(question: str) -> str:
        await answer.wait()  # held until the third call has failed
        return "pong"

    async with running(make_app(ss), ss) as url:
        client = connect(url + "/socket")
        client.handle("ping", ping)
        async with client:
            assert client.max_calls == 2
            await client.emit("flood", b"")
            await eventually(lambda: outcomes == ["too_many_calls"])
            answer.set()
            await eventually(lambda: len(outcomes) == 3)
    assert outcomes == ["too_many_calls", "pong", "pong"]


async def test_a_clients_calls_past_max_calls_are_refused_not_queued() -> None:
    ss = Server(max_calls=2)
    gate = asyncio.Event()

    @ss.on("wait")
    async def wait(sock: Socket, name: str) -> str:
        await gate.wait()
        return name

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        # The first call is handled (and waits), the second waits its turn, the third is one too many.
        for call_id in (1, 2, 3):
            await client.ws.send(f"wait\x01c{call_id}\x02n{call_id}")
        refused = await client.recv()
        assert (refused.event, refused.letter) == ("wait", "Je3")
        assert json.loads(refused.payload)["code"] == "too_many_calls"
        gate.set()
        answers = [await client.recv() for _ in range(2)]
        assert [(a.letter, a.payload) for a in answers] == [("Sr1", "n1"), ("Sr2", "n2")]
        # Answered calls no longer count: two more fit.
        gate.clear()
        for call_id in (4, 5):
            await client.ws.send(f"wait\x01c{call_id}\x02n{call_id}")
        await client.ws.send("wait\x01c6\x02n6")
        assert (await client.recv()).letter == "Je6"
        gate.set()
        assert [(await client.recv()).letter for _ in range(2)] == ["Sr4", "Sr5"]
