"""Server: the application's object: handlers, declared events and hooks, limits, casts, health,
start-up and shutdown; and the ASGI app (``ss`` itself).

Each connection's life (the handshake checks, ``__hello``, hooks, messages, teardown) belongs to a
:class:`~typed_ss.connection.Connection`; :meth:`Server.serve` starts one per transport connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar, get_args, overload

from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import Receive, Scope, Send

from typed_ss import asgi
from typed_ss.backends.base import Backend
from typed_ss.calls import NO_REPLY
from typed_ss.cluster.api import Cluster, Listed, MembersQuestion, Presence
from typed_ss.cluster.control import ControlPlane
from typed_ss.cluster.roster import Roster
from typed_ss.connection import Connection
from typed_ss.contract import Contract, EventContract, check_describable
from typed_ss.errors import (
    CloseCode,
    ConfigurationError,
    HandlerError,
    HandlerSignatureError,
    InvalidName,
)
from typed_ss.events import PayloadFrames, ServerEvent
from typed_ss.handlers import (
    Handler,
    HandlerSpec,
    build_decoder,
    build_text_decoder,
    inspect_handler,
    is_async_callable,
)
from typed_ss.health import MultihomeHealth, ServerHealth, TaskHealth
from typed_ss.hub import Hub
from typed_ss.limits import KiB, Limits
from typed_ss.logs import ClientLog
from typed_ss.multihome import Multihome
from typed_ss.origin import HandshakePolicy
from typed_ss.protocol import (
    MEMBERS_EVENT,
    Frame,
    check_event_name,
    check_room_name,
    encode_frame,
    socket_room,
)
from typed_ss.recovery import Recovery
from typed_ss.recovery.recoverer import Recoverer
from typed_ss.socket import Identity, Socket
from typed_ss.supervision import Supervised
from typed_ss.transport import Transport

__all__ = ["AuthHook", "ContractCheck", "Hooks", "Limits", "Server", "SocketHook"]

logger = logging.getLogger("typed_ss")

M = TypeVar("M")
SocketHook: TypeAlias = Callable[[Socket[Any]], Coroutine[Any, Any, None]]
"""``on_connect`` / ``on_disconnect`` hooks: ``async def hook(sock: Socket) -> None``."""
AuthHook: TypeAlias = Callable[[HTTPConnection], Awaitable[Any | None]]
"""The authentication hook: ``async def auth(request) -> identity``; ``None`` refuses the upgrade."""
_I = TypeVar("_I")  # the aliases' own identity variable: one with a default cannot come before M
_R = TypeVar("_R")  # what a handler returns: its reply to a call
_TypedHandler: TypeAlias = Callable[[Socket[_I], M], Coroutine[Any, Any, _R]]
_TypedHook: TypeAlias = Callable[[Socket[_I]], Coroutine[Any, Any, None]]
_Hook = TypeVar("_Hook", bound=Callable[..., Awaitable[Any]])
T = TypeVar("T")
R = TypeVar("R")
ContractCheck: TypeAlias = Literal["off", "warn", "refuse"]
"""What the server does when a generated client's contract fingerprint differs from its own."""

_DEFAULTS: Final = Limits()
MAX_REMEMBERED_EVENTS: Final = 4096
"""Event names whose encoder the server keeps (:meth:`Server.encoder`); past it, a name is checked
on every emit, so a server emitting client-chosen names holds no more."""


@dataclass
class Hooks:
    """The hooks registered with ``@ss.authenticate``, ``@ss.on_connect`` and ``@ss.on_disconnect``."""

    authenticate: AuthHook | None = None
    on_connect: SocketHook | None = None
    on_disconnect: SocketHook | None = None


