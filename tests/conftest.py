"""Fixtures shared by every suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.backends.redis_server import RedisServer


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of the test's own on a free loopback port, killed by its PID afterwards."""
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
