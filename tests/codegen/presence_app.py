"""A server with presence on (``Server(presence=...)``), for the generated clients' presence API.

Its generated clients are checked against golden files (``tests/codegen/golden/presence``), compiled by
tsc with ``tests/codegen/ts/presence_ok.ts`` (and the ``fail/presence_*.ts`` files that must not compile),
driven end to end under node (``tests/codegen/e2e_presence.mjs``) and from Python
(tests/codegen/test_presence_codegen.py); its AsyncAPI document is validated by tests/test_asyncapi.py.
Each socket says who it is in the ``?user=`` query; ``chat:`` rooms are tracked, and only a room's
members may list it, except that ``?user=admin`` may list any room.

    python -m tests.serve tests.codegen.presence_app:app
"""

from __future__ import annotations

from typing import Literal

import msgspec
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import WebSocketRoute

from typed_ss import Presence, Server, Socket


class Card(msgspec.Struct, kw_only=True):
    """What the other members see of a socket."""

    name: str
    status: Literal["online", "away"] = "online"
    """Set by the ``away`` event."""


class User(msgspec.Struct, frozen=True):
    name: str


def card_of(sock: Socket[User]) -> Card:
    return Card(name=sock.identity.name)


def visible(sock: Socket[User], room: str) -> bool:
    """Who may list a room's members: its members, and ``admin``."""
    return sock.identity.name == "admin" or sock.in_room(room)


def presence_server() -> Server[User]:
    """A fresh server with this module's contract (tests that need one of their own)."""
    presence = Presence(Card, card_of, tracked=lambda room: room.startswith("chat:"), visible=visible)
    ss: Server[User] = Server(presence=presence)

    @ss.authenticate
    async def authenticate(request: HTTPConnection) -> User:
        return User(request.query_params.get("user", "anon"))

    @ss.on("join")
    async def join(sock: Socket[User], room: str) -> None:
        await sock.join(room)

    @ss.on("leave")
    async def leave(sock: Socket[User], room: str) -> None:
        await sock.leave(room)

    @ss.on("away")
    async def away(sock: Socket[User], _: None) -> None:
        """Shown as away from now on (to later queries: no event is sent for the change)."""
        presence.set(sock, Card(name=sock.identity.name, status="away"))

    return ss


def make_app(ss: Server[User]) -> Starlette:
    return Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)


ss = presence_server()
app = make_app(ss)
