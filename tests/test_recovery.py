"""Connection state recovery: a client that drops for a moment misses nothing, or is told it starts
afresh; never a partial replay, never stale rooms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings
from starlette.requests import HTTPConnection
from websockets.protocol import State

from tests.apps import echo_server, make_app
from tests.backends.fault_proxy import FaultProxy
from tests.support import Client, ServerFrame, connect_client, eventually, running
from typed_ss import Recovery, Server, Socket
from typed_ss.client import Reconnected, ReconnectPolicy, connect
from typed_ss.hub import Hub
from typed_ss.protocol import offset_flag, parse_offset_flag, stream_tag
from typed_ss.recovery.history import MemoryHistory
from typed_ss.recovery.sessions import MemorySessions, Session

FAST = ReconnectPolicy(base=0.01, cap=0.05)
"""Reconnects within milliseconds, so the client is back while the server still streams."""


def recovery_server(**options: Any) -> Server:
    """The tests' usual server (tests/apps.py: ``join`` answered with ``joined``...) with recovery on,
    and ``enter``, a join that says nothing; ``options`` go to :class:`Recovery`."""
    ss = echo_server(recovery=Recovery(**options))

    @ss.on("enter")
    async def enter(sock: Socket, room: str) -> None:
        await sock.join(room)  # and says nothing: the client is sent nothing at all

    return ss


async def away(url: str, ss: Server, *, path: str = "/socket", **options: Any) -> tuple[Client, ServerFrame]:
    """A client joins room ``r``, then its network fails; returns once the server has let it go, with
    the client and the ``joined`` frame it received."""
    async with connect_client(url, path, **options) as client:
        await client.send("join", "r")
        joined = await client.expect("joined")
        drop(client)
    await gone(ss, client.id)
    return client, joined


@asynccontextmanager
async def proxied(url: str) -> AsyncIterator[tuple[FaultProxy, str]]:
    host, port = url.removeprefix("ws://").split(":")
    proxy = FaultProxy(host, int(port))
    await proxy.start()
    try:
        yield proxy, f"ws://127.0.0.1:{proxy.port}"
    finally:
        await proxy.stop()


def offsets_of(frames: list[ServerFrame]) -> dict[str, str]:
    """The last offset of each stream among ``frames`` (their ``o<tag>.<offset>`` flags)."""
    positions: dict[str, str] = {}
    for frame in frames:
        flags = frame.letter[1:]
        if flags.startswith("o"):
            tag, _, offset = flags[1:].partition(".")
            positions[tag] = offset
    return positions


def recovery_path(hello: dict[str, Any], positions: dict[str, str] | None = None) -> str:
    query = {"ss_session": hello["session"]}
    if positions:
        query["ss_offsets"] = ",".join(f"{tag}.{offset}" for tag, offset in positions.items())
    return "/socket?" + urlencode(query)


def drop(client: Client) -> None:
    """The network fails under ``client``: its TCP connection ends without a WebSocket close."""
    client.ws.transport.abort()


async def gone(ss: Server, socket_id: str) -> None:
    await eventually(lambda: socket_id not in ss.sockets)


# --- the whole path, through a proxy that cuts the connection ----------------------------------------


async def test_a_cut_connection_misses_nothing_across_rooms_broadcasts_and_its_own_stream() -> None:
    ss = recovery_server()
    received: list[int] = []
    reconnects: list[Reconnected] = []
    async with running(make_app(ss), ss) as url, proxied(url) as (proxy, proxy_url):
        client = connect(proxy_url + "/socket", reconnect=FAST)

        def number(value: int) -> None:
            received.append(value)

        client.on("n", number)

        @client.on_reconnected
        async def reconnected(event: Reconnected) -> None:
            handled = len(received)
            await asyncio.sleep(0.05)  # the stream goes on meanwhile: nothing is handled before the hook
            assert len(received) == handled
            reconnects.append(event)

        async with client:
            await client.join("r")
            socket_id = client.id
            assert socket_id is not None

            async def send(i: int) -> None:
                # Three streams, interleaved: the room, the broadcasts, the socket's own.
                if i % 3 == 0:
                    await ss.roomcast("r", "n", i)
                elif i % 3 == 1:
                    await ss.broadcast("n", i)
                else:
                    await ss.socketcast(socket_id, "n", i)

            for i in range(300):
                await send(i)
            await eventually(lambda: len(received) == 300)
            for i in range(300, 400):
                await send(i)
            assert proxy.cut() == 1  # some of 300..399 are in flight, lost with the connection
            for i in range(400, 1000):
                await send(i)
                if i % 20 == 0:
                    await asyncio.sleep(0.001)  # the client reconnects meanwhile
            await eventually(lambda: len(received) >= 1000, within=20)
            await asyncio.sleep(0.1)  # anything duplicated would arrive now
            assert received == list(range(1000))
            assert reconnects == [Reconnected(True, ("r",))]
            assert client.id == socket_id
            assert client.rooms == ("r",)


# --- what is recovered, and when it is not ----------------------------------------------------------


async def test_a_socket_that_received_nothing_from_its_room_recovers() -> None:
    ss = recovery_server()
    async with running(make_app(ss), ss) as url:
        first, joined = await away(url, ss)  # "joined" went to its own stream, not the room's
        await ss.roomcast("r", "msg", "one")
        await ss.socketcast(first.id, "msg", "two")
        async with connect_client(url, recovery_path(first.hello, offsets_of([joined]))) as again:
            assert again.hello["recovered"] is True
            assert again.id == first.id
            assert again.hello["rooms"] == ["r"]
            assert [(await again.expect("msg")).payload for _ in range(2)] == ["one", "two"]
            await ss.roomcast("r", "msg", "live")
            assert (await again.expect("msg")).payload == "live"


async def test_a_socket_that_was_never_sent_anything_recovers() -> None:
    ss = recovery_server()
    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as first:
            await first.send("enter", "r")
            await eventually(lambda: ss.hub.room_size("r") == 1)
            drop(first)
        await gone(ss, first.id)
        await ss.roomcast("r", "msg", "one")
        async with connect_client(url, recovery_path(first.hello)) as again:
            assert again.hello["recovered"] is True
            assert (await again.expect("msg")).payload == "one"


async def test_offsets_say_what_the_client_has_and_only_the_rest_is_replayed() -> None:
    ss = recovery_server()
    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as first:
            await first.send("join", "r")
            joined = await first.expect("joined")
            await ss.roomcast("r", "msg", "seen")
            seen = await first.expect("msg")
            assert seen.letter.startswith("So" + stream_tag("r") + ".")
            drop(first)
        await gone(ss, first.id)
        await ss.roomcast("r", "msg", "missed")
        # "joined" went to its own stream and "seen" to the room's: both were received.
        async with connect_client(url, recovery_path(first.hello, offsets_of([joined, seen]))) as again:
            assert again.hello["recovered"] is True
            assert (await again.expect("msg")).payload == "missed"
            await again.nothing_within(0.1)


async def test_past_the_window_the_client_starts_afresh() -> None:
    ss = recovery_server(window=0.2)
    async with running(make_app(ss), ss) as url:
        first, _ = await away(url, ss)
        assert ss.recovery is not None
        await eventually(lambda: len(ss.recovery.sessions) == 0)  # type: ignore[union-attr]
        await ss.roomcast("r", "msg", "missed")
        async with connect_client(url, recovery_path(first.hello)) as again:
            assert again.hello["recovered"] is False
            assert again.id != first.id
            assert "rooms" not in again.hello
            await again.send("join", "other")
            await again.expect("joined")  # nothing replayed, nothing stale before it


async def test_a_trimmed_history_means_a_fresh_start_not_a_partial_replay() -> None:
    ss = recovery_server(history=3)
    async with running(make_app(ss), ss) as url:
        first, _ = await away(url, ss)
        for i in range(5):  # two more than the room's stream keeps
            await ss.roomcast("r", "msg", str(i))
        async with connect_client(url, recovery_path(first.hello)) as again:
            assert again.hello["recovered"] is False
            assert again.id != first.id
            await again.nothing_within(0.1)


async def test_a_restarted_server_has_no_session_to_recover() -> None:
    ss = recovery_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as first:
        hello = first.hello
    restarted = recovery_server()
    async with (
        running(make_app(restarted), restarted) as url,
        connect_client(url, recovery_path(hello)) as again,
    ):
        assert again.hello["recovered"] is False
        assert again.id != hello["id"]


async def test_a_token_works_only_for_the_identity_it_was_given_to() -> None:
    ss = recovery_server()

    @ss.authenticate
    async def authenticate(request: HTTPConnection) -> str | None:
        return request.headers.get("x-user")

    async with running(make_app(ss), ss) as url:
        first, _ = await away(url, ss, additional_headers={"x-user": "ann"})
        path = recovery_path(first.hello)
        async with connect_client(url, path, additional_headers={"x-user": "bob"}) as thief:
            assert thief.hello["recovered"] is False
            assert thief.id != first.id
            assert "rooms" not in thief.hello
        # The session is still its owner's.
        async with connect_client(url, path, additional_headers={"x-user": "ann"}) as again:
            assert again.hello["recovered"] is True
            assert again.id == first.id


async def test_a_client_that_closes_cleanly_ends_its_session() -> None:
    ss = recovery_server()
    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as first:
            pass  # closes with 1000
        await gone(ss, first.id)
        async with connect_client(url, recovery_path(first.hello)) as again:
            assert again.hello["recovered"] is False


async def test_a_reconnect_takes_over_a_connection_the_server_still_thinks_is_open() -> None:
    ss = recovery_server()
    async with running(make_app(ss), ss) as url, connect_client(url) as first:
        await first.send("join", "r")
        joined = await first.expect("joined")
        # The client moved (a new network): its old connection is still open as far as the server
        # knows, and it reconnects with its token.
        async with connect_client(url, recovery_path(first.hello, offsets_of([joined]))) as again:
            assert again.hello["recovered"] is True
            assert again.id == first.id
            assert list(ss.sockets) == [first.id]
            await ss.roomcast("r", "msg", "once")
            assert (await again.expect("msg")).payload == "once"
            await again.nothing_within(0.1)


async def test_without_recovery_hello_has_no_session_and_frames_no_offsets() -> None:
    ss = Server()

    @ss.on("join")
    async def join(sock: Socket, room: str) -> None:
        await sock.join(room)
        await sock.emit("joined", room)

    async with running(make_app(ss), ss) as url, connect_client(url) as client:
        assert "session" not in client.hello
        await client.send("join", "r")
        assert (await client.expect("joined")).letter == "S"
        await ss.roomcast("r", "msg", "x")
        assert (await client.expect("msg")).letter == "S"


# --- the bounded pieces -------------------------------------------------------------------------------


def test_history_keeps_at_most_its_bound_per_stream_and_says_when_something_is_gone() -> None:
    history = MemoryHistory("e", max_entries=3, max_age=60.0)
    for i in range(5):
        history.record("a", f"m\x01S\x02{i}")
    history.record("b", "m\x01S\x02b")
    assert len(history) == 4
    assert history.since("a", 0) is None  # offsets 1 and 2 are gone
    assert [offset for offset, _ in history.since("a", 2) or []] == [3, 4, 5]
    assert history.since("a", 5) == []
    assert history.since("never", 3) == []  # nothing was sent to it
    assert history.since("a", 99) is None  # an offset this history never gave


def test_sessions_are_bounded_and_the_one_expiring_first_goes_first() -> None:
    released: list[str] = []
    sessions = MemorySessions(window=60.0, max_sessions=2, released=released.append)
    first, second, third, fourth = (Session(f"t{i}", f"s{i}", "k", None, 0) for i in range(4))
    assert sessions.add(first)
    assert sessions.add(second)
    sessions.joined(second, "r", 0)
    sessions.ended(second, keep=True)
    assert sessions.add(third)  # the expiring one made room
    assert released == ["r"]
    assert sessions.get("t1") is None
    assert sessions.get("t0") is first
    assert sessions.get("t2") is third
    assert not sessions.add(fourth)  # both held by connections: never dropped for room
    sessions.left(second, "r")  # a dropped session's report changes nothing
    assert released == ["r"]


@pytest.mark.parametrize("window", [0.0, -1.0])
def test_recovery_settings_are_checked(window: float) -> None:
    from typed_ss import ConfigurationError

    with pytest.raises(ConfigurationError):
        Recovery(window=window)


@settings(max_examples=200, deadline=None)
@given(room=st.text(min_size=1, max_size=50))
def test_offset_flags_hold_only_digits_so_no_client_reads_them_as_another_flag(room: str) -> None:
    # An original client takes each character of the flags for a flag ("J": parse as JSON); typed-ss's
    # clients look for c, r and e (calls).
    flag = offset_flag(stream_tag(room), "18446744073709551615")
    assert set(flag) <= set("o.0123456789")
    assert parse_offset_flag(flag) == (stream_tag(room), "18446744073709551615")


# --- what the review found: teardowns, takeovers, several instances, bounds -----------------------------


async def test_a_late_teardown_of_the_old_connection_leaves_the_recovered_socket_alone() -> None:
    ss = recovery_server()
    hooks_done = asyncio.Event()

    @ss.on_disconnect
    async def slow(sock: Socket) -> None:
        await asyncio.sleep(0.2)  # the client is back before this teardown is over
        hooks_done.set()

    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as first:
            await first.send("join", "r")
            joined = await first.expect("joined")
            drop(first)
        async with connect_client(url, recovery_path(first.hello, offsets_of([joined]))) as again:
            assert again.hello["recovered"] is True
            await asyncio.wait_for(hooks_done.wait(), 5)
            assert list(ss.sockets) == [first.id]
            await ss.roomcast("r", "msg", "still here")
            assert (await again.expect("msg")).payload == "still here"
            await ss.socketcast(first.id, "msg", "to me")
            assert (await again.expect("msg")).payload == "to me"


async def test_two_reconnects_with_one_token_leave_one_socket() -> None:
    ss = recovery_server()
    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as first:
            await first.send("join", "r")
            joined = await first.expect("joined")
            drop(first)
        path = recovery_path(first.hello, offsets_of([joined]))
        async with AsyncExitStack() as stack:
            both = await asyncio.gather(
                stack.enter_async_context(connect_client(url, path)),
                stack.enter_async_context(connect_client(url, path)),
            )
            # The token is taken up once at a time: the later reconnect takes over from the earlier,
            # or finds the token replaced by the earlier's new one and starts afresh.
            recovered = [client for client in both if client.hello["recovered"]]
            assert recovered
            assert all(client.hello["session"] != first.hello["session"] for client in both)

            def open_ones() -> list[Client]:
                return [client for client in recovered if client.ws.state is State.OPEN]

            await eventually(lambda: len(open_ones()) == 1)
            assert first.id in ss.sockets
            await ss.roomcast("r", "msg", "once")
            assert (await open_ones()[0].expect("msg")).payload == "once"


async def test_on_another_instances_casts_the_away_client_missed_are_kept_and_replayed() -> None:
    from typed_ss.backends.memory import MemoryBackend, MemoryBroker

    broker = MemoryBroker()
    here = Server(recovery=Recovery(), backend=MemoryBackend(broker))
    there = Server(backend=MemoryBackend(broker))

    @here.on("join")
    async def join(sock: Socket, room: str) -> None:
        await sock.join(room)
        await sock.emit("joined", room)

    async with running(make_app(here), here) as url, running(make_app(there), there):
        first, joined = await away(url, here)
        # This instance has no member of "r" now, but the session still refers to it: its casts from
        # the other instance keep arriving, and are kept.
        await there.roomcast("r", "msg", "from there")
        await there.socketcast(first.id, "msg", "to you")
        async with connect_client(url, recovery_path(first.hello, offsets_of([joined]))) as again:
            assert again.hello["recovered"] is True
            assert {(await again.expect("msg")).payload for _ in range(2)} == {"from there", "to you"}


async def test_past_max_sessions_a_new_socket_gets_none_and_the_held_ones_stay() -> None:
    ss = recovery_server(max_sessions=1)
    async with running(make_app(ss), ss) as url:
        async with connect_client(url) as first, connect_client(url) as second:
            assert "session" in first.hello
            assert "session" not in second.hello  # no recovery for it
            await first.send("join", "r")
            joined = await first.expect("joined")
            drop(first)
        async with connect_client(url, recovery_path(first.hello, offsets_of([joined]))) as again:
            assert again.hello["recovered"] is True


class Badge:
    """An identity without a JSON form: compared with ==."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Badge) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)


