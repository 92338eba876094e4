"""The Python client's presence API (``on_presence``, ``members``) against real servers with presence
on (tests/codegen/presence_app.py: ``chat:`` rooms tracked, listed by their members and by ``admin``),
and against one without."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import msgspec
import pytest

from tests.apps import make_app
from tests.codegen.presence_app import Card, User, presence_server
from tests.codegen.presence_app import make_app as make_presence_app
from tests.support import eventually, running
from typed_ss import (
    CallError,
    HandlerSignatureError,
    InvalidName,
    PayloadValidationError,
    Presence,
    Server,
    Socket,
)
from typed_ss.client import Client, Listed, ListedMember, PresenceEvent, connect

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def serving(ss: Server[Any] | None = None) -> AsyncIterator[str]:
    """The socket URL of a running presence server (a fresh tests/codegen/presence_app.py one by default)."""
    server = presence_server() if ss is None else ss
    async with running(make_presence_app(server), server) as url:
        yield url + "/socket"


def user(url: str, name: str) -> Client:
    return connect(f"{url}?user={name}", reconnect=False)


async def test_the_hook_gets_each_join_and_leave_typed_by_its_annotation() -> None:
    seen: list[PresenceEvent[Card]] = []
    async with serving() as url, user(url, "ann") as ann, user(url, "bob") as bob:

        @ann.on_presence
        def changed(event: PresenceEvent[Card]) -> None:
            seen.append(event)

        assert changed.__name__ == "changed"  # returned, so it decorates
        await ann.join("chat:tea")
        # The joiner hears of itself first: the join returns once the room's members know of it.
        await eventually(lambda: len(seen) == 1)
        await bob.join("chat:tea")
        await eventually(lambda: len(seen) == 2)
        await bob.leave("chat:tea")
        await eventually(lambda: len(seen) == 3)
        await bob.join("lobby")  # not tracked: no event
        await bob.join("chat:tea")
        await eventually(lambda: len(seen) == 4)
        assert [(e.change, e.room, e.socket) for e in seen] == [
            ("joined", "chat:tea", ann.id),
            ("joined", "chat:tea", bob.id),
            ("left", "chat:tea", bob.id),
            ("joined", "chat:tea", bob.id),
        ]
    assert [e.presence for e in seen[:4]] == [Card(name="ann"), *[Card(name="bob")] * 3]
    assert all(isinstance(e, PresenceEvent) for e in seen)


async def test_an_unannotated_hook_gets_json_and_presence_decodes_as_told() -> None:
    raw: list[Any] = []
    typed: list[Any] = []
    async with serving() as url, user(url, "ann") as ann, user(url, "bob") as bob:
        ann.on_presence(raw.append)  # a builtin, no annotation: the payload as JSON decodes it
        await ann.join("chat:tea")
        await eventually(lambda: len(raw) == 1)
        bob.on_presence(typed.append, presence=Card)  # the payload type given, not annotated
        await bob.join("chat:tea")
        await eventually(lambda: len(raw) == 2 and len(typed) == 1)
        # A later hook replaces the first.
        replaced: list[PresenceEvent[dict[str, str]]] = []

        async def async_hook(event: PresenceEvent[dict[str, str]]) -> None:
            replaced.append(event)

        ann.on_presence(async_hook)
        await bob.leave("chat:tea")
        await eventually(lambda: len(replaced) == 1)
    assert (raw[0].change, raw[0].room) == ("joined", "chat:tea")
    assert raw[0].presence == {"name": "ann", "status": "online"}
    assert raw[1].presence == {"name": "bob", "status": "online"}
    assert typed[0].presence == Card(name="bob")
    assert (replaced[0].change, replaced[0].presence) == ("left", {"name": "bob", "status": "online"})
    assert len(raw) == 2


async def test_members_lists_the_room_typed_and_refuses_who_the_server_refuses() -> None:
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(serving())
        ann = await stack.enter_async_context(user(url, "ann"))
        bob = await stack.enter_async_context(user(url, "bob"))
        carol = await stack.enter_async_context(user(url, "carol"))
        admin = await stack.enter_async_context(user(url, "admin"))
        await ann.join("chat:tea")
        await bob.join("chat:tea")
        await bob.call("away", None)

        listed = await ann.members("chat:tea", Card)
        assert isinstance(listed, Listed)
        assert (listed.missing, listed.truncated) == ([], False)
        assert sorted((m.socket, m.presence) for m in listed.members) == sorted(
            [(ann.id, Card(name="ann")), (bob.id, Card(name="bob", status="away"))]
        )
        assert all(isinstance(m, ListedMember) for m in listed.members)
        (instance,) = {m.instance for m in listed.members}  # one instance: this server
        assert instance
        # Without a type: each payload as JSON decodes it.
        untyped = await bob.members("chat:tea", timeout=2.0)
        assert sorted(m.presence["name"] for m in untyped.members) == ["ann", "bob"]

        # Not a member: the server's default says no (the application's visible() here says the same).
        with pytest.raises(CallError) as refused:
            await carol.members("chat:tea", Card)
        assert refused.value.code == "forbidden"
        # The application lets admin list any room, even one it is not in.
        by_admin = await admin.members("chat:tea", Card)
        assert sorted(msgspec.json.encode(m.presence) for m in by_admin.members) == [
            b'{"name":"ann","status":"online"}',
            b'{"name":"bob","status":"away"}',
        ]
        # An untracked room is listed too, to its members.
        await carol.join("lobby")
        assert [m.socket for m in (await carol.members("lobby", Card)).members] == [carol.id]
        assert carol.connected  # a refused call costs nothing else


async def test_members_of_a_server_without_presence_is_an_unknown_event() -> None:
    ss = Server()

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        await sock.join(room)

    async with running(make_app(ss), ss) as url, connect(url + "/socket", reconnect=False) as client:
        await client.join("chat:tea")
        with pytest.raises(CallError) as refused:
            await client.members("chat:tea", Card)
        assert refused.value.code == "unknown_event"
        assert client.connected


def payloadless_server() -> tuple[Server[User], Presence[Card]]:
    """No ``of``: a member has no payload until the application sets one (``card``)."""
    presence = Presence(Card, tracked=["chat:tea"])
    ss: Server[User] = Server(presence=presence)

    @ss.on("join")
    async def join(sock: Socket[User], room: str) -> None:
        await sock.join(room)

    @ss.on("card")
    async def card(sock: Socket[User], name: str) -> None:
        presence.set(sock, Card(name=name))

    return ss, presence


async def test_events_of_a_member_without_a_payload_carry_none() -> None:
    seen: list[PresenceEvent[Card]] = []
    ss, _ = payloadless_server()
    async with serving(ss) as url, user(url, "x") as client:
        client.on_presence(seen.append, presence=Card)
        await client.join("chat:tea")
        await eventually(lambda: seen)
    assert (seen[0].change, seen[0].presence) == ("joined", None)


async def test_members_without_a_payload_have_none() -> None:
    ss, _ = payloadless_server()
    async with serving(ss) as url, user(url, "x") as client:
        await client.join("chat:tea")
        assert [m.presence for m in (await client.members("chat:tea", Card)).members] == [None]
        await client.call("card", "x")
        assert [m.presence for m in (await client.members("chat:tea", Card)).members] == [Card(name="x")]


async def test_events_without_a_hook_are_dropped_and_the_client_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serving() as url, user(url, "ann") as ann:
        with caplog.at_level(logging.DEBUG, logger="typed_ss.client"):
            await ann.join("chat:tea")  # its own `joined`, with no hook
            listed = await ann.members("chat:tea")
        assert [m.socket for m in listed.members] == [ann.id]
        await eventually(lambda: "no on_presence hook" in caplog.text)


async def test_an_event_that_does_not_decode_as_the_hook_says_is_logged_and_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[object] = []
    async with serving() as url, user(url, "ann") as ann:
        ann.on_presence(seen.append, presence=int)  # the server's payload is a Card
        with caplog.at_level(logging.WARNING, logger="typed_ss.client"):
            await ann.join("chat:tea")
            await eventually(lambda: "__presence" in caplog.text)
        with pytest.raises(PayloadValidationError, match="reply"):
            await ann.members("chat:tea", int)
        assert seen == []
        assert ann.connected


class Other(msgspec.Struct):
    n: int


def test_hooks_and_rooms_the_client_refuses_before_anything_is_sent() -> None:
    client = connect("ws://127.0.0.1:9/socket", reconnect=False)

    def two(a: PresenceEvent[Card], b: int) -> None: ...

    def wrong(event: Other) -> None: ...

    def unresolved(event: PresenceEvent[Missing]) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    hooks: list[tuple[Any, str]] = [
        (two, "exactly one positional parameter"),
        (wrong, "must take a PresenceEvent"),
        (unresolved, "cannot resolve"),
    ]
    for hook, message in hooks:
        with pytest.raises(HandlerSignatureError, match=message):
            client.on_presence(hook)
    with pytest.raises(HandlerSignatureError):
        client.on_presence(print, presence=object)  # no JSON form
    client.on_presence(unresolved, presence=Card)  # explicit: the annotation is not read


@pytest.mark.parametrize("room", ["", "__s:abc", "x" * 1000])
async def test_members_refuses_a_bad_room_name_before_sending(room: str) -> None:
    async with serving() as url, user(url, "ann") as ann:
        with pytest.raises(InvalidName):
            await ann.members(room)
        assert ann.connected


def test_the_presence_types_are_the_servers_wire_format() -> None:
    event = msgspec.json.decode(
        b'{"room":"r","change":"left","socket":"s","presence":{"name":"a","status":"away"}}',
        type=PresenceEvent[Card],
    )
    assert event == PresenceEvent(room="r", change="left", socket="s", presence=Card(name="a", status="away"))
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"room":"r","change":"moved","socket":"s","presence":null}', type=PresenceEvent[Card]
        )
