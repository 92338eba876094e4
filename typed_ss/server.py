"""Server: the ASGI app, its handlers and hooks, limits, origin and authentication checks, shutdown.

One connection's life, in :meth:`Server.serve`: origin check, authentication hook, accept (selecting
``sac-sock`` when offered), ``__hello``, the connect hook, then the read loop that handles the socket's
messages in order, one at a time, and finally the teardown that runs the disconnect hook.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, fields
from typing import Any, Final, Literal, TypeAlias, TypeVar, overload
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send

from typed_ss import asgi
from typed_ss.backends.base import Backend
from typed_ss.contract import CONTRACT_QUERY_PARAMETER, Contract, EventContract, check_describable
from typed_ss.errors import (
    CloseCode,
    ConfigurationError,
    HandlerSignatureError,
    PayloadValidationError,
    ProtocolError,
)
from typed_ss.events import ServerEvent
from typed_ss.handlers import Handler, HandlerSpec, build_decoder, inspect_handler, is_async_callable
from typed_ss.hub import Hub
from typed_ss.multihome import Multihome
from typed_ss.protocol import (
    SUBPROTOCOL,
    check_event_name,
    encode_frame,
    error_frame,
    hello_frame,
    socket_room,
    split_client_frame,
)
from typed_ss.socket import Socket
from typed_ss.transport import Disconnected, Transport

__all__ = ["AuthHook", "ContractCheck", "Limits", "Server", "SocketHook"]

logger = logging.getLogger("typed_ss")

M = TypeVar("M")
SocketHook = Callable[[Socket], Awaitable[None]]
"""``on_connect`` / ``on_disconnect`` hooks: ``async def hook(sock: Socket) -> None``."""
AuthHook = Callable[[HTTPConnection], Awaitable[Any]]
"""The authentication hook: ``async def auth(request) -> identity``; ``None`` refuses the upgrade."""
_Hook = TypeVar("_Hook", bound=Callable[..., Awaitable[Any]])
T = TypeVar("T")
ContractCheck: TypeAlias = Literal["off", "warn", "refuse"]
"""What the server does when a generated client's contract fingerprint differs from its own."""

KiB: Final = 1024
MiB: Final = 1024 * KiB