async def test_an_identity_without_a_json_form_is_compared_with_eq() -> None:
    ss = recovery_server()

    @ss.authenticate
    async def authenticate(request: HTTPConnection) -> Badge | None:
        name = request.headers.get("x-user")
        return None if name is None else Badge(name)

    async with running(make_app(ss), ss) as url:
        async with connect_client(url, additional_headers={"x-user": "ann"}) as first:
            drop(first)
        await gone(ss, first.id)
        path = recovery_path(first.hello)
        async with connect_client(url, path, additional_headers={"x-user": "bob"}) as other:
            assert other.hello["recovered"] is False
        async with connect_client(url, path, additional_headers={"x-user": "ann"}) as again:
            assert again.hello["recovered"] is True


@pytest.mark.parametrize(
    "query",
    [
        {"ss_session": "no-such-token"},
        {"ss_session": "\r\nforged line", "ss_offsets": "1.1"},
        {"ss_offsets": "1.1"},  # offsets without a token: nothing to recover
        {"ss_session": "", "ss_offsets": ""},
    ],
)
async def test_a_bad_token_starts_afresh_and_logs_nothing_the_client_wrote(
    query: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    ss = recovery_server()
    async with running(make_app(ss), ss) as url:
        async with connect_client(url, "/socket?" + urlencode(query)) as client:
            assert client.hello.get("recovered") in (False, None)
            await client.send("join", "r")
            await client.expect("joined")  # the connection works
    assert not any("forged" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "offsets",
    [
        "x.1",
        "1.x",
        "1",
        "1.1,,2.2",
        "1." + "9" * 20,  # past 19 digits
        ",".join(f"{i}.1" for i in range(257)),  # past 256 entries
    ],
)
async def test_malformed_offsets_start_afresh(offsets: str) -> None:
    ss = recovery_server()
    async with running(make_app(ss), ss) as url:
        first, _ = await away(url, ss)
        path = "/socket?" + urlencode({"ss_session": first.hello["session"], "ss_offsets": offsets})
        async with connect_client(url, path) as again:
            assert again.hello["recovered"] is False
            assert again.id != first.id


async def test_offsets_of_streams_the_session_is_not_in_are_ignored() -> None:
    ss = recovery_server()
    async with running(make_app(ss), ss) as url:
        first, joined = await away(url, ss)
        positions = {**offsets_of([joined]), **{str(i): "5" for i in range(200)}}  # rooms left long ago
        async with connect_client(url, recovery_path(first.hello, positions)) as again:
            assert again.hello["recovered"] is True
            assert sorted(again.hello["streams"]) == sorted(
                stream_tag(name) for name in ("__broadcast", "r", f"__socket_id:{first.id}")
            )


def test_a_recovered_socket_leaves_the_catching_up_table_once_each_stream_moved_past_its_replay() -> None:
    class Pushes:
        def __init__(self) -> None:
            self.id = "socket"
            self.pushed: list[object] = []

        def push(self, frame: object) -> None:
            self.pushed.append(frame)

    hub = Hub()
    sock = Pushes()
    member: Any = sock
    hub._sockets[sock.id] = member
    hub._memberships[member] = {"r"}
    hub._rooms["r"] = {member}
    hub.caught_up(member, {stream_tag("r"): 5})
    hub.deliver("r", "late\x01S\x02x", 5)  # in its replay: not sent again
    hub.deliver("r", "next\x01S\x02x", 6)
    hub.deliver("r", "more\x01S\x02x", 7)
    assert sock.pushed == ["next\x01S\x02x", "more\x01S\x02x"]
    assert hub._catching_up == {}  # nothing older than 6 comes after it: no more checks for this socket
