"""typed-ss's client (clients/js/ss.js) in a real browser: binary frames both ways and the ES module entry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.support import UTF8_EVENT, WAIT_MS, Pages, binary_app, http_url, wait_for_value
from tests.support import running

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120), pytest.mark.slow]


async def evaluate(page: Page, expression: str, arg: object = None) -> Any:
    """``page.evaluate`` of an async function, given at most WAIT_MS to settle."""
    async with asyncio.timeout(WAIT_MS / 1000):
        return await page.evaluate(expression, arg)


# Sends `data`, built in the page by the function's body, and returns what came back: its type and bytes.
ROUND_TRIP = """async ([event, build]) => {
    const data = new Function(build)();
    const reply = await roundTrip(event, data);
    return {type: Object.prototype.toString.call(reply), bytes: Array.from(new Uint8Array(reply))};
}"""


async def round_trip(page: Page, event: str, build: str) -> tuple[str, list[int]]:
    result = await evaluate(page, ROUND_TRIP, [event, build])
    return result["type"], result["bytes"]


async def test_binary_round_trip(pages: Pages) -> None:
    app = binary_app()
    async with running(app.app, app.ss) as url:
        page = await pages.open(http_url(url) + "/")
        await expect(page.locator("#status")).to_have_text("connected")
        every_byte = list(range(256))
        cases: list[tuple[str, list[int]]] = [
            ("return Uint8Array.from({length: 256}, (_, i) => i);", every_byte),
            ("return Uint8Array.from({length: 256}, (_, i) => 255 - i).buffer;", every_byte[::-1]),
            # Only the view's own window of a larger buffer is sent.
            ("return new Uint8Array(Uint8Array.of(9, 1, 2, 3, 9).buffer, 1, 3);", [1, 2, 3]),
            ("return new DataView(Uint8Array.of(0, 1, 2, 0x01, 0x02).buffer);", [0, 1, 2, 1, 2]),
            ("return new ArrayBuffer(0);", []),
        ]
        for build, expected in cases:
            kind, got = await round_trip(page, "echo", build)
            assert kind == "[object ArrayBuffer]", build
            assert got == expected, build
        assert [data for _, data in app.received] == [bytes(expected) for _, expected in cases]

        # 200 KiB of every byte value, in one frame each way.
        big = "return Uint8Array.from({length: 200 * 1024}, (_, i) => (i * 7) % 256);"
        kind, got = await round_trip(page, "echo", big)
        assert kind == "[object ArrayBuffer]"
        assert bytes(got) == bytes((i * 7) % 256 for i in range(200 * 1024))


async def test_utf8_event_name_in_binary_frames(pages: Pages) -> None:
    app = binary_app()
    async with running(app.app, app.ss) as url:
        page = await pages.open(http_url(url) + "/")
        kind, got = await round_trip(page, UTF8_EVENT, "return Uint8Array.of(0xc3, 0xa9, 2, 1);")
        # The server matched the UTF-8 name in the client's binary frame, and the client matched it in
        # the server's.
        assert (kind, got) == ("[object ArrayBuffer]", [0xC3, 0xA9, 2, 1])
        assert app.received == [(UTF8_EVENT, b"\xc3\xa9\x02\x01")]


async def test_es_module_entry_loads_and_works(pages: Pages) -> None:
    app = binary_app()
    async with running(app.app, app.ss) as url:
        page = await pages.open(http_url(url) + "/module.html")
        result = await wait_for_value(page, "window.moduleResult")
        assert isinstance(result, dict)
        assert result["type"] == "function"
        assert result["sameAsNamed"] is True
        assert result["sameAsGlobal"] is True  # ss.js run as a module still sets window.SS
        assert result["hasSSError"] is True
        assert result["replyIsArrayBuffer"] is True
        assert result["reply"] == [9, 8, 7, 1, 2]
        assert isinstance(result["id"], str)
        assert len(result["id"]) == 32  # from __hello