@dataclass(frozen=True)
class Limits:
    """Every limit the server enforces, with its default. ``docs/limits.md`` explains each."""

    max_message_size: int = 1 * MiB
    """Largest client message in bytes; larger ones close the socket with 1009. Advertised in
    ``__hello``; give uvicorn the same value as ``ws_max_size`` (``typed_ss.uvicorn_settings`` does)."""
    send_queue_bytes: int = 4 * MiB
    """Most a congested socket may have waiting to be sent before it is cut off with 4008."""
    send_timeout: float = 10.0
    """Seconds one send may take before the socket is cut off with 4008."""
    max_event_name_length: int = 128
    """Longest event name in UTF-8 bytes, both directions."""
    max_room_name_length: int = 255
    """Longest room name in UTF-8 bytes."""
    max_rooms_per_socket: int = 100
    """Most rooms one socket may be in (its internal ``__socket_id:`` room does not count)."""
    shutdown_timeout: float = 10.0
    """Seconds :meth:`Server.shutdown` waits for connections to end before cancelling them."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not value > 0:
                raise ConfigurationError(f"{field.name} must be positive, got {value!r}")


_DEFAULTS: Final = Limits()


class Server:
    """An event-based WebSocket server; an ASGI app serving ``websocket`` and ``lifespan`` scopes.

    Mount it with ``WebSocketRoute("/socket", ss)`` and ``Starlette(lifespan=ss.lifespan)``, or serve it
    alone with ``uvicorn module:ss``.

    Args:
        max_message_size, send_queue_bytes, send_timeout, max_event_name_length, max_room_name_length,
            max_rooms_per_socket, shutdown_timeout: see :class:`Limits`.
        allowed_origins: origins (``"https://app.example.com"``) allowed besides the server's own;
            ``["*"]`` allows every origin. Browsers from other origins are refused with HTTP 403.
        backend: a multihome backend (``typed_ss.backends``): broadcasts, roomcasts and
            socketcasts then reach the sockets of every instance that shares it. Started and stopped
            with the server; see ``docs/multihome.md``.
        instance_id: this instance's name on the backend (default: random per ``Server``). A stable
            name (the host and port, say) lets the other instances recognise a restart of this one
            by its new boot epoch.
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
        allowed_origins: Iterable[str] = (),
        contract_check: ContractCheck = "warn",
        backend: Backend | None = None,
        instance_id: str | None = None,
    ) -> None:
        self.limits: Final = Limits(
            max_message_size=max_message_size,
            send_queue_bytes=send_queue_bytes,
            send_timeout=send_timeout,
            max_event_name_length=max_event_name_length,
            max_room_name_length=max_room_name_length,
            max_rooms_per_socket=max_rooms_per_socket,
            shutdown_timeout=shutdown_timeout,
        )
        if isinstance(allowed_origins, str):
            raise ConfigurationError("allowed_origins must be a list of origins, not a single string")
        origins = {origin.lower().rstrip("/") for origin in allowed_origins}
        self._any_origin = "*" in origins
        self._allowed_origins = frozenset(origins - {"*"})
        if contract_check not in ("off", "warn", "refuse"):
            raise ConfigurationError(
                f"contract_check must be 'off', 'warn' or 'refuse', not {contract_check!r}"
            )
        self.contract_check: Final = contract_check
        self.hub: Final = Hub()
        self._handlers: dict[str, HandlerSpec] = {}
        self._events: dict[str, ServerEvent[Any]] = {}
        self._contract: Contract | None = None
        self._on_connect: SocketHook | None = None
        self._on_disconnect: SocketHook | None = None
        self._authenticate: AuthHook | None = None
        self._accepting = True
        self._connections: set[asyncio.Task[Any]] = set()
        self.backend: Final = backend
        self.instance_id: Final = instance_id
        self._multihome: Multihome | None = None
        self._starting: asyncio.Lock | None = None
        # Event names already checked; emits repeat a handful of names, so the check runs once each.
        self._checked_events: set[str] = set()

    # --- registration ------------------------------------------------------------------------------

    @overload
    def on(self, event: str) -> Callable[[Handler[M]], Handler[M]]: ...

    @overload
    def on(self, event: str, model: type[M]) -> Callable[[Handler[M]], Handler[M]]: ...

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
            self._handlers[event] = spec
            self._contract = None
            return handler

        return register

    @overload
    def event(self, name: str, payload_type: type[T]) -> ServerEvent[T]: ...

    @overload
    def event(self, name: str, payload_type: object) -> ServerEvent[Any]: ...

    def event(self, name: str, payload_type: object) -> ServerEvent[Any]:
        """Declare an event the server sends, and get its typed emitter.

        ``chat_out = ss.event("chat", ChatOut)`` gives a ``ServerEvent[ChatOut]``:
        ``await chat_out.emit(sock, ChatOut(...))``, ``.roomcast(room, ...)``, ``.broadcast(...)``,
        ``.socketcast(socket_id, ...)``; mypy rejects any other payload. For a type that is not a
        class (a union, a ``Literal``), annotate the variable:
        ``presence: ServerEvent[Join | Leave] = ss.event("presence", Join | Leave)``.

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
        declared: ServerEvent[Any] = ServerEvent(self, name, payload_type)
        self._events[name] = declared
        self._contract = None
        return declared

    @property
    def contract(self) -> Contract:
        """The typed contract: every handled and declared event with its payload type."""
        if self._contract is None:
            self._contract = Contract.of(
                [
                    *(
                        EventContract(
                            name, "client_to_server", spec.payload_type, inspect.getdoc(spec.handler)
                        )
                        for name, spec in self._handlers.items()
                    ),
                    *(
                        EventContract(name, "server_to_client", e.payload_type)
                        for name, e in self._events.items()
                    ),
                ]
            )
        return self._contract

    @property
    def handlers(self) -> Mapping[str, HandlerSpec]:
        """The registered events and their handlers, payload types and decoders."""
        return dict(self._handlers)

    def on_connect(self, hook: SocketHook) -> SocketHook:
        """Register ``async def hook(sock) -> None``, run after ``__hello`` and before the socket's first
        message is handled. If it raises, the socket is closed with 1011."""
        self._on_connect = self._register_hook("on_connect", self._on_connect, hook)
        return hook

    def on_disconnect(self, hook: SocketHook) -> SocketHook:
        """Register ``async def hook(sock) -> None``, run once the connection has ended; ``sock.rooms``
        still lists the rooms the socket was in."""
        self._on_disconnect = self._register_hook("on_disconnect", self._on_disconnect, hook)
        return hook

    def authenticate(self, hook: AuthHook) -> AuthHook:
        """Register ``async def hook(request) -> identity``, run before the upgrade is accepted.

        ``request`` is the upgrade request (headers, cookies, query parameters, client address).
        Returning ``None`` refuses the connection with HTTP 403; anything else is stored as
        ``sock.identity``. If the hook raises, the connection is refused with HTTP 500.
        """
        self._authenticate = self._register_hook("authenticate", self._authenticate, hook)
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
        server with the application."""
        return self._lifespan()

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
        self._accepting = True
        if self.backend is not None and self._multihome is None:
            if self._starting is None:
                self._starting = asyncio.Lock()
            async with self._starting:
                if self._multihome is None:
                    multihome = Multihome(
                        self.hub,
                        self.backend,
                        max_envelope_size=self.limits.max_message_size + 64 * KiB,
                        instance_id=self.instance_id,
                    )
                    await multihome.start()
                    self._multihome = multihome
                    self.hub.relay = multihome

    async def shutdown(self) -> None:
        """Stop accepting connections, close every socket with 1001 (going away), run the disconnect
        hooks, and return once every connection has ended; connections still busy after
        ``shutdown_timeout`` are cancelled. Safe to call more than once."""
        self._accepting = False
        for sock in list(self.hub.sockets.values()):
            await sock.close(CloseCode.GOING_AWAY, "server shutting down")
        current = asyncio.current_task()
        connections = {task for task in self._connections if task is not current}
        if connections:
            logger.info("typed-ss shutting down: waiting for %d connections to end", len(connections))
            _, still_running = await asyncio.wait(connections, timeout=self.limits.shutdown_timeout)
            if still_running:
                logger.warning(
                    "typed-ss shutdown: cancelling %d connections still running", len(still_running)
                )
                for task in still_running:
                    task.cancel()
                await asyncio.wait(still_running)
        if self._multihome is not None:
            multihome, self._multihome = self._multihome, None
            self.hub.relay = None
            await multihome.stop()

    # --- one connection ----------------------------------------------------------------------------

    async def serve(self, transport: Transport) -> None:
        """Serve one connection from the handshake to the end. Transports call this."""
        task = asyncio.current_task()
        assert task is not None  # always called from a task
        if self.backend is not None and self._multihome is None and self._accepting:
            await self.startup()  # served without a lifespan
        request = transport.request
        if not self._origin_allowed(request.headers):
            logger.warning("refused a WebSocket from origin %r: not allowed", request.headers.get("origin"))
            await transport.refuse(403)
            return
        identity: Any = None
        if self._authenticate is not None:
            try:
                identity = await self._authenticate(request)
            except Exception:
                logger.exception("the authenticate hook failed; refusing the connection")
                await transport.refuse(500)
                return
            if identity is None:
                logger.info("refused a WebSocket from %s: authentication failed", request.client)
                await transport.refuse(403)
                return
        if not self.accepting:  # checked last: shutdown may begin while the hook runs
            await transport.refuse(503)
            return
        try:
            contract = self.contract.fingerprint  # computed once, then cached
        except Exception:
            logger.exception("cannot describe the contract; refusing the connection")
            await transport.refuse(500)
            return
        try:
            await transport.accept(SUBPROTOCOL if SUBPROTOCOL in transport.subprotocols else None)
        except Disconnected:
            return

        sock = Socket(self, transport, identity)
        sock._task = task
        self._connections.add(task)
        try:
            # Attaching waits until the backend delivers the socket's own room, so the id in __hello
            # is reachable from every instance; casts that arrive meanwhile wait behind __hello.
            await self.hub.attach(sock)
            sock.open(hello_frame(sock.id, self.limits.max_message_size, contract))
            logger.debug("socket %s connected", sock.id)
            if not self._client_contract_accepted(sock, contract):
                await sock.close(CloseCode.CONTRACT_MISMATCH, "client out of date: reload needed")
            elif self._on_connect is not None:
                try:
                    await self._on_connect(sock)
                except Exception:
                    logger.exception("the on_connect hook failed for socket %s; closing it", sock.id)
                    await sock.close(CloseCode.INTERNAL_ERROR, "internal error")
            await self._read(sock)
        except Disconnected:
            pass
        except asyncio.CancelledError:
            if not sock._ended_by_server:
                raise
            task.uncancel()  # the server ended this connection itself: finish normally
        finally:
            await self._teardown(sock)
            self._connections.discard(task)

    async def _read(self, sock: Socket) -> None:
        """Handle the socket's messages in order, one at a time, until the connection ends."""
        receive = sock._transport.receive
        handlers = self._handlers
        max_size = self.limits.max_message_size
        max_event_length = self.limits.max_event_name_length
        while True:
            message = await receive()
            if sock._closing:
                continue  # drain until the disconnect arrives
            # A str's UTF-8 size is at most 4 bytes a character: only a long one needs measuring.
            if len(message) > max_size // 4 and _size(message) > max_size:
                logger.info("socket %s sent a message larger than %d bytes; closing it", sock.id, max_size)
                await sock.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
                continue
            try:
                event, _, payload = split_client_frame(message, max_event_length)
            except ProtocolError as exc:
                logger.info("socket %s sent a malformed frame: %s", sock.id, exc)
                continue
            spec = handlers.get(event)
            if spec is None:
                logger.debug("socket %s sent event %r, which has no handler", sock.id, event)
                continue
            # Dispatch inline, not through a helper coroutine: one coroutine fewer per message is a
            # measurable share of typed-ss's own cost per message (docs/benchmarks.md).
            value: object = payload
            if spec.decode is not None:
                try:
                    value = spec.decode(payload)
                except PayloadValidationError as exc:
                    self._invalid_payload(sock, spec, exc)
                    continue
            try:
                await spec.handler(sock, value)
            except Exception:
                self._handler_failed(sock, spec)

    @staticmethod
    def _invalid_payload(sock: Socket, spec: HandlerSpec, exc: PayloadValidationError) -> None:
        logger.info("socket %s sent an invalid payload for %r: %s", sock.id, spec.event, exc.detail)
        sock.push(error_frame(spec.event, "invalid_payload", exc.detail))

    @staticmethod
    def _handler_failed(sock: Socket, spec: HandlerSpec) -> None:
        logger.exception("the handler for event %r failed on socket %s", spec.event, sock.id)
        sock.push(error_frame(spec.event, "handler_error", "the handler for this event failed"))

    async def _teardown(self, sock: Socket) -> None:
        sock._closing = True
        self.hub.detach(sock)
        sock._stop_background()
        if self._on_disconnect is not None:
            try:
                await self._on_disconnect(sock)
            except Exception:
                logger.exception("the on_disconnect hook failed for socket %s", sock.id)
        sock._rooms.clear()
        logger.debug("socket %s disconnected", sock.id)

    def _client_contract_accepted(self, sock: Socket, contract: str) -> bool:
        if not sock.request.scope.get("query_string"):
            # No query string, so no fingerprint (the plain ss.js client): parsing one is the largest
            # part of typed-ss's own cost per connection.
            return True
        client_contract = sock.request.query_params.get(CONTRACT_QUERY_PARAMETER)
        if client_contract is None or client_contract == contract or self.contract_check == "off":
            return True
        logger.warning(
            "socket %s was generated from another contract (%s; the server's is %s)%s",
            sock.id,
            client_contract,
            contract,
            ": closing it" if self.contract_check == "refuse" else "",
        )
        return self.contract_check != "refuse"

    def _origin_allowed(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin is None or self._any_origin:  # no Origin header: not a browser
            return True
        if origin.lower().rstrip("/") in self._allowed_origins:
            return True
        host = headers.get("host")
        return host is not None and urlsplit(origin).netloc.lower() == host.lower()

    # --- casts and lookups -------------------------------------------------------------------------

    def check_event(self, event: str) -> None:
        """Check an event name that application code emits (see
        :func:`typed_ss.protocol.check_event_name`); each distinct name is checked once."""
        if event not in self._checked_events:
            check_event_name(event, self.limits.max_event_name_length)
            if len(self._checked_events) < 4096:
                self._checked_events.add(event)

    async def broadcast(self, event: str, data: object) -> None:
        """Send to every socket on every instance. The frame is encoded once.

        Raises:
            InvalidName: a bad or reserved event name.
            EncodeError: ``data`` cannot be encoded; nothing is sent.
        """
        self.check_event(event)
        self.hub.broadcast(encode_frame(event, data))

    async def roomcast(self, room: str, event: str, data: object) -> None:
        """Send to every member of ``room`` on every instance. The frame is encoded once; the sender
        need not be a member. Raises like :meth:`broadcast`."""
        self.check_event(event)
        self.hub.roomcast(room, encode_frame(event, data))

    async def socketcast(self, socket_id: str, event: str, data: object) -> None:
        """Send to the socket with id ``socket_id``, on whichever instance it is connected. Raises like
        :meth:`broadcast`; an unknown id is not an error."""
        await self.roomcast(socket_room(socket_id), event, data)

    def health(self) -> dict[str, Any]:
        """The server's state: sockets, rooms, and with a backend its connection state, reconnects,
        lost messages (gaps), duplicates and drops (see ``docs/multihome.md``)."""
        return {
            "accepting": self._accepting,
            "sockets": len(self.hub.sockets),
            "rooms": len(self.hub.room_names),
            "multihome": None if self._multihome is None else self._multihome.health(),
        }

    @property
    def sockets(self) -> Mapping[str, Socket]:
        """The sockets connected to this instance, by id (a read-only live view)."""
        return self.hub.sockets

    def get_socket(self, socket_id: str) -> Socket | None:
        """The socket with id ``socket_id`` if it is connected to this instance."""
        return self.hub.sockets.get(socket_id)


def _qualname(fn: object) -> str:
    return getattr(fn, "__qualname__", repr(fn))


def _size(message: str | bytes) -> int:
    return len(message.encode()) if isinstance(message, str) else len(message)
