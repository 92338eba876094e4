"""Type tests for the Python client, typed_ss.client (checked by mypy, never run)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import msgspec

from typed_ss import HandlerError
from typed_ss.client import Client, Listed, PresenceEvent, ReconnectPolicy, State, connect
from typed_ss.protocol import ErrorPayload


class AddQuery(msgspec.Struct):
    a: int
    b: int


class AddResult(msgspec.Struct):
    sum: int


class Question(msgspec.Struct):
    text: str


class Answer(msgspec.Struct):
    yes: bool


async def on_chat(msg: AddQuery) -> None: ...


async def on_confirm(q: Question) -> Answer:
    if not q.text:
        raise HandlerError("empty", "ask something")
    return Answer(True)


async def uses() -> None:
    client = connect(
        "ws://127.0.0.1:8000/socket",
        headers={"Authorization": "Bearer t"},
        subprotocols=["chat"],
        reconnect=ReconnectPolicy(base=0.5, cap=10.0, max_attempts=20),
        open_timeout=5.0,
        max_message_size=None,
        max_queue=100,
        read_ahead=64,
    )
    assert_type(client, Client)
    client.on("chat", on_chat)
    client.on("text", print, payload_type=str)
    client.handle("confirm", on_confirm)
    client.handle("greet", lambda name: f"hi {name}", payload_type=str, returns=str)
    async with client as entered:
        assert_type(entered, Client)
        assert_type(await client.call("add", AddQuery(1, 2), returns=AddResult, timeout=5.0), AddResult)
        assert_type(await client.call("upper", "tea", returns=str), str)
        assert_type(await client.call("ack", "x"), None)
        assert_type(await client.call("count", [1], returns=list[int]), list[int])
        assert_type(await client.call("either", 1, returns=int | str), Any)  # no class: not inferred
        assert_type(await client.emit("chat", AddQuery(1, 2)), None)
        await client.join("tea")
        assert_type(client.id, str | None)
        assert_type(client.max_calls, int)
        assert_type(client.max_message_size, int | None)
        assert_type(client.contract, str | None)
        assert_type(client.state, State)
        assert_type(client.rooms, tuple[str, ...])
        assert_type(await client.members("chat:1", Question), Listed[Question | None])
        assert_type(await client.members("chat:1", Question, timeout=1.0), Listed[Question | None])
        assert_type(await client.members("chat:1"), Listed[Any])
        assert_type(await client.members("chat:1", int | str), Listed[Any])  # no class: not inferred

    @client.on_connected
    async def rejoin() -> None: ...

    @client.on_disconnected
    def gone(code: int) -> None: ...

    def on_error(error: ErrorPayload) -> None: ...

    client.on_server_error(on_error)

    @client.on_presence
    def seen(event: PresenceEvent[Question]) -> None:
        assert_type(event.presence, Question | None)

    client.on_presence(lambda event: print(event.room, event.change, event.socket))
    client.on_presence(print, presence=Question)
    assert_type(client.on_reload_needed(rejoin), Callable[[], Coroutine[Any, Any, None]])

    # Wrong uses mypy catches.
    connect("ws://x/socket", reconect=False)  # type: ignore[call-arg]
    connect("ws://x/socket", max_queue="10")  # type: ignore[arg-type]
    await client.call("add", AddQuery(1, 2), returns=AddResult, timeout="5")  # type: ignore[call-overload]
    client.on_disconnected(lambda: None)  # type: ignore[type-var]
    client.on_connected(gone)  # type: ignore[type-var]
    client.on_server_error(gone)  # type: ignore[type-var]
    client.on_presence(gone)  # type: ignore[type-var]
    await client.members(1)  # type: ignore[call-overload]
