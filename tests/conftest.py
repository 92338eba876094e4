"""Fixtures shared by every suite, and the ``slow`` marks of the suites that do not carry their own."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.backends.redis_server import RedisServer

# The built, installed artefacts (module-scoped fixtures), for tests/test_packaging.py and
# tests/test_installed.py: made only by the tests that ask for them.
from tests.installed import dist, npm_project, venv  # noqa: F401

SLOW_MODULES = frozenset({"tests/backends/test_grpc_mesh.py", "tests/test_grpc_example.py"})
"""Suites that start gRPC node processes and break them: ``slow`` (tests/README.md), marked from here
as their files do not say so themselves."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.partition("::")[0] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _process_state_restored() -> Iterator[None]:
    """Undo what a test changes for its whole worker process, so that no test depends on which ran
    before it there (``make pytest`` runs tests in several workers, in an order that varies): the
    recursion limit, which mypy's API raises to 16384 (tests/test_typing.py) and below which the
    nesting bombs of tests/test_handlers.py and tests/test_bad_input.py must fail."""
    recursion_limit = sys.getrecursionlimit()
    yield
    sys.setrecursionlimit(recursion_limit)


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of the test's own on a free loopback port, killed by its PID afterwards."""
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server
    finally:
        await server.kill()
