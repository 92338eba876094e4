"""The Redis multihome demo page in a real browser: two pages on two instances linked by a real Redis."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Page, expect

from examples.redis_multihome.app import create_app
from tests.backends.redis_server import RedisServer
from tests.browser.support import Pages, http_url, screenshot
from tests.support import eventually, running
from typed_ss import Server

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120), pytest.mark.slow]

NO_ID = "\N{EN DASH}"  # what the page shows while it has no socket id


@pytest_asyncio.fixture(loop_scope="module")
async def redis_url(tmp_path: Path) -> AsyncIterator[str]:
    server = RedisServer(tmp_path)
    await server.start()
    try:
        yield server.url
    finally:
        await server.kill()


def connected(ss: Server) -> bool:
    multihome = ss.health().multihome
    return multihome is not None and multihome.backend.state == "connected"


@asynccontextmanager
async def page_urls(redis_url: str, count: int) -> AsyncIterator[list[str]]:
    """The page URLs of ``count`` instances of the demo, each with its Redis subscriber connected."""
    async with AsyncExitStack() as stack:
        urls = []
        for _ in range(count):
            app, ss = create_app(redis_url)
            urls.append(http_url(await stack.enter_async_context(running(app, ss))) + "/")
            await eventually(functools.partial(connected, ss), within=10)
        yield urls


async def ready(page: Page) -> str:
    """Waits for the connection and the id from ``__hello``; returns the id."""
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(page.locator("#socket-id")).not_to_have_text(NO_ID)
    socket_id = await page.locator("#socket-id").text_content()
    assert socket_id
    return socket_id


async def test_two_pages_on_two_instances_cast_to_each_other(pages: Pages, redis_url: str) -> None:
    async with page_urls(redis_url, 2) as (url_a, url_b):
        ann = await pages.open(url_a)
        bob = await pages.open(url_b)
        await ready(ann)
        bob_id = await ready(bob)
        await expect(ann.locator("#instance")).to_have_text(url_a.removeprefix("http://").rstrip("/"))
        await expect(ann.locator("#backend")).to_contain_text("connected")

        # Binary payloads are UTF-8 both ways (the original's charCodeAt mangled anything past Latin-1).
        await ann.get_by_role("button", name="Echo bin").click()
        await expect(ann.locator("#messages li.echo .text")).to_have_text(["16 bytes: hello, world ✓"])

        for page in (ann, bob):
            await page.get_by_role("button", name="Join").click()
            await expect(page.locator("#messages li.echo .text").last).to_have_text("joined room: lobby")
            await expect(page.locator("#rooms")).to_have_text("lobby")
        await ann.get_by_role("button", name="Roomcast bin").click()
        for page in (ann, bob):
            await expect(page.locator("#messages li.roomcast .text")).to_have_text(["8 bytes: hi, room"])

        # Received text is shown as text: markup from another page stays inert.
        await ann.get_by_label("Broadcast text").fill("<b>bold</b> ✓")
        await ann.get_by_role("button", name="Broadcast JSON").click()
        for page in (ann, bob):
            await expect(page.locator("#messages li.broadcast .text")).to_have_text(
                ['{"message":"<b>bold</b> ✓"}']
            )
            await expect(page.locator("#messages b")).to_have_count(0)

        # Socketcast to the id the other page shows.
        await ann.get_by_label("Target socket id").fill(bob_id)
        await ann.get_by_role("button", name="Socketcast JSON").click()
        await expect(bob.locator("#messages li.socketcast .text")).to_have_text(
            [f'{{"socketId":"{bob_id}","data":"psst"}}']
        )
        await ann.get_by_role("button", name="Socketcast", exact=True).click()
        await expect(bob.locator("#messages li.socketcast .text")).to_have_count(2)
        await expect(ann.locator("#messages li.socketcast")).to_have_count(0)

        for name, page in (("redis-multihome-a", ann), ("redis-multihome-b", bob)):
            await screenshot(page, name)


async def test_get_weird_fires_random_actions_and_stops_by_itself(pages: Pages, redis_url: str) -> None:
    async with page_urls(redis_url, 1) as (url,):
        page = await pages.open()
        await page.clock.install()  # real time flows; fast_forward jumps ahead
        await page.goto(url)
        await ready(page)
        weird = page.locator("#weird")
        await weird.click()
        await expect(weird).to_have_text("Get Normal")
        await expect(weird).to_have_attribute("aria-pressed", "true")
        # Random actions come back as echoes and casts (socketcasts go to the page itself).
        replies = page.locator("#messages li.echo, #messages li.broadcast, #messages li.socketcast")
        await expect(replies.nth(4)).to_be_attached()
        await expect(page.locator("#weird-left")).to_contain_text("s left")

        await page.clock.fast_forward(61_000)  # a minute later, the next tick stops it
        await expect(weird).to_have_text("Get Weird!")
        await expect(weird).to_have_attribute("aria-pressed", "false")
        await expect(page.locator("#messages li.notice .text").last).to_have_text(
            "stopped by itself after 60 s"
        )

        await weird.click()  # and the toggle stops it by hand
        await expect(weird).to_have_text("Get Normal")
        await weird.click()
        await expect(weird).to_have_text("Get Weird!")
        await expect(page.locator("#messages li.notice .text").last).to_have_text("stopped")
        await expect(page.locator("#status")).to_have_text("connected")
