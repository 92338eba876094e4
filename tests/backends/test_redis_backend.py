"""The Redis backend on its own, against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from tests.backends.fault_proxy import FaultProxy
from tests.backends.redis_server import RedisServer
from typed_ss import ConfigurationError
from typed_ss.backends.redis import RedisBackend
from typed_ss.errors import BackendError

pytestmark = pytest.mark.timeout(60)


async def test_subscriptions_made_while_the_first_connection_opens_all_work(
    redis_server: RedisServer,
) -> None:
    # Regression: subscribing while the subscriber connection was still opening used to open a second
    # connection that nobody read, losing those subscriptions and everything sent to them.
    backend = RedisBackend(redis_server.url, group="race")
    await backend.start()
    try:
        topics = [f"t{i}" for i in range(20)]
        await asyncio.gather(*(backend.subscribe(topic) for topic in topics))
        for topic in topics:
            await backend.publish(topic, topic.encode())
        received: set[str] = set()
        async with asyncio.timeout(10):
            async for topic, data in backend.messages():
                assert data == topic.encode()
                received.add(topic)
                if received == set(topics):
                    break
        assert backend.health().state == "connected"
    finally:
        await backend.stop()


async def test_publish_fails_fast_while_redis_is_down(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, publish_timeout=0.5)
    await backend.start()
    try:
        await redis_server.kill()
        # Deadlines only: the publish gives up by itself, with the backend's own error (the
        # deadline's would be a TimeoutError), while Redis is still down; so does the subscription,
        # which returns without waiting for Redis to come back.
        async with asyncio.timeout(20):
            with pytest.raises(BackendError, match="publishing to Redis failed"):
                await backend.publish("b", b"x")
            await backend.subscribe("during-outage")
    finally:
        await backend.stop()


def test_configuration_errors() -> None:
    with pytest.raises(ConfigurationError):
        RedisBackend()
    with pytest.raises(ConfigurationError):
        RedisBackend("redis://127.0.0.1:1/0", group="bad:group")


@pytest.mark.slow
async def test_a_starved_subscriber_is_found_by_the_probe_and_replaced(redis_server: RedisServer) -> None:
    proxy = FaultProxy("127.0.0.1", redis_server.port)
    await proxy.start()
    backend = RedisBackend(
        f"redis://127.0.0.1:{proxy.port}/0", group="starve", probe_interval=0.3, probe_timeout=1.0
    )
    direct = redis_server.client()  # publishes around the proxy
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def collect() -> None:
        async for _topic, data in backend.messages():
            received.put_nowait(data)

    await backend.start()
    collector = asyncio.create_task(collect())
    try:
        await backend.subscribe("t")
        await direct.publish("starve:t", b"before")
        assert await asyncio.wait_for(received.get(), 5) == b"before"

        proxy.starve()  # the connections stay open, but nothing comes back on them any more

        async def publish_until_received() -> bytes:
            for n in range(200):
                await direct.publish("starve:t", f"after {n}".encode())
                try:
                    return await asyncio.wait_for(received.get(), 0.1)
                except TimeoutError:
                    pass
            raise AssertionError("delivery never resumed")

        assert (await asyncio.wait_for(publish_until_received(), 20)).startswith(b"after")
        health = backend.health()
        assert health.detail["probe_failures"] == 1
        assert health.reconnects >= 1
        assert health.state == "connected"
    finally:
        collector.cancel()
        await backend.stop()
        await direct.aclose()
        await proxy.stop()
