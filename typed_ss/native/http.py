"""The native transport's HTTP front: each connection's first bytes, until it is a WebSocket or answered.

picows answers the upgrade request from a synchronous callback, but typed-ss decides it with awaits:
the origin and host checks, ``max_connections`` and the application's ``authenticate`` hook, which may
ask a database. So a :class:`Front` owns each new connection first. It reads the request head (bounded
by ``handshake_timeout`` and 16 KiB; a client that never finishes it is dropped), parses it with
httptools, and then:

- an upgrade to ``path``: the core runs its checks on a :class:`~typed_ss.native.transport.NativeTransport`
  and either refuses with a real HTTP status (403, 500, 503) or accepts, and :meth:`Front.upgrade` hands
  the connection, and the bytes read so far, to picows' own protocol, which answers 101;
- ``GET`` or ``HEAD`` of ``/ss.js`` (the browser client) or ``/health`` (``ss.health()`` as JSON: 200,
  or 503 while the server is not accepting connections): answered here;
- anything else: 404, 405, 426 (a plain request to the WebSocket path) or 400, and closed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

import httptools
import msgspec
from picows import WSAutoPingStrategy, WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # public only through ws_create_server

from typed_ss.native.transport import NativeTransport
from typed_ss.static import client_path
from typed_ss.transport import serve_connection

if TYPE_CHECKING:
    from typed_ss.server import Server

__all__ = ["PICOWS_LOGGER_NAME", "AsgiApp", "Front", "Serving"]

logger = logging.getLogger("typed_ss.native")

HEAD_LIMIT: Final = 16 * 1024
"""The largest request head, in bytes (picows' own limit too)."""
_EARLY_DATA_LIMIT: Final = 64 * 1024
"""Bytes a client may send after its request head while the server decides on it (then reading stops)."""


PICOWS_LOGGER_NAME: Final = "typed_ss.native.picows"
"""The logger picows' own lines go to (through :class:`PicowsLog`)."""
_PICOWS_LOGGER: Final = logging.getLogger(PICOWS_LOGGER_NAME)


class PicowsLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows' logger. picows logs what a client did wrong (a malformed frame, a frame over the size
    limit) at ERROR; typed-ss logs what a client causes at WARNING or below."""

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.warning(msg, *args, **kwargs)


@dataclass
class Serving:
    """What every connection of one native server shares."""

    server: Server[Any]
    path: str | None
    """The WebSocket's path; ``None``: every path but the two plain ones."""
    secure: bool
    handshake_timeout: float
    close_timeout: float
    read_buffer_size: int
    forwarded_allow_ips: frozenset[str] = frozenset({"127.0.0.1"})
    """Peers whose ``X-Forwarded-Proto`` and ``X-Forwarded-For`` are believed (uvicorn's default);
    ``*``: all."""
    picows_log: PicowsLog = field(default_factory=lambda: PicowsLog(_PICOWS_LOGGER))
    asgi: AsgiApp | None = None
    """The ASGI app every request goes to but the WebSocket upgrades to ``path``; ``None``: answered here."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    """The connections' tasks, from the upgrade request to the end of the socket."""
    fronts: set[Front] = field(default_factory=set)
    """Connections still in their HTTP phase."""
    open: set[NativeTransport] = field(default_factory=set)
    """The WebSockets, from the upgrade to their end (the keepalive's round goes over them)."""
    _client_js: bytes | None = None

    def client_js(self) -> bytes:
        if self._client_js is None:
            self._client_js = client_path("ss.js").read_bytes()
        return self._client_js


class AsgiApp:
    """An ASGI application served beside the native WebSocket path, by uvicorn's own HTTP protocol
    (typed-ss's recommended one): a connection whose first request is not a WebSocket upgrade to the
    native path is handed to it, with the bytes read so far, and stays with it (keep-alive, and
    WebSockets at other paths through ASGI)."""

    def __init__(self, app: Any, server: Server[Any]) -> None:
        import uvicorn
        from uvicorn.lifespan.on import LifespanOn
        from uvicorn.server import ServerState

        from typed_ss.serving import uvicorn_settings

        settings = {**uvicorn_settings(server), "log_config": None}
        self.config = uvicorn.Config(app, **settings)
        self.config.load()
        self.state = ServerState()
        self.lifespan = LifespanOn(self.config)

    def protocol(self) -> asyncio.Protocol:
        """A new connection's HTTP protocol."""
        protocol_class: Any = self.config.http_protocol_class  # typed-ss's, from uvicorn_settings
        protocol: asyncio.Protocol = protocol_class(
            config=self.config, server_state=self.state, app_state=self.lifespan.state
        )
        return protocol

    def shutdown(self) -> None:
        """Ask every connection to finish its response and close (uvicorn's graceful shutdown)."""
        for connection in list(self.state.connections):
            connection.shutdown()


