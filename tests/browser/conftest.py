"""Browser tests: Debian's Chromium (/usr/bin/chromium) driven by Playwright for Python.

Playwright never downloads a browser here: it launches the system binary through ``executable_path``.
`make test` installs the ``chromium`` package when it is missing (scripts/ensure-system-packages). The
tests fail, never skip, without it.

Each test module runs in one event loop (``loop_scope="module"``) shared by its browser, its pages and
the servers it starts. Every wait is on a condition with a timeout; every test has a hard timeout.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from tests.browser.support import CHROMIUM_ARGS, Pages, chromium_path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def pages(browser: Browser) -> AsyncIterator[Pages]:
    """Pages for one test; closed after it, failing the test if any page had an uncaught error."""
    opened = Pages(browser)
    try:
        yield opened
    finally:
        await opened.close()
