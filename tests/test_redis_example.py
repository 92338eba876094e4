"""The Redis multihome example: two instances of it over a real redis-server, and its start.sh."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from examples.redis_multihome.app import create_app
from tests.backends.redis_server import RedisServer
from tests.support import Client, connect_client, eventually, free_ports, free_socket, running
from typed_ss import Server

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
START_SH = ROOT / "examples" / "redis_multihome" / "start.sh"


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@dataclass
class Instance:
    server: Server
    url: str  # ws://127.0.0.1:<port>

    @property
    def http(self) -> str:
        return self.url.replace("ws://", "http://", 1)


def connected(server: Server) -> bool:
    multihome = server.health().multihome
    return multihome is not None and multihome.backend.state == "connected"


@asynccontextmanager
async def instances(redis_url: str, count: int) -> AsyncIterator[list[Instance]]:
    """``count`` instances of the example app, served in-process, each with its Redis subscriber up."""
    async with AsyncExitStack() as stack:
        started = []
        for _ in range(count):
            app, ss = create_app(redis_url)
            started.append(Instance(ss, await stack.enter_async_context(running(app, ss))))
        for instance in started:
            await eventually(functools.partial(connected, instance.server), within=10)
        yield started


async def joined(client: Client, room: str) -> None:
    await client.send("join", room)
    assert (await client.expect("echo")).payload == f"joined room: {room}"


async def test_echo_in_all_three_types_and_join_leave_answers(redis_url: str) -> None:
    async with instances(redis_url, 1) as [a], connect_client(a.url) as client:
        await client.send("echo", "héllo ✓")
        frame = await client.expect("echo")
        assert (frame.letter, frame.payload) == ("S", "héllo ✓")
        await client.send("echobin", b"\x00\xff raw")
        frame = await client.expect("echobin")
        assert (frame.letter, frame.payload) == ("B", b"\x00\xff raw")
        await client.send("echojson", '{"message": "héllo"}')
        assert (await client.expect("echojson")).json() == {"message": "héllo"}

        await joined(client, "lobby")
        assert a.server.hub.room_size("lobby") == 1
        await client.send("leave", "lobby")
        assert (await client.expect("echo")).payload == "left room: lobby"
        assert a.server.hub.room_size("lobby") == 0
        # A name the server refuses is answered, not dropped, and the connection stays open.
        await client.send("join", "__socket_id:someone")
        assert str((await client.expect("echo")).payload).startswith("cannot join room: ")
        await client.send("echojson", '{"text": "no message key"}')
        error = (await client.expect("__error")).json()
        assert (error["event"], error["code"]) == ("echojson", "invalid_payload")


async def test_roomcast_in_all_three_types_reaches_members_on_both_instances(redis_url: str) -> None:
    async with instances(redis_url, 2) as [a, b]:
        async with (
            connect_client(a.url) as sender,
            connect_client(b.url) as member,
            connect_client(b.url) as outsider,
        ):
            for client in (sender, member):
                await joined(client, "lobby")
            room_json = '{"room": "lobby", "data": "hi ✓"}'
            await sender.send("roomcast", room_json)  # the JSON as text, as the original page sends it
            await sender.send("roomcastbin", room_json.encode())  # the same JSON as a binary frame
            await sender.send("roomcastjson", room_json)
            for client in (sender, member):
                frame = await client.expect("roomcast")
                assert (frame.letter, frame.payload) == ("S", "hi ✓")
                frame = await client.expect("roomcastbin")
                assert (frame.letter, frame.payload) == ("B", "hi ✓".encode())
                assert (await client.expect("roomcastjson")).json() == {"room": "lobby", "data": "hi ✓"}
            await outsider.nothing_within(0.3)

            await member.send("leave", "lobby")
            assert (await member.expect("echo")).payload == "left room: lobby"
            await sender.send("roomcast", '{"room": "lobby", "data": "still here?"}')
            assert (await sender.expect("roomcast")).payload == "still here?"
            await member.nothing_within(0.3)
            await sender.send("roomcast", '{"room": "", "data": "nowhere"}')
            assert (await sender.expect("__error")).json()["code"] == "invalid_payload"


async def test_broadcast_in_all_three_types_reaches_everyone_on_both_instances(redis_url: str) -> None:
    async with instances(redis_url, 2) as [a, b]:
        async with connect_client(a.url) as on_a, connect_client(b.url) as on_b:
            await on_b.send("broadcast", "to all ✓")
            await on_b.send("broadcastbin", b"\x00\x01\xfe")
            await on_b.send("broadcastjson", '{"message": "to all"}')
            for client in (on_a, on_b):
                frame = await client.expect("broadcast")
                assert (frame.letter, frame.payload) == ("S", "to all ✓")
                frame = await client.expect("broadcastbin")
                assert (frame.letter, frame.payload) == ("B", b"\x00\x01\xfe")
                assert (await client.expect("broadcastjson")).json() == {"message": "to all"}
            for client in (on_a, on_b):
                await client.nothing_within(0.2)  # each exactly once


async def test_socketcast_in_all_three_types_reaches_one_socket_on_the_other_instance(redis_url: str) -> None:
    async with instances(redis_url, 2) as [a, b]:
        async with (
            connect_client(a.url) as sender,
            connect_client(b.url) as target,
            connect_client(b.url) as bystander,
        ):
            cast = f'{{"socketId": "{target.id}", "data": "psst ✓"}}'
            await sender.send("socketcast", cast)
            await sender.send("socketcastbin", cast.encode())
            await sender.send("socketcastjson", cast)
            frame = await target.expect("socketcast")
            assert (frame.letter, frame.payload) == ("S", "psst ✓")
            frame = await target.expect("socketcastbin")
            assert (frame.letter, frame.payload) == ("B", "psst ✓".encode())
            assert (await target.expect("socketcastjson")).json() == {"socketId": target.id, "data": "psst ✓"}
            for client in (sender, bystander):
                await client.nothing_within(0.3)
            # The key is the original's camelCase "socketId"; the Python name is refused.
            await sender.send("socketcast", f'{{"socket_id": "{target.id}", "data": "x"}}')
            error = (await sender.expect("__error")).json()
            assert error["code"] == "invalid_payload"
            assert "socketId" in error["detail"]


async def test_serves_the_page_the_client_and_health(redis_url: str) -> None:
    async with instances(redis_url, 1) as [a]:
        async with httpx.AsyncClient(base_url=a.http, timeout=10) as web:
            page = await web.get("/")
            assert page.status_code == 200
            for needed in ('<script src="ss.js"></script>', '<script src="app.js"></script>', "Get Weird!"):
                assert needed in page.text
            script = await web.get("/ss.js")
            assert script.status_code == 200
            assert "sac-sock" in script.text
            assert script.headers["content-type"].startswith("text/javascript")
            for asset in ("/app.js", "/style.css"):
                assert (await web.get(asset)).status_code == 200
            app_js = (await web.get("/app.js")).text
            for markup in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
                assert markup not in app_js  # received data is shown with textContent only
            async with connect_client(a.url):
                health = await web.get("/health")
                assert health.status_code == 200
                assert health.headers["content-type"] == "application/json"
                state = health.json()
                assert (state["accepting"], state["sockets"]) == (True, 1)
                assert state["multihome"]["backend"]["name"] == "redis"
                assert state["multihome"]["backend"]["state"] == "connected"


@pytest.mark.slow
async def test_health_is_503_while_redis_is_unreachable() -> None:
    with free_socket() as probe:  # a port nothing listens on, held (bound, never listening) meanwhile
        nowhere = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
        app, ss = create_app(nowhere)
        async with running(app, ss) as url, httpx.AsyncClient(timeout=10) as web:
            health = await web.get(url.replace("ws://", "http://", 1) + "/health")
            assert health.status_code == 503
            assert health.json()["multihome"]["backend"]["state"] in ("connecting", "reconnecting")


# --- start.sh ------------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def redis_dirs(parent: Path) -> list[Path]:
    return list(parent.glob("typed-ss-redis.*"))


STARTED = re.compile(r"^started (\S+) \(pid (\d+)\)")


@pytest.mark.slow
@pytest.mark.timeout(90)
async def test_start_sh_starts_redis_and_three_linked_instances_and_stops_them_all(tmp_path: Path) -> None:
    ports = free_ports(3)
    pid_file = tmp_path / "pids"
    env = {**os.environ, "PYTHON": sys.executable, "PID_FILE": str(pid_file), "TMPDIR": str(tmp_path)}
    stderr = (tmp_path / "stderr").open("wb")
    script = await asyncio.create_subprocess_exec(
        "bash", str(START_SH), *map(str, ports), stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env
    )
    lines: list[str] = []
    ready = asyncio.Event()

    async def read_stdout() -> None:  # read all along: the instances' access logs share the pipe
        assert script.stdout is not None
        async for raw in script.stdout:
            lines.append(raw.decode(errors="replace").rstrip("\n"))
            if lines[-1].startswith("all instances are up"):
                ready.set()

    reader = asyncio.create_task(read_stdout())
    started: dict[int, str] = {}
    try:
        await asyncio.wait_for(ready.wait(), 45)
        started = {int(m[2]): m[1] for m in map(STARTED.match, lines) if m}
        assert sorted(started.values()) == ["instance", "instance", "instance", "redis-server"], lines
        assert pid_file.read_text().split() == [w for pid, name in started.items() for w in (name, str(pid))]
        for port in ports:
            assert f"  http://127.0.0.1:{port}/" in lines

        first, last = (f"ws://127.0.0.1:{port}" for port in (ports[0], ports[2]))
        async with connect_client(first) as a, connect_client(last) as c:
            await a.send("broadcast", "across instances")
            for client in (a, c):
                assert (await client.expect("broadcast")).payload == "across instances"

        # SIGTERM, not SIGINT: a shell started in the background by a non-interactive shell (a CI
        # runner's, say) ignores SIGINT from the start and cannot trap it. Both signals run one trap.
        script.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(script.wait(), 30) == 143
        await asyncio.wait_for(reader, 10)  # EOF: no process still holds the pipe
        for pid, name in started.items():
            assert not alive(pid), f"{name} (pid {pid}) is still running"
        assert not pid_file.exists()
        assert not redis_dirs(tmp_path), "the Redis directory was not removed"
    finally:
        # Only on failure is anything left: stop the script, then whatever it started, by PID.
        if script.returncode is None:
            script.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(script.wait(), 30)
            except TimeoutError:
                script.kill()
                await script.wait()
        with contextlib.suppress(AssertionError):
            await eventually(lambda: not any(map(alive, started)), within=5)
        for pid in filter(alive, started):
            os.kill(pid, signal.SIGKILL)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        stderr.close()
