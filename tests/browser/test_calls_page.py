"""Calls both ways in Chromium, through a generated client (``--lang js``) as a page imports it: the page
calls the server's handlers and awaits their typed replies, and answers the server's call of ``confirm``
through ``client.handle`` once the person on the page clicks a button."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from playwright.async_api import Page, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute

from tests.browser.support import WAIT_MS, Pages, http_url, page
from tests.support import running
from typed_ss import HandlerError, Server, Socket
from typed_ss.codegen import generate

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120), pytest.mark.slow]


class AddQuery(msgspec.Struct):
    a: int
    b: int = 0


class AddResult(msgspec.Struct):
    sum: int


class Question(msgspec.Struct):
    text: str


class Answer(msgspec.Struct):
    yes: bool
    reason: str = ""


PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>typed-ss: calls</title></head>
<body>
  <p>Status: <span id="status">connecting</span></p>
  <p>Question: <span id="question"></span></p>
  <button id="yes">Yes</button> <button id="no">No</button>
  <script type="module">
    import { connect } from "/generated/ss.client.js";

    const client = connect("ws://" + location.host + "/socket");
    window.client = client;
    const status = document.getElementById("status");
    const question = document.getElementById("question");
    client.onConnect(() => (status.textContent = "connected"));
    // The server's call waits for the person on the page.
    client.handle.confirm((q) => new Promise((resolve) => {
      question.textContent = q.text;
      const answer = (reply) => () => {
        question.textContent = "";
        resolve(reply);
      };
      document.getElementById("yes").onclick = answer({ yes: true });
      document.getElementById("no").onclick = answer({ yes: false, reason: "not now" });
    }));
    // Keeps a call's outcome where the test can read it: {value} or {error: {name, code, message, data}}.
    window.track = (promise) => promise.then(
      (value) => ({ value }),
      (e) => ({ error: { name: e.name, code: e.code, message: e.message, data: e.data, event: e.event } }),
    );
  </script>
</body>
</html>
"""


def calls_app() -> tuple[Starlette, Server, list[Answer]]:
    ss = Server()
    answers: list[Answer] = []
    confirm = ss.event("confirm", Question, reply=Answer)

    @ss.on("add")
    async def add(sock: Socket, q: AddQuery) -> AddResult:
        return AddResult(q.a + q.b)

    @ss.on("upper")
    async def upper(sock: Socket, text: str) -> str:
        return text.upper()

    @ss.on("reverse")
    async def reverse(sock: Socket, data: bytes) -> bytes:
        return data[::-1]

    @ss.on("refuse")
    async def refuse(sock: Socket, room: str) -> None:
        raise HandlerError("not_found", f"no room {room}", data={"room": room})

    @ss.on("ask")
    async def ask(sock: Socket, text: str) -> Answer:
        answer = await confirm.call(sock, Question(text), timeout=30.0)
        answers.append(answer)
        return answer

    files = {f.name: f.text for f in generate(ss.contract, "js", "tests.browser.test_calls_page")}

    async def generated(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in files:
            return Response(status_code=404)
        return Response(files[name], media_type="text/javascript")

    routes = [
        WebSocketRoute("/socket", ss),
        page("/", PAGE),
        Route("/generated/{name}", generated),
    ]
    return Starlette(routes=routes, lifespan=ss.lifespan), ss, answers


async def evaluate(page: Page, expression: str, arg: object = None) -> Any:
    """``page.evaluate`` of an async function, given at most WAIT_MS to settle."""
    async with asyncio.timeout(WAIT_MS / 1000):
        return await page.evaluate(expression, arg)


async def test_the_page_calls_the_server_and_gets_typed_replies(pages: Pages) -> None:
    app, ss, _ = calls_app()
    async with running(app, ss) as url:
        tab = await pages.open(http_url(url) + "/")
        await expect(tab.locator("#status")).to_have_text("connected")
        result = await evaluate(
            tab,
            """async () => ({
                add: await track(client.call.add({ a: 1, b: 2 })),
                defaulted: await track(client.call.add({ a: 5 })),
                upper: await track(client.call.upper("tea")),
                reverse: await track(client.call.reverse(Uint8Array.of(1, 2, 3)).then((buffer) => [
                    Object.prototype.toString.call(buffer),
                    Array.from(new Uint8Array(buffer)),
                ])),
                blob: await track(client.call.reverse(new Blob([Uint8Array.of(4, 5)])).then(
                    (buffer) => Array.from(new Uint8Array(buffer)))),
                refuse: await track(client.call.refuse("kitchen")),
                invalid: await track(client.call.add({ a: "one" })),
            })""",
        )
        assert result["add"] == {"value": {"sum": 3}}
        assert result["defaulted"] == {"value": {"sum": 5}}
        assert result["upper"] == {"value": "TEA"}
        assert result["reverse"] == {"value": ["[object ArrayBuffer]", [3, 2, 1]]}
        assert result["blob"] == {"value": [5, 4]}
        assert result["refuse"] == {
            "error": {
                "name": "ServerError",
                "code": "not_found",
                "message": "no room kitchen",
                "data": {"room": "kitchen"},
                "event": "refuse",
            }
        }
        assert result["invalid"]["error"]["name"] == "ServerError"
        assert result["invalid"]["error"]["code"] == "invalid_payload"


async def test_the_page_answers_the_servers_call_through_handle(pages: Pages) -> None:
    app, ss, answers = calls_app()
    async with running(app, ss) as url:
        tab = await pages.open(http_url(url) + "/")
        await expect(tab.locator("#status")).to_have_text("connected")
        await evaluate(tab, "() => { window.asked = track(client.call.ask('Tea?', { timeout: 20000 })); }")
        # The server's handler now waits for the page's answer, and the page for its user.
        await expect(tab.locator("#question")).to_have_text("Tea?")
        await tab.get_by_role("button", name="Yes").click()
        assert await evaluate(tab, "() => window.asked") == {"value": {"yes": True, "reason": ""}}
        await expect(tab.locator("#question")).to_have_text("")
        assert answers == [Answer(yes=True)]


async def test_a_call_that_outlives_its_timeout_fails_and_its_late_reply_is_dropped(pages: Pages) -> None:
    app, ss, answers = calls_app()
    async with running(app, ss) as url:
        tab = await pages.open(http_url(url) + "/")
        await expect(tab.locator("#status")).to_have_text("connected")
        # Nobody answers the question before the page's call gives up.
        timed_out = await evaluate(tab, "() => track(client.call.ask('Coffee?', { timeout: 50 }))")
        assert timed_out["error"]["name"] == "CallTimeout"
        assert timed_out["error"]["event"] == "ask"
        await expect(tab.locator("#question")).to_have_text("Coffee?")
        await tab.get_by_role("button", name="No").click()
        # The server got the answer; its reply to the call that timed out is dropped, and the next
        # call (handled after it) is answered as usual.
        assert await evaluate(tab, "() => track(client.call.upper('after'))") == {"value": "AFTER"}
        assert answers == [Answer(yes=False, reason="not now")]
        closed = await evaluate(tab, "() => { client.close(); return track(client.call.upper('x')); }")
        assert closed["error"]["name"] == "Disconnected"