class _Head:
    """httptools' callbacks for one request head."""

    __slots__ = ("headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))


def _tokens(value: bytes) -> list[str]:
    return [token.strip().lower() for token in value.decode("latin-1").split(",")]


class Front(asyncio.Protocol):
    """One connection until it is upgraded (then picows' protocol replaces this one) or answered."""

    def __init__(self, serving: Serving) -> None:
        self._serving = serving
        self._loop = asyncio.get_running_loop()
        # aiofastnet's transport (or asyncio's under TLS or without aiofastnet): asyncio.Transport's API,
        # not its class.
        self._transport: Any = None
        self._buffer = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._head_read = False
        self._lost = False
        self._native: NativeTransport | None = None

    # --- asyncio's callbacks -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._serving.fronts.add(self)
        self._timer = self._loop.call_later(self._serving.handshake_timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self._head_read:  # bytes after the head, while the server decides: kept for picows
            if len(buffer) > HEAD_LIMIT + _EARLY_DATA_LIMIT and self._transport is not None:
                self._transport.pause_reading()
            return
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > HEAD_LIMIT:
                self._answer(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
            return
        self._head_read = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._request(bytes(buffer[: end + 4]))

    def eof_received(self) -> bool:
        return False  # close the connection: a client that stopped sending before the upgrade is gone

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._serving.fronts.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._native is not None and self._native.ws is None:
            self._native.disconnected()  # the core may be waiting in accept(): it learns the client left

    # --- the request ---------------------------------------------------------------------------------

    def _request(self, head: bytes) -> None:
        parsed = _Head()
        parser = httptools.HttpRequestParser(parsed)
        try:
            parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            pass  # the head ends where the WebSocket would begin
        except httptools.HttpParserError:
            self._answer(HTTPStatus.BAD_REQUEST)
            return
        method = parser.get_method()
        url = httptools.parse_url(parsed.url) if parsed.url else None
        if url is None:
            self._answer(HTTPStatus.BAD_REQUEST)
            return
        raw_path = url.path or b"/"
        path = unquote(raw_path.decode("latin-1"))  # ASGI's scope["path"] is percent-decoded
        headers = dict(parsed.headers)
        upgrade = "websocket" in _tokens(headers.get(b"upgrade", b""))
        serving = self._serving
        if serving.asgi is not None and not (upgrade and (serving.path is None or path == serving.path)):
            self._to_asgi(serving.asgi)
        elif upgrade:
            self._upgrade_request(method, path, raw_path, url.query or b"", parsed.headers, headers)
        else:
            self._plain_request(method, path)

    def _to_asgi(self, asgi: AsgiApp) -> None:
        transport = self._transport
        protocol = asgi.protocol()
        self._serving.fronts.discard(self)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data, self._buffer = bytes(self._buffer), bytearray()
        protocol.data_received(data)

    def _upgrade_request(
        self,
        method: bytes,
        path: str,
        raw_path: bytes,
        query: bytes,
        header_list: list[tuple[bytes, bytes]],
        headers: dict[bytes, bytes],
    ) -> None:
        serving = self._serving
        if serving.path is not None and path != serving.path:
            self._answer(HTTPStatus.NOT_FOUND)
            return
        if method != b"GET" or "upgrade" not in _tokens(headers.get(b"connection", b"")):
            self._answer(HTTPStatus.BAD_REQUEST)
            return
        if headers.get(b"sec-websocket-version") != b"13":
            self._answer(HTTPStatus.UPGRADE_REQUIRED, extra=b"Sec-WebSocket-Version: 13\r\n")
            return
        if not headers.get(b"sec-websocket-key"):
            self._answer(HTTPStatus.BAD_REQUEST)
            return
        transport = self._transport
        assert transport is not None
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        subprotocols = [
            p
            for p in (
                t.strip() for t in headers.get(b"sec-websocket-protocol", b"").decode("latin-1").split(",")
            )
            if p
        ]
        client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        scheme = "wss" if serving.secure else "ws"
        if client is not None and (
            client[0] in serving.forwarded_allow_ips or "*" in serving.forwarded_allow_ips
        ):
            # Behind a proxy the server trusts, as uvicorn's ProxyHeadersMiddleware reads them.
            proto = headers.get(b"x-forwarded-proto", b"").decode("latin-1").strip().lower()
            if proto in ("https", "wss"):
                scheme = "wss"
            elif proto in ("http", "ws"):
                scheme = "ws"
            forwarded_for = headers.get(b"x-forwarded-for", b"").decode("latin-1").split(",")[-1].strip()
            if forwarded_for:
                client = (forwarded_for, 0)
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": header_list,
            "client": client,
            "server": (local[0], local[1]) if isinstance(local, tuple) else None,
            "subprotocols": subprotocols,
            "extensions": {},
        }
        server = serving.server
        native = self._native = NativeTransport(
            self,
            scope,
            subprotocols,
            max_message_size=server.limits.max_message_size,
            close_timeout=serving.close_timeout,
            client_log=server.client_log,
        )
        task = self._loop.create_task(_serve(server, native))
        serving.tasks.add(task)
        serving.open.add(native)

        def ended(task: asyncio.Task[None]) -> None:
            serving.tasks.discard(task)
            serving.open.discard(native)

        task.add_done_callback(ended)

    def _plain_request(self, method: bytes, path: str) -> None:
        serving = self._serving
        if method not in (b"GET", b"HEAD"):
            self._answer(HTTPStatus.METHOD_NOT_ALLOWED, extra=b"Allow: GET, HEAD\r\n")
        elif path == "/ss.js":
            self._answer(
                HTTPStatus.OK, serving.client_js(), b"text/javascript; charset=utf-8", head=method == b"HEAD"
            )
        elif path == "/health":
            health = serving.server.health()
            status = HTTPStatus.OK if serving.server.accepting else HTTPStatus.SERVICE_UNAVAILABLE
            self._answer(status, msgspec.json.encode(health), b"application/json", head=method == b"HEAD")
        elif serving.path is None or path == serving.path:
            body = b"426 Upgrade Required: this endpoint speaks WebSocket (subprotocol sac-sock)\n"
            self._answer(HTTPStatus.UPGRADE_REQUIRED, body, extra=b"Upgrade: websocket\r\n")
        else:
            self._answer(HTTPStatus.NOT_FOUND)

    # --- what the core decides -----------------------------------------------------------------------

    def upgrade(self, listener: Any, subprotocol: str | None) -> bool:
        """Hand the connection to picows, which answers 101 (selecting ``subprotocol``) and calls
        ``listener``; returns whether the WebSocket is open."""
        transport = self._transport
        if self._lost or transport is None or transport.is_closing():
            return False
        serving = self._serving
        response = WSUpgradeResponse.create_101_response(
            {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else None
        )
        answer = WSUpgradeResponseWithListener(response, listener)

        def listener_factory(request: WSUpgradeRequest) -> WSUpgradeResponseWithListener:
            # Checked already; picows wants exactly "Upgrade" where browsers send "keep-alive, Upgrade".
            request.headers["Connection"] = "Upgrade"
            return answer

        protocol = WSProtocol(
            None,  # host and port: a client's
            None,  # path: a client's
            False,  # the server side
            listener_factory,
            serving.picows_log,
            True,  # close with 1011 if the listener raises (it does not)
            None,  # the handshake timeout is the front's, and over
            False,  # no pings of picows' own (one task per connection); it answers the client's
            20,
            20,
            WSAutoPingStrategy.PING_WHEN_IDLE,
            True,  # answer pings
            serving.server.limits.max_message_size,  # no frame larger than a message
            None,
            serving.read_buffer_size,
        )
        self._serving.fronts.discard(self)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        data = memoryview(bytes(self._buffer))
        self._buffer = bytearray()
        while data:  # the bytes read so far, through picows' BufferedProtocol interface
            space = protocol.get_buffer(-1)
            count = min(len(space), len(data))
            space[:count] = data[:count]
            protocol.buffer_updated(count)
            data = data[count:]
        if transport.is_closing():
            return False
        transport.resume_reading()
        return self._native is not None and self._native.ws is not None

    def refuse(self, status: int) -> None:
        """Answer the upgrade request with HTTP ``status`` and close."""
        if not self._lost:
            self._answer(HTTPStatus(status))

    def abort(self) -> bool:
        if self._transport is not None:
            self._transport.abort()
        return True

    # --- inside --------------------------------------------------------------------------------------

    def _answer(
        self,
        status: HTTPStatus,
        body: bytes | None = None,
        content_type: bytes = b"text/plain; charset=utf-8",
        *,
        extra: bytes = b"",
        head: bool = False,
    ) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if body is None:
            body = f"{status.value} {status.phrase}\n".encode()
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n"
            % (status.value, status.phrase.encode(), content_type, len(body), extra)
            + (b"" if head else body)
        )
        transport.close()
        # A client that does not read the answer is dropped after close_timeout.
        self._loop.call_later(self._serving.close_timeout, transport.abort)

    def _timed_out(self) -> None:
        self._timer = None
        if self._transport is not None:
            self._transport.abort()


async def _serve(server: Server[Any], transport: NativeTransport) -> None:
    try:
        await serve_connection(server, transport)
    except Exception:
        logger.exception("serving a native connection failed")
        transport.abort()
