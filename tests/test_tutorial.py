"""The tutorial (docs/tutorial.md) works as written: its app in-process, and its every step end to end."""

from __future__ import annotations

import importlib
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.support import connect_client, eventually, running
from tests.tutorial_run import (
    COMPILE,
    GEN_CLIENT,
    SERVE,
    Toolchain,
    check_chat,
    compile_page,
    copy_tutorial,
    generate_client,
    serve,
)
from typed_ss import Server

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "tutorial.md"


def test_the_tutorial_gives_the_commands_these_tests_run() -> None:
    text = DOC.read_text()
    for command in (
        " ".join(("typed-ss", *GEN_CLIENT)),
        " ".join(("npx tsc", *COMPILE)),
        " ".join(("typed-ss", *SERVE)),
    ):
        assert f"\n{command}" in text, (
            f"docs/tutorial.md no longer runs `{command}`: update tests/tutorial_run.py"
        )


async def test_the_tutorial_app_in_process() -> None:
    # A fresh module: its Server holds sockets and must not be shared between event loops.
    module = importlib.reload(importlib.import_module("examples.tutorial.app"))
    ss = module.ss
    assert isinstance(ss, Server)
    async with running(module.app, ss) as url:
        with pytest.raises(InvalidStatus) as refused:
            async with connect_client(url):
                pass
        assert refused.value.response.status_code == 403
        async with (
            connect_client(url, path="/socket?token=ann-token") as ann,
            connect_client(url, path="/socket?token=bob-token") as bob,
        ):
            assert (await ann.expect("welcome")).json() == {"name": "ann", "admin": True}
            assert (await bob.expect("welcome")).json() == {"name": "bob", "admin": False}
            await ann.send("join", '{"room": "lobby"}')
            assert (await ann.expect("line")).json() == {
                "room": "lobby",
                "author": None,
                "text": "ann joined",
            }
            await bob.send("say", '{"text": "not in a room yet"}')  # dropped: bob is in no room
            await bob.send("join", '{"room": "lobby"}')
            for client in (ann, bob):
                assert (await client.expect("line")).json()["text"] == "bob joined"
            await bob.send("say", '{"text": ""}')
            assert (await bob.expect("__error")).json()["code"] == "invalid_payload"
            async with httpx.AsyncClient(base_url=url.replace("ws://", "http://")) as http:
                posted = await http.post("/rooms/lobby/announce?token=ann-token", json={"text": "Tea"})
                assert posted.status_code == 204
            for client in (ann, bob):
                assert (await client.expect("line")).json() == {
                    "room": "lobby",
                    "author": "ann",
                    "text": "Tea",
                }
            assert set(module.sessions) == {ann.id, bob.id}  # filled in by on_connect
        await eventually(lambda: module.sessions == {})  # emptied by on_disconnect


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_the_tutorial_end_to_end(tmp_path: Path) -> None:
    tools = Toolchain.of_this_repository()
    project = copy_tutorial(tmp_path / "chat")
    generate_client(project, tools)
    main_js = compile_page(project, tools)
    async with serve(project, tools) as base:
        await check_chat(base, main_js, tools)