class Server(Generic[Identity]):
    """An event-based WebSocket server; an ASGI app serving ``websocket`` and ``lifespan`` scopes.

    Generic in the type of ``sock.identity``: ``ss = Server[User]()`` makes mypy check that the
    authenticate hook returns ``User | None`` and gives handlers and hooks a ``Socket[User]``. A plain
    ``Server()`` is a ``Server[Any]``.

    Mount it with ``WebSocketRoute("/socket", ss)`` and ``Starlette(lifespan=ss.lifespan)``, or serve it
    alone with ``uvicorn module:ss``.

    Args:
        max_message_size, send_queue_bytes, send_timeout, max_event_name_length, max_room_name_length,
            max_rooms_per_socket, shutdown_timeout, max_connections, handshake_timeout,
            read_ahead_messages, max_calls: see :class:`Limits`.
        allowed_origins: origins (``"https://app.example.com"``) allowed besides the server's own;
            ``["*"]`` allows every origin. Browsers from other origins are refused with HTTP 403.
            The server's own origin is the ``Host`` header with the request's scheme (``http://``
            for ``ws``, ``https://`` for ``wss``, from the ASGI scope). Behind a proxy that
            terminates TLS, run uvicorn with ``proxy_headers`` trusting the proxy
            (``forwarded_allow_ips``) so the scope says ``wss``, or list the public origin here.
        allowed_hosts: the hosts the ``Host`` header may name (``["chat.example.com",
            "127.0.0.1:8080", "*.example.com"]``: without a port any port, ``*.`` every subdomain);
            other requests are refused with HTTP 403 before the upgrade. ``None`` (the default)
            checks no host; a deployment that browsers can reach should set it, since without it a
            DNS-rebinding page (``http://evil.example`` resolving to this server) is same-origin
            with itself. Behind a proxy the ``Host`` header is the one the proxy forwards: have it
            pass the client's (nginx: ``proxy_set_header Host $host``) and list the public names.
            See :mod:`typed_ss.origin`.
        backend: a multihome backend (``typed_ss.backends``): broadcasts, roomcasts and
            socketcasts then reach the sockets of every instance that shares it. Started and stopped
            with the server; see ``docs/multihome.md``.
        instance_id: this instance's name on the backend (default: random per ``Server``). A stable
            name (the host and port, say) lets the other instances recognise a restart of this one
            by its new boot epoch.
        presence: each socket's presence payload, the rooms whose members are told of joins and
            leaves, and who may list a room's members (:class:`~typed_ss.cluster.api.Presence`;
            docs/presence.md). Queries and actions across instances (``ss.cluster``) work without it.
        contract_check: what to do when a generated client was built from a different contract
            (it sends its fingerprint when it connects): ``"warn"`` logs it (the default),
            ``"refuse"`` closes the socket with 4010 so the client asks for a reload, ``"off"``
            ignores it. Clients that send no fingerprint (the plain ss.js) are never checked.
    """

    def __init__(
        self,
        *,
        max_message_size: int = _DEFAULTS.max_message_size,
        send_queue_bytes: int = _DEFAULTS.send_queue_bytes,
        send_timeout: float = _DEFAULTS.send_timeout,
        max_event_name_length: int = _DEFAULTS.max_event_name_length,
        max_room_name_length: int = _DEFAULTS.max_room_name_length,
        max_rooms_per_socket: int = _DEFAULTS.max_rooms_per_socket,
        shutdown_timeout: float = _DEFAULTS.shutdown_timeout,
        max_connections: int = _DEFAULTS.max_connections,
        handshake_timeout: float = _DEFAULTS.handshake_timeout,
        read_ahead_messages: int = _DEFAULTS.read_ahead_messages,
        max_calls: int = _DEFAULTS.max_calls,
        allowed_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] | None = None,
        contract_check: ContractCheck = "warn",
        backend: Backend | None = None,
        instance_id: str | None = None,
        recovery: Recovery | None = None,
        presence: Presence[Any] | None = None,
    ) -> None:
        self.limits: Final = Limits(
            max_message_size=max_message_size,
            send_queue_bytes=send_queue_bytes,
            send_timeout=send_timeout,
            max_event_name_length=max_event_name_length,
            max_room_name_length=max_room_name_length,
            max_rooms_per_socket=max_rooms_per_socket,
            shutdown_timeout=shutdown_timeout,
            max_connections=max_connections,
            handshake_timeout=handshake_timeout,
            read_ahead_messages=read_ahead_messages,
            max_calls=max_calls,
        )
        self.handshake: Final = HandshakePolicy(allowed_origins, allowed_hosts)
        """The rules the ``Origin`` and ``Host`` of each upgrade request must pass."""
        if contract_check not in ("off", "warn", "refuse"):
            raise ConfigurationError(
                f"contract_check must be 'off', 'warn' or 'refuse', not {contract_check!r}"
            )
        self.contract_check: Final = contract_check
        self.hub: Final = Hub()
        self._handlers: dict[str, HandlerSpec] = {}
        self._events: dict[str, ServerEvent[Any, Any]] = {}
        self._contract: Contract | None = None
        self.hooks: Final = Hooks()
        self._accepting = True
        self._connections: set[asyncio.Task[Any]] = set()
        self._transport_tasks: list[Supervised] = []  # the native transport's keepalive
        self.backend: Final = backend
        self.instance_id: Final = instance_id
        self._multihome: Multihome | None = None
        self._starting: asyncio.Lock | None = None
        self._identity_checked = False
        self.encoders: Final[dict[str, Callable[[Any], Frame]]] = {}
        """Internal: how each event name emitted so far is encoded (:meth:`encoder` fills it); emits
        repeat a handful of names, so each is checked once. Sockets read it on every emit."""
        self.client_log: Final = ClientLog(logger)
        """Where lines about what clients cause go: rate-limited per kind (:mod:`typed_ss.logs`)."""
        self.recovery: Final = (
            None
            if recovery is None
            else Recoverer(recovery, self.client_log, send_queue_bytes, released=self.hub.released)
        )
        """Connection state recovery, when it is on (``recovery=Recovery(...)``; docs/recovery.md)."""
        self.hub.recorder = self.recovery
        roster = Roster(self.hub, presence)
        self.hub.roster = roster
        self._control = ControlPlane(roster)
        # Named from the start (random per Server unless given): ss.cluster answers with it before
        # the backend starts too, and a Server started again is the same instance, in a new epoch.
        self._control.name(instance_id or secrets.token_hex(8))
        self.cluster: Final = Cluster(self._control, presence)
        """Queries and actions across every instance sharing the backend (docs/presence.md)."""
        self.presence: Final = presence
        if presence is not None:
            check_describable(MEMBERS_EVENT, presence.payload, "server_to_client")
            self._handlers[MEMBERS_EVENT] = _members_handler(presence, self.limits.max_room_name_length)

    # --- registration ------------------------------------------------------------------------------

    @overload
    def on(
        self, event: str
    ) -> Callable[[_TypedHandler[Identity, M, _R]], _TypedHandler[Identity, M, _R]]: ...

    @overload
    def on(
        self, event: str, model: type[M]
    ) -> Callable[[_TypedHandler[Identity, M, _R]], _TypedHandler[Identity, M, _R]]: ...

    def on(self, event: str, model: type[Any] | None = None) -> Callable[[Handler[Any]], Handler[Any]]:
        """Register the handler for a client event.

        The payload type comes from the handler's annotation (``bytes`` raw, ``str`` UTF-8 text, a
        msgspec type or a pydantic model validated from JSON) or from ``model``. The decoder is built
        here, once.

        Raises:
            InvalidName: the event name is reserved (``__...``), empty, too long or has 0x01/0x02.
            HandlerSignatureError: the handler is not ``async def (sock, payload) -> None``, or its
                annotation contradicts ``model`` or cannot be decoded.
            ConfigurationError: the event already has a handler.
        """
        check_event_name(event, self.limits.max_event_name_length)

        def register(handler: Handler[M]) -> Handler[M]:
            existing = self._handlers.get(event)
            if existing is not None:
                raise ConfigurationError(
                    f"event {event!r} already has a handler ({_qualname(existing.handler)}); "
                    "one handler per event: branch inside it, or use another event name"
                )
            spec = inspect_handler(event, handler, model)
            check_describable(event, spec.payload_type, "client_to_server")
            # Its return value is its reply to a call: checked and encoded as declared events are.
            build_decoder(event, spec.reply_type, "(the handler's return annotation)")
            check_describable(event, spec.reply_type, "server_to_client")
            spec = dataclasses.replace(spec, reply=PayloadFrames(event, spec.reply_type))
            self._handlers[event] = spec
            self._contract = None
            return handler

        return register

    @overload
    def event(self, name: str, payload_type: type[T]) -> ServerEvent[T, None]: ...

    @overload
    def event(self, name: str, payload_type: type[T], *, reply: type[R]) -> ServerEvent[T, R]: ...

    @overload
    def event(self, name: str, payload_type: object) -> ServerEvent[Any, None]: ...

    @overload
    def event(self, name: str, payload_type: object, *, reply: object) -> ServerEvent[Any, Any]: ...

    def event(self, name: str, payload_type: object, *, reply: object = NO_REPLY) -> ServerEvent[Any, Any]:
        """Declare an event the server sends, and get its typed emitter.

        ``chat_out = ss.event("chat", ChatOut)`` gives a ``ServerEvent[ChatOut]``:
        ``await chat_out.emit(sock, ChatOut(...))``, ``.roomcast(room, ...)``, ``.broadcast(...)``,
        ``.socketcast(socket_id, ...)``; mypy rejects any other payload. For a type that is not a
        class (a union, a ``Literal``), annotate the variable:
        ``presence: ServerEvent[Join | Leave] = ss.event("presence", Join | Leave)``.

        With ``reply``, the event is a call the client answers: ``ask = ss.event("confirm",
        Question, reply=Answer)``, then ``answer = await ask.call(sock, Question(...))`` is an
        ``Answer`` (see :meth:`Socket.call`).

        Raises:
            InvalidName: a reserved, empty or too long name, or one with 0x01/0x02.
            ConfigurationError: the event is already declared.
            HandlerSignatureError: the payload type has no JSON form.
        """
        check_event_name(name, self.limits.max_event_name_length)
        if name in self._events:
            raise ConfigurationError(f"the server event {name!r} is already declared")
        build_decoder(name, payload_type, "(declared with ss.event)")  # refuses types with no JSON form
        check_describable(name, payload_type, "server_to_client")
        if reply is not NO_REPLY:
            build_decoder(name, reply, "(the reply type declared with ss.event)")
            check_describable(name, reply, "client_to_server")
        declared: ServerEvent[Any, Any] = ServerEvent(self, name, payload_type, reply)
        self._events[name] = declared
        self.encoders.pop(name, None)  # emitted before it was declared: encoded as declared from now
        self._contract = None
        return declared

    @property
    def contract(self) -> Contract:
        """The typed contract: every handled and declared event with its payload type, and the
        presence payload type when presence is on (``presence=``)."""
        if self._contract is None:
            self._contract = Contract.of(
                [
                    *(
                        EventContract(
                            name,
                            "client_to_server",
                            spec.payload_type,
                            inspect.getdoc(spec.handler),
                            reply=spec.reply_type,
                        )
                        for name, spec in self._handlers.items()
                        if name != MEMBERS_EVENT  # the protocol's own, not the application's
                    ),
                    *(
                        EventContract(name, "server_to_client", e.payload_type, reply=e.reply_type)
                        for name, e in self._events.items()
                    ),
                ],
                presence=None if self.presence is None else self.presence.payload,
            )
        return self._contract

    @property
    def handlers(self) -> Mapping[str, HandlerSpec]:
        """The registered events and their handlers, payload types and decoders."""
        return dict(self._handlers)

    @property
    def handlers_by_event(self) -> Mapping[str, HandlerSpec]:
        """The live registry of handlers, for the read loop: the dict itself, typed read-only (a
        ``MappingProxyType`` would cost a call more per message)."""
        return self._handlers

    def on_connect(self, hook: _TypedHook[Identity]) -> _TypedHook[Identity]:
        """Register ``async def hook(sock) -> None``, run after ``__hello`` and before the socket's first
        message is handled. If it raises, the socket is closed with 1011."""
        self.hooks.on_connect = self._register_hook("on_connect", self.hooks.on_connect, hook)
        return hook

    def on_disconnect(self, hook: _TypedHook[Identity]) -> _TypedHook[Identity]:
        """Register ``async def hook(sock) -> None``, run once the connection has ended; ``sock.rooms``
        still lists the rooms the socket was in."""
        self.hooks.on_disconnect = self._register_hook("on_disconnect", self.hooks.on_disconnect, hook)
        return hook

    def authenticate(
        self, hook: Callable[[HTTPConnection], Awaitable[Identity | None]]
    ) -> Callable[[HTTPConnection], Awaitable[Identity | None]]:
        """Register ``async def hook(request) -> identity``, run before the upgrade is accepted.

        ``request`` is the upgrade request (headers, cookies, query parameters, client address).
        Returning ``None`` refuses the connection with HTTP 403; anything else is stored as
        ``sock.identity``. If the hook raises, the connection is refused with HTTP 500.
        """
        self.hooks.authenticate = self._register_hook("authenticate", self.hooks.authenticate, hook)
        return hook

    @staticmethod
    def _register_hook(name: str, existing: _Hook | None, hook: _Hook) -> _Hook:
        if existing is not None:
            raise ConfigurationError(f"a {name} hook is already registered ({_qualname(existing)})")
        try:
            inspect.signature(hook).bind(None)
            takes_one_argument = True
        except (TypeError, ValueError):
            takes_one_argument = False
        if not is_async_callable(hook) or not takes_one_argument:
            raise HandlerSignatureError(
                f"the {name} hook {_qualname(hook)} must be an `async def` function taking one argument"
            )
        return hook

    # --- the ASGI app ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await asgi.handle(self, scope, receive, send)

    def lifespan(self, app: object) -> AbstractAsyncContextManager[None]:
        """A lifespan for Starlette: ``Starlette(..., lifespan=ss.lifespan)`` starts and stops the
        server with the application. Inside an application's own lifespan:
        ``async with ss.lifespan(app): yield``."""
        return self._lifespan()

    def mount(self, app: Starlette, path: str = "/socket") -> None:
        """Serve this server at ``path`` of a Starlette or FastAPI application, started and stopped
        with it: ``ss.mount(app, "/socket")``.

        Adds the WebSocket route, and wraps the application's lifespan (its own, given to
        ``FastAPI(lifespan=...)`` or ``Starlette(lifespan=...)``, or none) so that the server starts
        after the application's start-up code and stops before its shutdown code: handlers can use
        what the application set up until the last socket has closed.

        (``app.mount("/socket", ss)`` would not do: Starlette's ``Mount`` matches ``/socket/...``,
        never ``/socket`` itself, and answers that with a 403.)
        """
        app.router.routes.append(WebSocketRoute(path, self))
        outer = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(application: Any) -> AsyncIterator[Any]:
            async with outer(application) as state, self._lifespan():
                yield state

        app.router.lifespan_context = lifespan

    def client_route(self, path: str | None = None, *, module: bool = False) -> BaseRoute:
        """A Starlette route serving the browser client from the installed package, so a Python-only
        application needs no npm: ``routes=[..., ss.client_route()]`` serves ``/ss.js``
        (``window.SS``); ``ss.client_route(module=True)`` serves ``/ss.mjs``, which imports ``./ss.js``
        from next to it. See :func:`typed_ss.static.client_route`."""
        from typed_ss.static import client_route

        return client_route(path or ("/ss.mjs" if module else "/ss.js"), module=module)

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        await self.startup()
        try:
            yield
        finally:
            await self.shutdown()

    @property
    def accepting(self) -> bool:
        """Whether new connections are accepted (``False`` from :meth:`shutdown` until :meth:`startup`)."""
        return self._accepting

    async def startup(self) -> None:
        """Start the backend, if there is one, and accept connections (the ASGI lifespan calls this;
        without a lifespan the first connection does)."""
        self._check_identity_hook()
        self._accepting = True
        if self.recovery is not None:
            self.recovery.sweeper.start()
        if self.backend is not None and self._multihome is None:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                if self._multihome is None:
                    multihome = Multihome(
                        self.hub,
                        self.backend,
                        max_envelope_size=self.limits.max_message_size + 64 * KiB,
                        instance_id=self._control.instance_id,
                        keeps_history=self.recovery is not None and self.recovery.prepare(self.backend),
                        control=self._control,
                    )
                    await multihome.start()
                    self._multihome = multihome
                    self.hub.relay = multihome
                    if self.recovery is not None:
                        self.recovery.share(multihome)

    async def shutdown(self) -> None:
        """Stop accepting connections, close every socket with 1001 (going away), run the disconnect
        hooks, and return once every connection has ended; connections still busy after
        ``shutdown_timeout`` are cancelled. Safe to call more than once."""
        self._accepting = False
        for sock in list(self.hub.sockets.values()):
            sock.close_now(CloseCode.GOING_AWAY, "server shutting down")
        current = asyncio.current_task()
        connections = {task for task in self._connections if task is not current}
        if connections:
            logger.info("typed-ss shutting down: waiting for %d connections to end", len(connections))
            _, still_running = await asyncio.wait(connections, timeout=self.limits.shutdown_timeout)
            if still_running:
                # One line for all of them: a handler that ignores its client's close is not an error
                # of each connection, and the cancelled ones end quietly (ended by the server).
                logger.warning(
                    "typed-ss shutdown: cancelling %d connections still busy after %s s",
                    len(still_running),
                    self.limits.shutdown_timeout,
                )
                for task in still_running:
                    task.cancel()  # the transport ends a connection cancelled at shutdown quietly
                await asyncio.wait(still_running)
        if self._multihome is not None:
            multihome, self._multihome = self._multihome, None
            self.hub.relay = None
            if self.recovery is not None:
                self.recovery.share(None)
            await multihome.stop()
        if self.recovery is not None:
            await self.recovery.sweeper.stop()

    # --- one connection ----------------------------------------------------------------------------

    async def serve(self, transport: Transport) -> None:
        """Serve one connection from the handshake to the end (:class:`~typed_ss.connection.Connection`).
        Transports call this, in the task that serves the connection."""
        task = asyncio.current_task()
        assert task is not None  # always called from a task
        self._connections.add(task)
        try:
            if self.backend is not None and self._multihome is None and self._accepting:
                await self.startup()  # served without a lifespan
            elif not self._identity_checked:
                self._check_identity_hook()  # served without a lifespan
            await Connection(self, transport, task).run()
        finally:
            self._connections.discard(task)

    def _check_identity_hook(self) -> None:
        """A ``Server[User]`` without an authenticate hook would give its handlers ``None`` typed as
        ``User``: refuse to serve instead (at start-up, or at the first connection without one)."""
        self._identity_checked = True
        parametrized = getattr(self, "__orig_class__", None)
        if parametrized is None or self.hooks.authenticate is not None:
            return
        identity = get_args(parametrized)[0]
        if identity not in (Any, object, None, type(None)):
            self._identity_checked = False
            raise ConfigurationError(
                f"this server is a Server[{getattr(identity, '__qualname__', identity)}] but has no "
                "@ss.authenticate hook, so sock.identity would be None: register the hook that returns "
                "the identity (or None to refuse), or use a plain Server()"
            )

    @property
    def connection_count(self) -> int:
        """Connections being served now, handshakes included."""
        return len(self._connections)

    # --- casts and lookups -------------------------------------------------------------------------

    def check_event(self, event: str) -> ServerEvent[Any, Any] | None:
        """Check an event name that application code emits (see
        :func:`typed_ss.protocol.check_event_name`; each distinct name is checked once), and return
        its declaration (:meth:`event`) if it has one: a declared event's payload is then checked
        against the declared type and encoded in the declared form (:meth:`ServerEvent.frame`)."""
        self.encoder(event)
        return self._events.get(event)

    def encoder(self, event: str) -> Callable[[Any], Frame]:
        """How a payload emitted as ``event`` becomes a frame: the declaration's check and encoding
        (:meth:`ServerEvent.frame`) for a declared event, :func:`~typed_ss.protocol.encode_frame` for
        any other. The name is checked once (:meth:`check_event`) and the answer kept in
        :attr:`encoders`, for up to 4,096 names.

        Raises:
            InvalidName: a bad or reserved event name.
        """
        encode = self.encoders.get(event)
        if encode is not None:
            return encode
        declared = self._events.get(event)
        if declared is not None:
            encode = declared.encode
        else:
            check_event_name(event, self.limits.max_event_name_length)
            encode = functools.partial(encode_frame, event)
        if len(self.encoders) < MAX_REMEMBERED_EVENTS:
            self.encoders[event] = encode
        return encode

    async def broadcast(self, event: str, data: object) -> None:
        """Send to every socket on every instance. The frame is encoded once.

        Raises:
            InvalidName: a bad or reserved event name.
            EncodeError: ``data`` cannot be encoded, or the event is declared (:meth:`event`) with
                another payload type; nothing is sent.
        """
        self.hub.broadcast(self.encoder(event)(data))

    async def roomcast(self, room: str, event: str, data: object) -> None:
        """Send to every member of ``room`` on every instance. The frame is encoded once; the sender
        need not be a member. Raises like :meth:`broadcast`, and:

        Raises:
            InvalidName: the room name is reserved (``__...``, such as the sockets' own
                ``__socket_id:`` rooms: use :meth:`socketcast`), empty or too long.
        """
        # A room name often comes from a client: without this check a client could address any
        # socket by roomcasting to its `__socket_id:` room.
        check_room_name(room, self.limits.max_room_name_length)
        self.hub.roomcast(room, self.encoder(event)(data))

    async def socketcast(self, socket_id: str, event: str, data: object) -> None:
        """Send to the socket with id ``socket_id``, on whichever instance it is connected. Raises like
        :meth:`broadcast`; an unknown id is not an error."""
        frame = self.encoder(event)(data)
        # Straight to the hub: the socket's own room is reserved, which roomcast refuses.
        self.hub.roomcast(socket_room(socket_id), frame)

    def health(self) -> ServerHealth:
        """The server's state: connections, sockets, rooms, the supervised background tasks, and with a
        backend the bridge's counters and the backend's state (see ``docs/running.md``, Health)."""
        multihome: MultihomeHealth | None = None
        tasks: list[TaskHealth] = []
        if self._multihome is not None:
            multihome = self._multihome.health()
            tasks = [*self._multihome.tasks(), *self._control.tasks(), *multihome.backend.tasks]
        tasks += [task.health() for task in self._transport_tasks]
        if self.recovery is not None:
            tasks.append(self.recovery.sweeper.health())
        return ServerHealth(
            accepting=self._accepting,
            connections=len(self._connections),
            sockets=len(self.hub.sockets),
            rooms=len(self.hub.room_names),
            multihome=multihome,
            tasks=tasks,
            cluster=self._control.health(),
        )

    def supervise(self, task: Supervised) -> None:
        """List ``task``, a transport's background loop, in :meth:`health`'s ``tasks`` until
        :meth:`unsupervise`."""
        self._transport_tasks.append(task)

    def unsupervise(self, task: Supervised) -> None:
        """Stop listing ``task`` (it has stopped)."""
        if task in self._transport_tasks:
            self._transport_tasks.remove(task)

    @property
    def sockets(self) -> Mapping[str, Socket[Identity]]:
        """The sockets connected to this instance, by id (a read-only live view)."""
        return self.hub.sockets

    def get_socket(self, socket_id: str) -> Socket[Identity] | None:
        """The socket with id ``socket_id`` if it is connected to this instance."""
        return self.hub.sockets.get(socket_id)


def _members_handler(presence: Presence[Any], max_room_name_length: int) -> HandlerSpec:
    """The ``__members`` call: a client lists a room's members, if the application allows it."""

    async def members(sock: Socket[Any], question: MembersQuestion) -> Any:
        try:
            check_room_name(question.room, max_room_name_length)  # no socket's own room, say
        except InvalidName as exc:
            raise HandlerError("invalid_room", str(exc)) from None
        return await presence.listed(sock, question)

    # A member may have no payload (no ``of``, it failed, or another instance's did not decode).
    reply_type: object = Listed[presence.payload | None]  # type: ignore[name-defined]
    decode = build_decoder(MEMBERS_EVENT, MembersQuestion, "(the __members call)")
    return HandlerSpec(
        MEMBERS_EVENT,
        members,
        MembersQuestion,
        decode,
        build_text_decoder(MembersQuestion, decode),
        reply_type,
        PayloadFrames(MEMBERS_EVENT, reply_type),
    )


def _qualname(fn: object) -> str:
    return getattr(fn, "__qualname__", repr(fn))
