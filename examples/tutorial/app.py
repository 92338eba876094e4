# region imports
"""A typed chat inside a FastAPI application: the code of docs/tutorial.md, step by step.
From this directory:

    typed-ss gen-client app:ss --out web/generated   # the page's typed client
    npx tsc -p web                                   # the page: web/main.ts to web/main.js
    typed-ss run app:app                             # http://127.0.0.1:8080/?token=ann-token
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from typed_ss import Server, Socket, run

# endregion

# region identity


class User(msgspec.Struct, frozen=True):
    """Who is connected: what the authenticate hook returns, and every handler gets as sock.identity."""

    name: str
    admin: bool = False


USERS: dict[str, User] = {}
"""The users, by token: filled when the app starts (a real app asks its database or session store)."""


def user_of(request: HTTPConnection) -> User | None:
    """The user a request's token names, from ``?token=`` or the ``token`` cookie; None if unknown.

    HTTPConnection is what a WebSocket upgrade and an HTTP request have in common, so the sockets and
    the HTTP routes share this one check."""
    token = request.query_params.get("token") or request.cookies.get("token")
    return USERS.get(token or "")


ss = Server[User]()  # sock.identity is a User in every handler and hook


@ss.authenticate
async def authenticate(request: HTTPConnection) -> User | None:
    """Runs before the upgrade is accepted: None refuses it with HTTP 403."""
    return user_of(request)


# endregion

# region events


class Join(msgspec.Struct):
    """Move to a room."""

    room: Annotated[str, msgspec.Meta(min_length=1, max_length=50)]


class Say(msgspec.Struct):
    """A line for the room the sender is in."""

    text: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class Line(msgspec.Struct):
    """A line as a room receives it; the author is None in the server's own lines."""

    room: str
    author: str | None
    text: str


welcome = ss.event("welcome", User)  # sent to each socket when it connects: who the server says it is
line = ss.event("line", Line)  # a line, sent to a room

# endregion

# region state


@dataclass
class Session:
    """What the server keeps for one connection besides its identity: it changes while connected."""

    room: str | None = None


sessions: dict[str, Session] = {}
"""Each connected socket's session, by socket id."""


@ss.on_connect
async def connected(sock: Socket[User]) -> None:
    sessions[sock.id] = Session()  # before the socket's first message is handled
    await welcome.emit(sock, sock.identity)


@ss.on_disconnect
async def disconnected(sock: Socket[User]) -> None:
    session = sessions.pop(sock.id, None)  # None if the connection ended before on_connect ran
    if session is not None and session.room is not None:
        await line.roomcast(session.room, Line(session.room, None, f"{sock.identity.name} left"))


# endregion

# region handlers


@ss.on("join")
async def join(sock: Socket[User], request: Join) -> None:
    """Move to a room, leaving the one the socket was in; the room is told."""
    session = sessions[sock.id]
    if session.room is not None:
        await sock.leave(session.room)
    await sock.join(request.room)
    session.room = request.room
    await line.roomcast(request.room, Line(request.room, None, f"{sock.identity.name} joined"))


@ss.on("say")
async def say(sock: Socket[User], request: Say) -> None:
    """Say something in the socket's room."""
    room = sessions[sock.id].room
    if room is not None:
        await line.roomcast(room, Line(room, sock.identity.name, request.text))


# endregion

# region app


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The app's own start-up and shutdown code. The socket server runs inside them: it starts once the
    users are loaded, and has closed every socket before they are dropped."""
    USERS.update({"ann-token": User("ann", admin=True), "bob-token": User("bob")})  # your database here
    yield
    USERS.clear()


app = FastAPI(lifespan=lifespan)
ss.mount(app, "/socket")  # the WebSocket route, and the server started and stopped with the app
app.router.routes.append(ss.client_route("/ss.js"))  # the plain client, for pages without a build step


async def signed_in(request: Request) -> User:
    """The user of an HTTP request, for routes that need one: the same tokens as the sockets."""
    user = user_of(request)
    if user is None:
        raise HTTPException(401, "unknown token")
    return user


class Announcement(BaseModel):
    """The body of ``POST /rooms/{room}/announce``."""

    text: str


@app.post("/rooms/{room}/announce", status_code=204)
async def announce(room: str, body: Announcement, user: Annotated[User, Depends(signed_in)]) -> None:
    """Post a line to the sockets in a room, from HTTP: a form, a webhook, another service."""
    if not user.admin:
        raise HTTPException(403, "only admins announce")
    await line.roomcast(room, Line(room, user.name, body.text))


# Last: it answers every path the routes above do not, with the page and its scripts.
app.mount("/", StaticFiles(directory=Path(__file__).parent / "web", html=True), name="web")

if __name__ == "__main__":
    run(app, ss)  # the same as `typed-ss run app:app`

# endregion
