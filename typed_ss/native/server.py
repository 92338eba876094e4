"""Serving a :class:`~typed_ss.server.Server` on the native transport: :class:`NativeServer` (start, stop,
the address) and :func:`serve` (the process: start, wait for SIGTERM or SIGINT, stop as uvicorn does)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import logging.config
import signal
import ssl
from collections.abc import Sequence
from typing import Any, Final, Self

import aiofastnet

from typed_ss.errors import CloseCode
from typed_ss.logs import uvicorn_log_config
from typed_ss.native.http import PICOWS_LOGGER_NAME, AsgiApp, Front, Serving
from typed_ss.serving import ensure_file_limit
from typed_ss.supervision import Supervised

__all__ = ["NativeServer", "native_log_config", "serve"]

logger = logging.getLogger("typed_ss.native")

DEFAULT_READ_BUFFER: Final = 2048
"""picows' first read buffer per connection, in bytes (it grows with the messages a client sends)."""


class NativeServer:
    """A :class:`~typed_ss.server.Server` served on the native transport, without ASGI::

        async with NativeServer(ss, port=0) as native:   # port 0: one the OS picks
            print(native.url)                            # ws://127.0.0.1:PORT/socket
            await native.serve_forever()

    Upgrade requests to ``path`` (``None``: any path) become sockets of ``ss``; ``GET /ss.js`` serves
    the browser client and ``GET /health`` ``ss.health()`` as JSON (see :mod:`typed_ss.native.http`).
    Every ``ping_interval`` seconds a connection not heard from is pinged, and one that did not
    answer the previous ping is dropped (a client that vanished without closing), as uvicorn's
    ``ws_ping_interval`` and ``ws_ping_timeout`` of 20 s do; the loop is listed in ``ss.health()``.
    The server's
    ``handshake_timeout``, ``max_connections``, ``max_message_size``, origin checks and hooks apply as
    under uvicorn. ``ssl`` serves ``wss://``. ``app``, an ASGI application (the Starlette or FastAPI app
    the server is mounted in), serves every other request, by uvicorn's HTTP protocol, and its
    lifespan runs with the server. ``forwarded_allow_ips`` are the proxies whose
    ``X-Forwarded-Proto`` and ``X-Forwarded-For`` headers are believed, as uvicorn's option of that
    name (``"*"``: any).
    """

    def __init__(
        self,
        ss: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        path: str | None = "/socket",
        ssl: ssl.SSLContext | None = None,
        backlog: int = 1024,
        close_timeout: float = 5.0,
        read_buffer_size: int = DEFAULT_READ_BUFFER,
        forwarded_allow_ips: Sequence[str] = ("127.0.0.1",),
        app: Any = None,
        ping_interval: float = 20.0,
    ) -> None:
        self.ss = ss
        self.app = app
        """The ASGI app beside the native path, or ``None``."""
        self.host = host
        self._port = port
        self._ssl = ssl
        self._backlog = backlog
        self._serving = Serving(
            server=ss,
            path=path,
            secure=ssl is not None,
            handshake_timeout=ss.limits.handshake_timeout,
            close_timeout=close_timeout,
            read_buffer_size=read_buffer_size,
            forwarded_allow_ips=frozenset(forwarded_allow_ips),
            asgi=AsgiApp(app, ss) if app is not None else None,
        )
        self._listener: Any = None
        self._stopped = asyncio.Event()
        if not ping_interval > 0:
            raise ValueError(f"ping_interval must be positive, got {ping_interval}")
        self._ping_interval = ping_interval
        self._keepalive = Supervised("native keepalive", self._keepalive_rounds, log=logger)

    @property
    def port(self) -> int:
        """The port listened on (the one the OS picked for ``port=0``, once started)."""
        if self._listener is not None:
            return int(self._listener.sockets[0].getsockname()[1])
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port/path`` (``wss://`` with ``ssl``)."""
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}{self._serving.path or '/'}"

    async def start(self) -> None:
        """Start the server (its backend included), and the ``app``'s lifespan, then listen.

        Raises:
            RuntimeError: the app's lifespan start-up failed.
        """
        asgi = self._serving.asgi
        if asgi is not None:
            await asgi.lifespan.startup()
            if asgi.lifespan.should_exit:
                raise RuntimeError("the app's lifespan start-up failed (logged)")
        await self.ss.startup()
        self._keepalive.start()
        self.ss.supervise(self._keepalive)
        loop = asyncio.get_running_loop()
        self._listener = await aiofastnet.create_server(
            loop,
            lambda: Front(self._serving),
            self.host,
            self._port,
            ssl=self._ssl,
            ssl_handshake_timeout=self._serving.handshake_timeout if self._ssl is not None else None,
            backlog=self._backlog,
        )

    async def stop(self, code: int = CloseCode.GOING_AWAY) -> None:
        """Stop listening, close every socket with ``code`` (1001; 1012 on SIGTERM), wait for the
        connections to end (the server's ``shutdown_timeout``), and stop the server."""
        listener = self._listener
        if listener is not None:
            listener.close()
        for front in list(self._serving.fronts):
            front.abort()  # still in their HTTP phase
        # As uvicorn does: the sockets close (their disconnect hooks run) while the server still runs.
        reason = "server restarting" if code == CloseCode.SERVICE_RESTART else "server shutting down"
        for sock in list(self.ss.hub.sockets.values()):
            sock.close_now(code, reason)  # a kept session gets what was on its way when it comes back
        if self._serving.tasks:  # their clients answer the close, and their disconnect hooks run
            await asyncio.wait(list(self._serving.tasks), timeout=self.ss.limits.shutdown_timeout)
        asgi = self._serving.asgi
        if asgi is not None:
            asgi.shutdown()
        await self.ss.shutdown()  # waits for every connection's end (shutdown_timeout)
        tasks = list(self._serving.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if listener is not None:
            listener.abort_clients()
            await listener.wait_closed()
        if asgi is not None:
            await asgi.lifespan.shutdown()
        await self._keepalive.stop()
        self.ss.unsupervise(self._keepalive)
        self._stopped.set()

    async def _keepalive_rounds(self) -> None:
        """Every ``ping_interval``: ping the connections not heard from, drop those that did not
        answer the last ping (so a vanished client is gone within two to three intervals)."""
        client_log = self.ss.client_log
        while True:
            await asyncio.sleep(self._ping_interval)
            for transport in list(self._serving.open):
                if transport.keepalive():
                    client_log.info(
                        "keepalive",
                        "dropped a connection from %s: no answer to a ping within %s s",
                        transport.request.client,
                        self._ping_interval,
                    )

    async def serve_forever(self) -> None:
        """Wait until :meth:`stop` has run."""
        await self._stopped.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if not self._stopped.is_set():
            await self.stop()


def serve(
    ss: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    path: str = "/socket",
    ssl: ssl.SSLContext | None = None,
    log_config: dict[str, Any] | None = None,
    **options: Any,
) -> None:
    """Serve ``ss`` on the native transport until SIGTERM or SIGINT; then close every socket with 1012
    (service restart: clients come back), give handlers the server's ``shutdown_timeout``, and stop.

    ``options`` are :class:`NativeServer`'s (``backlog``, ``close_timeout``, ``read_buffer_size``,
    ``forwarded_allow_ips``). Logging is configured with ``log_config`` (a :func:`logging.config.dictConfig`
    dictionary), by default :func:`native_log_config`: typed-ss's lines as uvicorn would print them.
    First the process's file-descriptor limit is raised, if it must and may be, to what
    ``max_connections`` needs.
    """
    logging.config.dictConfig(native_log_config() if log_config is None else log_config)
    ensure_file_limit(ss.limits.max_connections)
    runner: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    runner(_serve_until_signalled(NativeServer(ss, host=host, port=port, path=path, ssl=ssl, **options)))


def native_log_config() -> dict[str, Any]:
    """:func:`typed_ss.logs.uvicorn_log_config` (the format typed-ss's lines have under uvicorn), with
    picows' own per-connection lines (``typed_ss.native.picows``, :data:`PICOWS_LOGGER_NAME`) at WARNING
    and above."""
    config = uvicorn_log_config()
    config["loggers"][PICOWS_LOGGER_NAME] = {"level": "WARNING"}
    return config


async def _serve_until_signalled(native: NativeServer) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await native.start()
    logger.info("typed-ss serving on %s (native transport); stop with SIGTERM or Ctrl+C", native.url)
    beside = ""
    if native.app is not None:
        scheme = "https" if native.url.startswith("wss") else "http"
        beside = f" and its app on {scheme}://{native.host}:{native.port}/"
    print(f"typed-ss serving on {native.url}{beside}", flush=True)
    await stop.wait()
    logger.info("stopping: closing every socket with 1012")
    await native.stop(CloseCode.SERVICE_RESTART)
