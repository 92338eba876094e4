"""The examples run as documented: the issue's code block unchanged, and the chat demo."""

from __future__ import annotations

import importlib
from types import ModuleType

import httpx

from tests.support import connect_client, running
from typed_ss import Server


def load(name: str) -> tuple[ModuleType, Server]:
    # A fresh module per test: a Server holds its sockets and must not be shared between event loops.
    module = importlib.reload(importlib.import_module(name))
    server = module.ss
    assert isinstance(server, Server)
    return module, server


async def test_quickstart_echo_join_and_chat() -> None:
    module, ss = load("examples.quickstart")
    async with running(module.app, ss) as url, connect_client(url) as a, connect_client(url) as b:
        await a.send("echo", "hi")
        assert (await a.expect("echo")).payload == b"hi"
        for client in (a, b):
            await client.send("join", "lobby")
        await b.send("chat", '{"room": "lobby", "text": "hello"}')
        for client in (a, b):
            assert (await client.expect("chat")).json() == {"room": "lobby", "text": "hello"}
        await b.send("chat", '{"room": "lobby"}')
        assert (await b.expect("__error")).json()["code"] == "invalid_payload"


async def test_chat_demo_serves_its_page_and_the_client_and_chats() -> None:
    module, ss = load("examples.chat.app")
    async with running(module.app, ss) as url:
        http = url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=http) as web:
            page = await web.get("/")
            assert page.status_code == 200
            assert '<script src="ss.js"></script>' in page.text
            script = await web.get("/ss.js")
            assert script.status_code == 200
            assert "sac-sock" in script.text
        async with connect_client(url) as ann, connect_client(url) as bob:
            for client in (ann, bob):
                await client.send("join", "tea")
                assert (await client.expect("joinedRoom")).payload == "tea"
            presence = (await ann.expect("presence")).json()
            assert presence["room"] == "tea"
            await ann.expect("presence")  # bob joined
            assert (await bob.expect("presence")).json()["members"] == 2
            await ann.send("message", '{"Room": "tea", "Message": "ann: hi"}')
            for client in (ann, bob):
                frame = await client.expect("message")
                assert (frame.letter, frame.payload) == ("S", "ann: hi")
            await bob.send("join", "coffee")  # leaves tea: ann is told
            assert (await bob.expect("joinedRoom")).payload == "coffee"
            assert (await bob.expect("presence")).json()["room"] == "coffee"
            left = (await ann.expect("presence")).json()
            assert (left["room"], left["members"]) == ("tea", 1)
