"""typed-ss inside a Starlette application: one line mounts it, the application's lifespan composes with
the server's, the mistake users make (``app.mount``) is named with its fix, identities are typed, and
typed-ss's log lines carry the socket and event and look like uvicorn's."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import Mount
from websockets.exceptions import InvalidStatus

from tests.apps import echo_server
from tests.support import connect_client, running
from typed_ss import ConfigurationError, Server, Socket
from typed_ss.backends import MemoryBackend, MemoryBroker

ROOT = Path(__file__).resolve().parent.parent


class User(msgspec.Struct):
    name: str


def typed_server() -> Server[User]:
    ss = Server[User]()

    @ss.authenticate
    async def who(request: HTTPConnection) -> User | None:
        name = request.headers.get("x-user")
        return None if name is None else User(name)

    @ss.on("whoami")
    async def whoami(sock: Socket[User], data: str) -> None:
        await sock.emit("you", sock.identity.name)

    return ss


async def test_the_authenticated_identity_reaches_handlers_typed() -> None:
    ss = typed_server()
    app = Starlette()
    ss.mount(app, "/socket")
    async with running(app, ss) as url:
        async with connect_client(url, additional_headers={"x-user": "ann"}) as client:
            await client.send("whoami")
            assert (await client.expect("you")).payload == "ann"
        with pytest.raises(InvalidStatus) as refused:
            async with connect_client(url):
                pass
        assert refused.value.response.status_code == 403


async def test_a_server_of_a_typed_identity_without_an_authenticate_hook_refuses_to_start() -> None:
    ss = Server[User]()
    with pytest.raises(ConfigurationError, match=r"Server\[User\] but has no @ss.authenticate hook"):
        await ss.startup()
    await Server().startup()  # a plain server needs none
    await Server[None]().startup()


async def test_mount_serves_the_path_inside_the_applications_own_lifespan() -> None:
    # With a backend, health() shows whether the server is started: its bridge exists only then.
    ss = echo_server(backend=MemoryBackend(MemoryBroker()))
    events: list[tuple[str, bool, bool]] = []

    def note(what: str) -> None:
        events.append((what, ss.health().multihome is not None, ss.accepting))

    @asynccontextmanager
    async def app_lifespan(app: Starlette) -> AsyncIterator[dict[str, str]]:
        note("app start-up code")
        yield {"db": "connected"}
        note("app shutdown code")

    @ss.on_disconnect
    async def disconnected(sock: Socket) -> None:
        note("disconnect hook")

    app = Starlette(lifespan=app_lifespan)
    ss.mount(app, "/socket")
    async with AsyncExitStack() as outer:
        async with running(app, ss) as url:
            # Left open on the outer stack: still connected when the server shuts down.
            client = await outer.enter_async_context(connect_client(url))
            await client.send("echo_text", "hi")
            assert (await client.expect("echo_text")).payload == "hi"
            note("serving")
    # The server started after the application's start-up code and stopped before its shutdown code;
    # the sockets' hooks ran while the server (and what the application set up) was still there.
    assert events == [
        ("app start-up code", False, True),
        ("serving", True, True),
        ("disconnect hook", True, True),  # uvicorn closes the sockets (1012) before the lifespan ends
        ("app shutdown code", False, False),
    ]


async def test_app_mount_is_named_with_its_fix_instead_of_a_bare_403(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ss = echo_server()
    app = Starlette(routes=[Mount("/socket", app=ss)], lifespan=ss.lifespan)
    async with running(app, ss) as url:
        with pytest.raises(InvalidStatus) as refused:
            async with connect_client(url):
                pass
    assert refused.value.response.status_code == 403
    hints = [r.getMessage() for r in caplog.records if "before it reached typed-ss" in r.getMessage()]
    assert len(hints) == 1
    assert "ss.mount(app, path)" in hints[0]
    assert "'/socket'" in hints[0]


async def test_records_about_a_socket_carry_its_id_and_event(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="typed_ss")
    ss = echo_server()
    app = Starlette()
    ss.mount(app, "/socket")
    async with running(app, ss) as url, connect_client(url) as client:
        await client.send("echo_chat", "not json")
        await client.expect("__error")
        await client.send("fail")
        await client.expect("__error")
    invalid = next(r for r in caplog.records if "invalid payload" in r.getMessage())
    failed = next(r for r in caplog.records if "failed on socket" in r.getMessage())
    for record, event in ((invalid, "echo_chat"), (failed, "fail")):
        assert record.__dict__["socket_id"] == client.id
        assert record.__dict__["event"] == event
    connected = next(r for r in caplog.records if r.getMessage() == f"socket {client.id} connected")
    assert (connected.__dict__["socket_id"], connected.__dict__["event"]) == (client.id, "-")


@pytest.mark.slow
async def test_under_the_recommended_settings_typed_ss_lines_look_like_uvicorns() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.serve",
        "tests.apps:app",
        "--uvicorn",  # what uvicorn does is the point
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        url = f"ws://127.0.0.1:{int(line.split()[1])}"
        async with connect_client(url) as client:
            await client.ws.send("no delimiter at all")
            await client.send("echo_text", "after")
            await client.expect("echo_text")
        process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        log = (await process.stderr.read()).decode().splitlines()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    malformed = [entry for entry in log if "sent a malformed frame" in entry]
    assert len(malformed) == 1, log
    # uvicorn's default formatter: the level, a colon, padding to the message, as its own lines.
    assert malformed[0].startswith("INFO:     socket "), malformed[0]
    assert any(entry.startswith("INFO:     Application startup complete.") for entry in log), log


async def test_fastapi_mount_with_its_lifespan_and_a_post_route_that_roomcasts() -> None:
    import httpx
    from fastapi import FastAPI

    class Notice(msgspec.Struct):
        text: str

    ss = typed_server()
    notice = ss.event("notice", Notice)

    @ss.on("join")
    async def join(sock: Socket[User], room: str) -> None:
        await sock.join(room)
        await sock.emit("joined", room)

    started: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started.append("app")
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/rooms/{room}/notices")
    async def post_notice(room: str, body: dict[str, str]) -> dict[str, int]:
        await notice.roomcast(room, Notice(body["text"]))
        return {"members": ss.hub.room_size(room)}

    ss.mount(app, "/socket")
    async with running(app, ss) as url:
        assert started == ["app"]
        async with connect_client(url, additional_headers={"x-user": "ann"}) as client:
            await client.send("join", "tea")
            await client.expect("joined")
            http = url.replace("ws://", "http://", 1)
            async with httpx.AsyncClient(base_url=http) as web:
                answer = await web.post("/rooms/tea/notices", json={"text": "kettle on"})
            assert answer.json() == {"members": 1}
            assert (await client.expect("notice")).json() == {"text": "kettle on"}
