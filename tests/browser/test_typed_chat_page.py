"""The typed chat example in Chromium: the generated client (examples/typed_chat/static/generated) as
the page loads it, as an ES module, against the real example server."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, Route, expect

from tests.browser.support import Pages, fresh_module, http_url, screenshot
from tests.support import running

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120), pytest.mark.slow]


async def join(page: Page, name: str, room: str) -> None:
    await expect(page.locator("#status")).to_have_text("connected")
    await expect(page.locator("#current-room")).to_have_text("global")  # joined on connect
    await page.locator("#name").fill(name)
    await page.locator("#room").fill(room)
    await page.get_by_role("button", name="Join").click()
    await expect(page.locator("#current-room")).to_have_text(room)


async def test_two_pages_chat_through_the_generated_client(pages: Pages) -> None:
    module, ss = fresh_module("examples.typed_chat.app")
    async with running(module.app, ss) as url:
        ann = await pages.open(http_url(url) + "/")
        bob = await pages.open(http_url(url) + "/")
        await join(ann, "ann", "tea")
        await join(bob, "bob", "tea")
        await expect(ann.locator("#members")).to_have_text("(2 here)")

        # Typing sends a JSON string payload ("typing"), which the server only accepts quoted.
        await ann.get_by_label("Message").press_sequentially("hi")
        await expect(bob.locator("#activity")).to_have_text("ann is typing…")
        await ann.get_by_role("button", name="Send").click()
        for page in (ann, bob):
            await expect(page.locator("#messages li.message")).to_have_text(["ann: hi"])
        await expect(bob.locator("#activity")).to_have_text("")
        await expect(ann.locator("#messages li.error")).to_have_count(0)

        shot = await screenshot(bob, "typed-chat-bob")
        assert shot.stat().st_size > 0


async def test_a_page_from_an_older_contract_asks_for_a_reload(pages: Pages) -> None:
    module, ss = fresh_module("examples.typed_chat.app")
    current = ss.contract.fingerprint

    async def stale_client(route: Route) -> None:
        response = await route.fetch()
        body = (await response.text()).replace(current, "0" * 32)
        await route.fulfill(response=response, body=body)

    async with running(module.app, ss) as url:
        page = await pages.open()
        await page.route(re.compile(r".*/generated/ss\.client\.js$"), stale_client)
        await page.goto(http_url(url) + "/")
        await expect(page.locator("#status")).to_have_text("out of date")
        await expect(page.locator("#messages li.error")).to_have_text(
            ["This page is out of date: reload it to get the new version."]
        )
