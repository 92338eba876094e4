"""Three uvicorn processes and a real redis-server: casts, order and interest routing across them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.backends.redis_server import RedisServer
from tests.support import Client, connect_client, connect_clients

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def instances(redis: RedisServer, count: int) -> AsyncIterator[list[str]]:
    """``count`` server processes on free ports; yields their ws:// URLs and stops them by PID."""
    env = {**os.environ, "TYPED_SS_TEST_REDIS_URL": redis.url}
    processes = []
    try:
        for _ in range(count):
            processes.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "tests.serve",
                    "tests.backends.redis_app:app",
                    "--set",
                    "log_level=warning",
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                )
            )
        urls = []
        for process in processes:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line.startswith("PORT "), line
            urls.append(f"ws://127.0.0.1:{int(line.split()[1])}")
        yield urls
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
        for process in processes:
            await asyncio.wait_for(process.wait(), 30)


async def cast(client: Client, kind: str, target: str, letter: str, text: str) -> None:
    await client.send("cast", json.dumps({"kind": kind, "target": target, "letter": letter, "text": text}))


def payload_of(letter: str, text: str) -> object:
    return {"S": text, "B": text.encode(), "J": {"text": text}}[letter]


async def test_casts_in_all_three_data_types_cross_processes(redis_server: RedisServer) -> None:
    async with instances(redis_server, 3) as (one, two, three):
        async with connect_client(one) as c1, connect_client(two) as c2, connect_client(three) as c3:
            for client in (c2, c3):
                await client.send("join", "room")
                await client.expect("joined")
            for letter in "SBJ":
                await cast(c1, "broadcast", "", letter, f"all {letter}")
                for client in (c1, c2, c3):
                    frame = await client.expect("cast")
                    assert frame.letter == letter
                    assert (frame.json() if letter == "J" else frame.payload) == payload_of(
                        letter, f"all {letter}"
                    )
                await cast(c1, "roomcast", "room", letter, f"room {letter}")
                for client in (c2, c3):
                    assert (await client.expect("cast")).letter == letter
                await cast(c2, "socketcast", c3.id, letter, f"direct {letter}")
                frame = await c3.expect("cast")
                assert (frame.json() if letter == "J" else frame.payload) == payload_of(
                    letter, f"direct {letter}"
                )
            for client in (c1, c2):
                await client.nothing_within(0.3)

            # Interest routing, as Redis itself sees it: only the two instances with members listen.
            admin = redis_server.client()
            try:
                ((_, listeners),) = await admin.pubsub_numsub("typed-ss:r:room")
                ((_, nobody),) = await admin.pubsub_numsub("typed-ss:r:no-such-room")
                ((_, broadcast),) = await admin.pubsub_numsub("typed-ss:b")
                channels = {
                    c if isinstance(c, str) else c.decode()
                    for c in await admin.pubsub_channels("typed-ss:r:*")
                }
            finally:
                await admin.aclose()
            assert (listeners, nobody, broadcast) == (2, 0, 3)
            socket_rooms = {f"typed-ss:r:__socket_id:{c.id}" for c in (c1, c2, c3)}
            assert channels == {"typed-ss:r:room"} | socket_rooms


async def test_order_with_four_publishers_across_processes(redis_server: RedisServer) -> None:
    count = 200
    async with instances(redis_server, 3) as urls:
        async with (
            connect_clients(urls[0], 2) as on_one,
            connect_client(urls[1]) as on_two,
            connect_client(urls[2]) as on_three,
        ):
            publishers = [*on_one, on_two, on_three]
            receivers = [on_one[0], on_two, on_three]
            for client in receivers:
                await client.send("join", "order")
                await client.expect("joined")

            async def publish(client: Client) -> None:
                for seq in range(count):
                    await client.send(
                        "relay", json.dumps({"room": "order", "publisher": client.id, "seq": seq})
                    )

            await asyncio.gather(*(publish(client) for client in publishers))
            for client in receivers:
                seen: dict[str, list[int]] = {p.id: [] for p in publishers}
                for _ in range(count * len(publishers)):
                    message = (await client.expect("relayed", within=30)).json()
                    seen[message["publisher"]].append(message["seq"])
                for sequence in seen.values():
                    assert sequence == list(range(count))
