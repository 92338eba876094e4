"""Three server processes on one backend (Redis, a gRPC mesh with mutual TLS, the MongoDB stand-in):
casts in all three data types and order across them, and each backend's own checks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.backends.cluster import KINDS, Cluster, cast, cluster, health, payload_of, serving, until_connected
from tests.support import Client, connect_client, connect_clients

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


@pytest.fixture(params=KINDS)
async def nodes(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    """Three server processes on a backend of their own, serving."""
    async with cluster(request.param, tmp_path, 3) as started, serving(started.nodes):
        yield started


async def linked(clients: Sequence[Client]) -> None:
    """Wait until every client's node is linked to the backend (a mesh node: to every peer)."""
    for client in clients:
        await until_connected(client)


async def nothing_lost(clients: Sequence[Client]) -> None:
    """No node counted a message lost or repeated."""
    for client in clients:
        state = await health(client)
        assert (state["lost"], state["duplicates"]) == (0, 0)


async def test_casts_in_all_three_data_types_cross_processes(nodes: Cluster) -> None:
    one, two, three = nodes.nodes
    async with connect_client(one.url) as c1, connect_client(two.url) as c2, connect_client(three.url) as c3:
        await linked((c1, c2, c3))
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
                frame = await client.expect("cast")
                assert frame.letter == letter
                assert (frame.json() if letter == "J" else frame.payload) == payload_of(
                    letter, f"room {letter}"
                )
            await cast(c2, "socketcast", c3.id, letter, f"direct {letter}")
            frame = await c3.expect("cast")
            assert (frame.json() if letter == "J" else frame.payload) == payload_of(
                letter, f"direct {letter}"
            )
        for client in (c1, c2):
            await client.nothing_within(0.3)
        await nothing_lost((c1, c2, c3))
        await nodes.check((c1, c2, c3), "room")


async def test_order_with_four_publishers_across_processes(nodes: Cluster) -> None:
    count = 200
    one, two, three = nodes.nodes
    async with (
        connect_clients(one.url, 2) as on_one,
        connect_client(two.url) as on_two,
        connect_client(three.url) as on_three,
    ):
        publishers = [*on_one, on_two, on_three]
        receivers = [on_one[0], on_two, on_three]
        await linked(receivers)
        for client in receivers:
            await client.send("join", "order")
            await client.expect("joined")

        async def publish(client: Client) -> None:
            for seq in range(count):
                await client.send("relay", json.dumps({"room": "order", "publisher": client.id, "seq": seq}))

        await asyncio.gather(*(publish(client) for client in publishers))
        for client in receivers:
            seen: dict[str, list[int]] = {p.id: [] for p in publishers}
            for _ in range(count * len(publishers)):
                message = (await client.expect("relayed", within=30)).json()
                seen[message["publisher"]].append(message["seq"])
            for sequence in seen.values():
                assert sequence == list(range(count))
        await nothing_lost(receivers)
