"""The MongoDB multihome example over the MongoDB stand-in: two instances in-process, and its command line."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from examples.mongo_multihome.app import create_app, redacted
from tests.mongo_standin import MongoStandIn
from tests.support import Client, ServerFrame, connect_client, eventually, free_port, running

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
async def standin() -> AsyncIterator[MongoStandIn]:
    async with MongoStandIn() as server:
        yield server


async def healthy(http: str) -> bool:
    async with httpx.AsyncClient(base_url=http) as web:
        try:
            return (await web.get("/health")).status_code == 200
        except httpx.ConnectError:  # not listening yet
            return False


async def wait_healthy(http: str, within: float = 15) -> None:
    await eventually(functools.partial(healthy, http), within=within, interval=0.05)


@asynccontextmanager
async def instances(url: str, *names: str) -> AsyncIterator[list[str]]:
    """One instance of the example per name, served in-process; yields their ws:// URLs once healthy."""
    async with AsyncExitStack() as stack:
        urls = []
        for name in names:
            app, ss = create_app(url, instance=name)
            urls.append(await stack.enter_async_context(running(app, ss)))
        for ws in urls:
            await wait_healthy(ws.replace("ws://", "http://"))
        yield urls


async def join(client: Client, room: str) -> None:
    await client.send("join", room)
    assert (await client.expect("joinedRoom")).payload == room


async def expect_skipping(client: Client, event: str, late: dict[str, str]) -> ServerFrame:
    """The next ``event`` frame, passing over at most one ``presence`` frame equal to ``late``."""
    frame = await client.recv()
    if frame.event == "presence" and frame.json() == late:
        frame = await client.recv()
    assert frame.event == event, f"expected event {event!r}, got {frame}"
    return frame


async def test_two_instances_chat_through_mongodb(standin: MongoStandIn) -> None:
    async with instances(standin.url, "one", "two") as (one, two):
        http = one.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=http) as web:
            page = await web.get("/")
            assert page.status_code == 200
            assert '<script src="ss.js"></script>' in page.text
            assert "sac-sock" in (await web.get("/ss.js")).text
            assert (await web.get("/style.css")).status_code == 200
            assert (await web.get("/app.js")).status_code == 200
            health = (await web.get("/health")).json()
            assert health["multihome"]["backend"]["name"] == "mongo"
            assert health["multihome"]["backend"]["detail"]["collection"] == "typed_ss.chat"
        async with connect_client(one) as ann, connect_client(two) as bob:
            assert (await ann.expect("welcome")).json() == {"instance": "one", "socket": ann.id}
            assert (await bob.expect("welcome")).json()["instance"] == "two"
            await join(ann, "tea")
            assert (await ann.expect("presence")).json() == {
                "room": "tea",
                "text": "someone joined",
                "instance": "one",
            }
            await join(bob, "tea")
            # Ann's "someone joined" went into the collection just before bob joined: whether
            # instance two reads it before or after bob's subscription is a race, so bob may get it.
            ann_joined = {"room": "tea", "text": "someone joined", "instance": "one"}
            for client in (ann, bob):  # bob's join reaches ann on the other instance
                assert (await expect_skipping(client, "presence", ann_joined)).json()["instance"] == "two"
            await ann.send("message", '{"Room": "tea", "Message": "ann: hi"}')
            for client in (ann, bob):
                line = (await expect_skipping(client, "message", ann_joined)).json()
                assert line == {"room": "tea", "text": "ann: hi", "instance": "one"}
            await bob.send("message", '{"Room": "coffee", "Message": "not a member"}')  # ignored
            await bob.send("join", "coffee")  # leaves tea: ann is told, across instances
            assert (await bob.expect("joinedRoom")).payload == "coffee"
            assert (await bob.expect("presence")).json()["room"] == "coffee"
            assert (await ann.expect("presence")).json() == {
                "room": "tea",
                "text": "someone left",
                "instance": "two",
            }
            await bob.send("join", "__reserved")
            assert "cannot join" in str((await bob.expect("refused")).payload)
            await bob.send("message", '{"Room": "coffee"}')
            assert (await bob.expect("__error")).json()["code"] == "invalid_payload"
            await ann.nothing_within(0.2)
    docs = standin.documents("typed_ss", "chat")
    assert any(doc.get("topic") == "r:tea" for doc in docs)  # the casts went through the collection


@pytest.mark.slow
async def test_the_command_line_runs_an_instance_against_the_given_url(standin: MongoStandIn) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MONGO_URL"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.mongo_multihome.app",
        "--port",
        str(port),
        "--mongo",
        standin.url,
        "--collection",
        "cli",
        "--name",
        "from-cli",
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        banner = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert f"on http://127.0.0.1:{port}" in banner
        assert "typed_ss.cli" in banner  # database.collection
        await wait_healthy(f"http://127.0.0.1:{port}", within=30)
        app, ss = create_app(standin.url, instance="in-test", collection="cli")
        async with running(app, ss) as here:
            await wait_healthy(here.replace("ws://", "http://"))
            async with connect_client(f"ws://127.0.0.1:{port}") as remote, connect_client(here) as near:
                assert (await remote.expect("welcome")).json()["instance"] == "from-cli"
                await near.expect("welcome")
                await join(remote, "lobby")
                await remote.expect("presence")
                await join(near, "lobby")
                await near.expect("presence")
                assert (await remote.expect("presence")).json()["instance"] == "in-test"
                await near.send("message", '{"Room": "lobby", "Message": "across processes"}')
                assert (await remote.expect("message")).json()["text"] == "across processes"
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


async def test_the_command_line_needs_a_url() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MONGO_URL"}
    result = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.mongo_multihome.app",
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(result.communicate(), 30)
    assert result.returncode == 2
    assert b"--mongo" in stderr


def test_passwords_are_not_printed() -> None:
    assert redacted("mongodb://app:s3cret@db.example:27017/x") == "mongodb://app:***@db.example:27017/x"
    assert redacted("mongodb://db.example:27017") == "mongodb://db.example:27017"
