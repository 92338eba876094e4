"""The chat demo in a real browser: two people join one room and talk."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

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


async def say(page: Page, text: str) -> None:
    await page.get_by_label("Message").fill(text)
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_label("Message")).to_have_value("")


async def test_two_pages_chat_in_one_room(pages: Pages) -> None:
    module, ss = fresh_module("examples.chat.app")
    async with running(module.app, ss) as url:
        ann = await pages.open(http_url(url) + "/")
        bob = await pages.open(http_url(url) + "/")
        stranger = await pages.open(http_url(url) + "/")  # stays in "global"
        await join(ann, "ann", "tea room")
        await join(bob, "bob", "tea room")
        await expect(ann.locator("#members")).to_have_text("(2 here)")
        await expect(stranger.locator("#current-room")).to_have_text("global")

        await say(ann, "hello from ann")
        for page in (bob, ann):  # the sender is in the room too
            await expect(page.locator("#messages li.message")).to_have_text(["ann: hello from ann"])
        await say(bob, "hi ann, bob here ✓")
        for page in (ann, bob):
            await expect(page.locator("#messages li.message")).to_have_text(
                ["ann: hello from ann", "bob: hi ann, bob here ✓"]
            )

        # Both room messages were delivered before the stranger speaks: had they gone to the stranger
        # too, they would be in its list before its own message comes back.
        await say(stranger, "anyone?")
        await expect(stranger.locator("#messages li.message")).to_have_text(["guest: anyone?"])
        await expect(ann.locator("#messages li.message")).to_have_count(2)

        for name, page in (("chat-ann", ann), ("chat-bob", bob)):
            shot = await screenshot(page, name)
            assert shot.stat().st_size > 0
