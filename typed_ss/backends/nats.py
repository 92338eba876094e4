"""The NATS backend: core NATS, one subject per topic, on nats-py's own reconnects (extra ``nats``).

``NatsBackend("nats://127.0.0.1:4222")``, ``NatsBackend(["nats://n1:4222", "nats://n2:4222"])`` (a
cluster: nats-py picks one and moves to another when it is lost) or ``NatsBackend(client=nc)`` (a
connected nats-py client the application owns). ``group`` (default ``"typed-ss"``) is the subjects'
first token(s), so separate apps can share a NATS.

- **Subjects.** Topic ``t`` travels on ``<group>.<token>``, ``token`` being :func:`subject_token`
  of ``t``: a topic is any string (rooms are named by users: dots, spaces, ``*``, ``>``, any
  Unicode), and a subject token must not contain ``.``, ``*``, ``>`` or whitespace. ASCII letters,
  digits and ``-`` are kept as they are, every other character is written as ``_`` and the
  upper-case hex of each of its UTF-8 bytes (``r:lobby`` -> ``r_3Alobby``, ``_`` itself -> ``_5F``),
  so the token is made of ``[A-Za-z0-9_-]`` only, reads back exactly (:func:`topic_of_token`) and
  stays readable in NATS's monitoring. The empty topic is ``_``. A token longer than
  :data:`MAX_TOKEN` (a very long room name of non-ASCII characters) is ``_h`` and the SHA-256 of the
  topic instead, which keeps every subject within the servers' control line; it cannot be read
  back, so received messages are never decoded from their subject: each subscription knows its
  topic.
- **Interest routing.** One subscription per topic, never a wildcard: the servers forward a subject
  only to connections that subscribed to it, so an instance with no member of a room gets none of
  its traffic (``/connz?subs=1`` of the monitoring shows exactly that). ``no_echo``: NATS does not
  send an instance its own messages back.
- **subscribe** returns once the server has the interest: the subscription is followed by a request
  to a subject nobody serves, and the server's "no responders" answer comes after it processed
  everything sent before it. (nats-py's ``flush()`` is not used: it writes its PING ahead of
  commands still waiting in nats-py's buffer, and a flush that times out leaves a cancelled future
  whose late PONG ends nats-py's read loop.) During an outage it records the subscription and
  returns at once; it is made once NATS is back.
- **Reconnects** are nats-py's (``allow_reconnect``, ``max_reconnect_attempts=-1``: it never gives
  up), which subscribes again everything it knew; its callbacks keep this backend's state. It counts
  as connected again once the subscriptions made meanwhile are sent and the server has confirmed
  them. Losing a working connection is logged at ERROR once, the reconnection at WARNING, failed
  attempts at ERROR for the first and every 20th. nats-py pings the server every ``ping_interval``
  (2 s) and drops a connection that missed two answers, so a hung server is left within about three
  intervals. Should nats-py close the client anyway (the server refused it after it had connected),
  the backend makes a new one.
- **Publishing while NATS is unreachable raises** :class:`~typed_ss.errors.BackendError` at once:
  nats-py's own buffer for publishes made while reconnecting is off (``pending_size=0``), because
  the bridge's outbox already keeps them (bounded, counted, in order) and retries a publish that
  raised. While connected, a publish is handed to nats-py's buffer; when more than
  :data:`MAX_UNFLUSHED` bytes wait there (the server stopped reading), publishes raise until it
  drains. A message larger than the server's ``max_payload`` can never be sent: it is logged,
  counted (``rejected``) and dropped, so that it cannot hold up the outbox; receivers count the gap.
- **What is lost, and counted.** Core NATS keeps nothing: what is published while an instance is
  disconnected is lost to it, and what is written into a connection that then dies is lost. A slow
  instance drops too: nats-py's per-subscription limits (``max_pending`` messages,
  ``max_pending_bytes``) drop and count (``slow_consumer``), and the inbox the bridge reads drops
  the oldest past ``max_pending`` (``dropped`` counts both). The bridge's sequence numbers count
  every loss. No JetStream: this backend keeps no history, so connection state recovery keeps its
  history in each instance's memory (see docs/recovery.md).
- TLS (``tls``, an :class:`ssl.SSLContext`, and ``tls_hostname``) and credentials (``user`` and
  ``password``, ``token``, ``user_credentials``: a ``.creds`` file, ``nkeys_seed``: an nkey seed
  file; the last two need the ``nkeys`` package, which the ``nats`` extra installs) are passed to
  nats-py as they are. ``tls://`` URLs require TLS; with a ``nats://`` URL, TLS is used when the
  server requires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.util
import logging
import re
import ssl
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final

from typed_ss.backends._support import Inbox
from typed_ss.backends.base import BackendHealth, BackendState
from typed_ss.errors import BackendError, ConfigurationError, MissingDependencyError
from typed_ss.supervision import Backoff, Supervised, raise_if_cancelled

try:
    from nats import errors as nats_errors
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError("nats-py", "nats") from exc

__all__ = ["MAX_TOKEN", "MAX_UNFLUSHED", "NatsBackend", "subject_token", "topic_of_token"]

logger = logging.getLogger("typed_ss.backends.nats")

MAX_TOKEN: Final = 1024
"""Subject tokens longer than this are hashed (see the module docstring): NATS servers refuse a
protocol line over 4 KiB (``max_control_line``) and close the connection that sent it."""
MAX_UNFLUSHED: Final = 8 * 1024 * 1024
"""Bytes nats-py may hold unsent (the server not reading) before :meth:`NatsBackend.publish` raises."""
LOG_EVERY: Final = 20
"""Failed connection attempts in a row are logged: the first, then every ``LOG_EVERY``-th."""
SLOW_CONSUMER_LOG_EVERY: Final = 1000
"""Messages nats-py dropped for a slow consumer are logged: the first, then every this many."""
CLOSE_TIMEOUT: Final = 5.0
"""Seconds closing a client may take (nats-py waits for its reconnection task and its socket)."""
_TICK: Final = 0.5
"""Seconds between the watcher's checks when nothing wakes it (an application's client, whose
callbacks are not this backend's, is watched by them)."""

_KEPT: Final = frozenset(string.ascii_letters + string.digits + "-")
_TOKEN: Final = re.compile(r"(?:[A-Za-z0-9-]|_[0-9A-F]{2})+")
_GROUP: Final = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_PROBE_TOKEN: Final = "_probe"
"""The subject token of the round trips (never a topic's: escapes are ``_`` and two hex digits)."""

# What nats-py raises when the connection is gone or the server refuses a command.
_GONE: Final = (nats_errors.Error, OSError, TimeoutError)


class _AttemptFailed(Exception):
    """A connection attempt failed (raised out of nats-py's connect, see ``NatsBackend._connect``)."""


@functools.lru_cache(maxsize=4096)  # every publish asks: the busy rooms' tokens are made once
def subject_token(topic: str) -> str:
    """The NATS subject token that carries ``topic`` (see the module docstring): reversible with
    :func:`topic_of_token`, except for a token hashed because it would be longer than
    :data:`MAX_TOKEN`."""
    if not topic:
        return "_"
    parts: list[str] = []
    for char in topic:
        if char in _KEPT:
            parts.append(char)
        else:
            # surrogatepass: any str round-trips, even one that is not valid Unicode text.
            parts.extend(f"_{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    token = "".join(parts)
    if len(token) > MAX_TOKEN:
        return "_h" + hashlib.sha256(topic.encode("utf-8", "surrogatepass")).hexdigest()
    return token


def topic_of_token(token: str) -> str | None:
    """The topic :func:`subject_token` wrote as ``token``; ``None`` for a hashed token or for one it
    cannot have written."""
    if token == "_":
        return ""
    if not _TOKEN.fullmatch(token):
        return None
    data = bytearray()
    i = 0
    while i < len(token):
        if token[i] == "_":
            data += bytes.fromhex(token[i + 1 : i + 3])
            i += 3
        else:
            data += token[i].encode("ascii")
            i += 1
    try:
        topic = data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    return topic if subject_token(topic) == token else None  # only the one way of writing it


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _address(client: NatsClient) -> str:
    """Where ``client`` is connected (host and port only: a URL may carry credentials)."""
    url = client.connected_url
    return "" if url is None else f"{url.hostname}:{url.port}"


class NatsBackend:
    """A :class:`~typed_ss.backends.base.Backend` over core NATS (extra ``nats``).

    Args:
        servers: one URL or several (a cluster's nodes); ``nats://127.0.0.1:4222`` when neither it
            nor ``client`` is given.
        client: a nats-py client the application connected and owns: the backend subscribes and
            publishes through it, never closes it, and watches its state (its callbacks remain the
            application's). Every connection option below is then the application's to set.
        group: the subjects' prefix: one or more tokens of ``[A-Za-z0-9_-]``, dot-separated.
        tls, tls_hostname: nats-py's TLS context and the name to check the certificate against.
        user_credentials, nkeys_seed, user, password, token: credentials, passed to nats-py.
        name: the connection's name in the servers' monitoring (default ``typed-ss <group>``).
        dont_randomize: connect to ``servers`` in the order given (nats-py shuffles them otherwise).
        publish_timeout: how long :meth:`publish` may take before it raises.
        subscribe_timeout: how long :meth:`subscribe` waits for the server's confirmation (past it,
            NATS is marked ``unresponsive`` and later subscriptions do not wait).
        max_backoff: the longest wait between connection attempts, in seconds.
        ping_interval: seconds between nats-py's pings; two unanswered ones end the connection.
        max_pending: received messages waiting for the bridge, at most (and per subscription in
            nats-py, before it drops for a slow consumer).
        max_pending_bytes: bytes waiting in one nats-py subscription, at most.
    """

    def __init__(
        self,
        servers: str | Sequence[str] | None = None,
        *,
        client: NatsClient | None = None,
        group: str = "typed-ss",
        tls: ssl.SSLContext | None = None,
        tls_hostname: str | None = None,
        user_credentials: str | Path | None = None,
        nkeys_seed: str | None = None,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        name: str | None = None,
        dont_randomize: bool = False,
        publish_timeout: float = 1.0,
        subscribe_timeout: float = 2.0,
        max_backoff: float = 1.0,
        ping_interval: int = 2,
        max_pending: int = 100_000,
        max_pending_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if servers is not None and client is not None:
            raise ConfigurationError("NatsBackend takes servers=... or client=..., not both")
        if not _GROUP.fullmatch(group):
            raise ConfigurationError(
                f"group must be dot-separated tokens of letters, digits, '_' and '-', not {group!r}"
            )
        if (user_credentials is not None or nkeys_seed is not None) and importlib.util.find_spec(
            "nkeys"
        ) is None:
            raise ConfigurationError(
                "user_credentials and nkeys_seed need the nkeys package: pip install 'typed-ss[nats]'"
            )
        if isinstance(servers, str):
            servers = [servers]
        self._servers = list(servers or ["nats://127.0.0.1:4222"])
        self._client = client
        self._owns_client = client is None
        self._prefix = group + "."
        self._probe_subject = self._prefix + _PROBE_TOKEN
        self._tls = tls
        self._tls_hostname = tls_hostname
        self._user_credentials = user_credentials
        self._nkeys_seed = nkeys_seed
        self._user = user
        self._password = password
        self._token = token
        self._name = name or f"typed-ss {group}"
        self._dont_randomize = dont_randomize
        self._publish_timeout = publish_timeout
        self._subscribe_timeout = subscribe_timeout
        self._max_backoff = max_backoff
        self._ping_interval = ping_interval
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._inbox: Inbox[tuple[str, bytes]] = Inbox(max_pending)
        self._wanted: dict[str, str] = {}  # subject -> topic: what the bridge subscribed
        self._subs: dict[str, Subscription] = {}  # subject -> nats-py's subscription on the client
        # Subjects whose subscription is still to be made on the client (recorded during an outage,
        # or not confirmed yet); the watcher makes them once NATS answers.
        self._unsent: set[str] = set()
        # Subscriptions unsubscribed while NATS did not answer: the watcher tells the server later.
        self._leaving: list[Subscription] = []
        # One subscription change at a time: a subscribe and the watcher's resubscription must not
        # both subscribe a subject (nats-py would deliver its messages twice).
        self._changing = asyncio.Lock()
        self._state: BackendState = "stopped"
        self._running = False
        self._reconnects = 0
        self._failures = 0  # connection attempts failed in a row
        self._last_error = ""
        self._server = ""  # host:port of the server last connected to
        self._seen_reconnects = 0  # an application's client: its own count, as last seen
        self._slow_consumer = 0
        self._rejected = 0
        self._settled = asyncio.Event()  # the first connection worked or failed once
        self._wake = asyncio.Event()
        self._backoff = Backoff(cap=max_backoff)
        self._attempting = False  # a first connection attempt is under way (see _connect)
        self._rotation = 0  # failed attempts: each one starts at the next server
        self._task = Supervised("nats connection", self._run, log=logger)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start connecting; return once connected, or once the first attempt failed, or after
        ``subscribe_timeout``. The connection is made (and made again) in the background, so a NATS
        that is not reachable does not stop the server from starting (its sockets get local delivery
        meanwhile)."""
        if self._running:
            return
        self._running = True
        self._state = "connecting"
        self._settled.clear()
        self._inbox.open()
        self._task.start()
        await self._first_connection(self._subscribe_timeout)

    async def stop(self) -> None:
        self._running = False
        await self._task.stop()
        client = self._client
        if client is not None:
            if self._owns_client:
                self._client = None
                await self._close(client)
            else:
                for sub in list(self._subs.values()):
                    with contextlib.suppress(*_GONE):
                        async with asyncio.timeout(self._subscribe_timeout):
                            await sub.unsubscribe()
        self._subs.clear()
        self._leaving.clear()
        self._unsent = set(self._wanted)
        self._state = "stopped"
        self._inbox.close()

    # --- the Backend interface ---------------------------------------------------------------------

    def subject(self, topic: str) -> str:
        """The NATS subject that carries ``topic``."""
        return self._prefix + subject_token(topic)

    async def publish(self, topic: str, data: bytes) -> None:
        client = self._client
        if not self._running or client is None:
            raise BackendError("the NATS backend is not started")
        if self._state == "connecting":
            await self._first_connection(self._publish_timeout)
            client = self._client
            if client is None:
                raise BackendError("NATS is not connected yet")
        if not client.is_connected:
            raise BackendError(f"NATS is not connected ({self._last_error or self._state})")
        if len(data) > client.max_payload:
            self._reject(topic, len(data), client.max_payload)
            return
        if client.pending_data_size > MAX_UNFLUSHED:
            self._unresponsive(f"{client.pending_data_size} bytes wait to be sent")
            raise BackendError("NATS is not taking messages: nats-py's buffer is full")
        try:
            async with asyncio.timeout(self._publish_timeout):
                await client.publish(self.subject(topic), data)
        except nats_errors.MaxPayloadError:
            self._reject(topic, len(data), client.max_payload)
        except _GONE as exc:
            raise BackendError(f"publishing to NATS failed: {_describe(exc)}") from exc

    async def subscribe(self, topic: str) -> None:
        subject = self.subject(topic)
        self._wanted[subject] = topic
        self._unsent.add(subject)
        await self._first_connection(self._subscribe_timeout)
        client = self._client
        if client is None or self._state != "connected" or not client.is_connected:
            self._wake.set()  # made once NATS answers
            return
        if not await self._send_unsent(client):
            self._wake.set()
            return
        if not await self._round_trip(client):
            self._unresponsive(
                f"subscribing to {subject} was not confirmed within {self._subscribe_timeout} s"
            )

    async def unsubscribe(self, topic: str) -> None:
        subject = self.subject(topic)
        self._wanted.pop(subject, None)
        self._unsent.discard(subject)
        async with self._changing:
            sub = self._subs.pop(subject, None)
            if sub is None:
                return
            if self._state == "unresponsive":
                # nats-py would queue it behind writes the server does not take, and wait there
                # however it is cancelled: the watcher unsubscribes it once NATS answers.
                self._leaving.append(sub)
                return
            await self._unsubscribe(sub)

    async def _unsubscribe(self, sub: Subscription) -> None:
        # While nats-py reconnects it only forgets the subscription (the new connection will not
        # have it); otherwise it tells the server.
        with contextlib.suppress(*_GONE):
            async with asyncio.timeout(self._subscribe_timeout):
                await sub.unsubscribe()
        raise_if_cancelled()  # nats-py's flush may swallow the cancellation

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._inbox.messages()

    async def _first_connection(self, timeout: float) -> None:
        """While the first connection is being made, wait (at most ``timeout``) until it works or an
        attempt failed: from then on nothing waits for it."""
        if self._state == "connecting":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._settled.wait()

    def health(self) -> BackendHealth:
        return BackendHealth(
            name="nats",
            state=self._state if self._running else "stopped",
            reconnects=self._reconnects,
            detail={
                "subjects": len(self._wanted),
                "pending": len(self._inbox),
                "dropped": self._inbox.dropped + self._slow_consumer,
                "slow_consumer": self._slow_consumer,
                "rejected": self._rejected,
                "last_error": self._last_error,
                "server": self._server if self._state in ("connected", "unresponsive") else "",
            },
            tasks=[self._task.health()],
        )

    # --- the connection ----------------------------------------------------------------------------

    async def _run(self) -> None:
        """Connect (or watch the application's client), and keep the subscriptions made; runs under
        the supervisor until the backend stops."""
        if not self._owns_client:
            assert self._client is not None
            await self._watch(self._client)
            return
        while self._running:
            raise_if_cancelled()  # nats-py may swallow the cancellation that stops this task
            client = NatsClient()
            self._client = client
            self._subs.clear()  # a new client has none: make every wanted one again
            self._leaving.clear()
            self._unsent = set(self._wanted)
            try:
                await self._connect(client)
            except _AttemptFailed:
                # Logged and recorded by _error. A fresh client for the next attempt, on the next server.
                self._client = None
                await self._close(client)
                self._rotation += 1
                await asyncio.sleep(self._backoff.failed())
                continue
            except BaseException:
                self._client = None
                await self._close(client)
                raise
            try:
                await self._watch(client)  # returns if nats-py closed the client
            except BaseException:
                self._client = None
                await self._close(client)
                raise
            why = f"nats-py closed the client: {self._last_error or 'no reason given'}"
            if self._state in ("connected", "unresponsive"):
                self._lost(why)
            else:
                logger.error("cannot reach NATS (%s): making a new client", why)
            self._client = None
            await self._close(client)
            await asyncio.sleep(self._backoff.failed())

    async def _connect(self, client: NatsClient) -> None:
        """One attempt to connect ``client``. Until it worked, this backend's loop retries, not
        nats-py's: a failed attempt raises :class:`_AttemptFailed` out of nats-py (from :meth:`_error`),
        so nats-py never closes a failed attempt's connection itself. (Stopping the backend cancels
        the attempt, and a cancellation landing in nats-py's cleanup of a failed attempt would leave
        the client marked closed and that connection open for ever after.) From then on nats-py
        reconnects by itself, and never gives up."""
        count = len(self._servers)
        first = self._rotation % count  # each attempt starts at the next server
        self._attempting = True
        try:
            await client.connect(
                [*self._servers[first:], *self._servers[:first]],
                error_cb=self._error,
                disconnected_cb=self._disconnected,
                reconnected_cb=self._reconnected,
                closed_cb=self._closed,
                name=self._name,
                allow_reconnect=True,
                max_reconnect_attempts=-1,  # never give up
                # nats-py annotates whole seconds, and sleeps for any number of them.
                reconnect_time_wait=self._max_backoff,  # type: ignore[arg-type]
                ping_interval=self._ping_interval,
                max_outstanding_pings=2,
                dont_randomize=self._dont_randomize,
                no_echo=True,
                tls=self._tls,
                tls_hostname=self._tls_hostname,
                user_credentials=self._user_credentials,
                nkeys_seed=self._nkeys_seed,
                user=self._user,
                password=self._password,
                token=self._token,
                # No buffer for publishes made while disconnected: publish raises instead (see the
                # module docstring), and the bridge's outbox keeps them.
                pending_size=0,
            )
        finally:
            self._attempting = False

    async def _watch(self, client: NatsClient) -> None:
        """Until nats-py closes ``client`` (or for ever, for the application's client): once it is
        connected, send the subscriptions not made yet and confirm them; then mark it connected."""
        while True:
            self._wake.clear()
            if client.is_closed and self._owns_client:
                return
            if not self._owns_client:
                self._observe(client)
            if client.is_connected:
                if self._state in ("connecting", "reconnecting"):
                    # Connected (again): nats-py has sent the subscriptions it knew; send the ones
                    # made meanwhile, and count as connected once the server confirmed them all.
                    if await self._send_unsent(client) and await self._round_trip(client):
                        self._up(client)
                elif self._state == "unresponsive":
                    # Nothing more is queued in nats-py for a server that does not read: only a
                    # round trip, until it answers; then the subscriptions made meanwhile, confirmed,
                    # before it counts as answering again.
                    if (
                        await self._round_trip(client)
                        and await self._send_unsent(client)
                        and await self._round_trip(client)
                    ):
                        self._answered()
                elif self._unsent:
                    await self._send_unsent(client)
                elif self._leaving:
                    async with self._changing:
                        leaving, self._leaving = self._leaving, []
                        for sub in leaving:
                            await self._unsubscribe(sub)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_TICK):
                    await self._wake.wait()

    async def _send_unsent(self, client: NatsClient) -> bool:
        """Subscribe on ``client`` to every wanted subject it lacks; whether they were all sent."""
        async with self._changing:
            while self._unsent:
                if client is not self._client or not client.is_connected:
                    return False
                subject = self._unsent.pop()
                topic = self._wanted.get(subject)
                if topic is None or subject in self._subs:
                    continue
                started = time.monotonic()
                try:
                    async with asyncio.timeout(self._subscribe_timeout):
                        self._subs[subject] = await client.subscribe(
                            subject,
                            cb=self._receiver(topic),
                            pending_msgs_limit=self._max_pending,
                            pending_bytes_limit=self._max_pending_bytes,
                        )
                except _GONE as exc:
                    self._unsent.add(subject)
                    self._last_error = _describe(exc)
                    return False
                # nats-py's flush swallows the cancellation of a timeout, or of this task: a subscribe
                # it held longer than the timeout means the server does not read.
                raise_if_cancelled()
                if time.monotonic() - started > self._subscribe_timeout:
                    self._unresponsive(f"subscribing took more than {self._subscribe_timeout} s")
                    return False
        return True

    def _receiver(self, topic: str) -> Callable[[Msg], Awaitable[None]]:
        """The callback of ``topic``'s subscription: nats-py runs it in the subscription's own task,
        in the order the messages arrived."""
        inbox = self._inbox

        async def receive(msg: Msg) -> None:
            inbox.put((topic, msg.data))

        return receive

    async def _round_trip(self, client: NatsClient) -> bool:
        """Whether the server answered, within ``subscribe_timeout``, a request sent after everything
        sent so far: nobody serves the probe subject, and the server says so ("no responders") once
        it processed the request, and so everything before it."""
        try:
            await client.request(self._probe_subject, timeout=self._subscribe_timeout)
        except nats_errors.NoRespondersError:
            return True
        except _GONE as exc:
            self._last_error = (
                f"no answer from NATS within {self._subscribe_timeout} s (hung, or older than 2.2)"
                if isinstance(exc, TimeoutError)
                else _describe(exc)
            )
            return False
        return True  # someone answers on the probe subject: an answer all the same

    async def _close(self, client: NatsClient) -> None:
        """Close a client this backend made, within :data:`CLOSE_TIMEOUT`, even when the backend's task
        is cancelled meanwhile: nats-py marks a client closed as it starts closing it, and a close
        cut short would leave its connection open for ever after (a second close does nothing)."""
        closing = asyncio.create_task(client.close())
        try:
            await asyncio.wait([closing], timeout=CLOSE_TIMEOUT)
        except asyncio.CancelledError:
            await asyncio.wait([closing], timeout=CLOSE_TIMEOUT)
            raise
        finally:
            if closing.done():
                if not closing.cancelled() and closing.exception() is not None:
                    logger.debug("closing the NATS client failed", exc_info=closing.exception())
            else:
                closing.cancel()

    # --- state, from nats-py's callbacks (or, for the application's client, from watching it) ------

    async def _error(self, exc: Exception) -> None:
        if isinstance(exc, nats_errors.SlowConsumerError):
            self._slow_consumer += 1
            if self._slow_consumer % SLOW_CONSUMER_LOG_EVERY == 1:
                logger.warning(
                    "nats-py dropped a message on %s: this instance reads too slowly (%d dropped so far)",
                    exc.subject,
                    self._slow_consumer,
                )
            return
        if not self._running and not self._attempting:
            return
        self._last_error = _describe(exc)
        if self._state in ("connected", "unresponsive"):
            if not isinstance(exc, (nats_errors.StaleConnectionError, OSError)):
                # Not the loss of the connection (that is logged once, by _disconnected), but
                # something the server refused on a working one, such as a permissions violation.
                logger.error("NATS at %s reported an error: %s", self._server, self._last_error)
            return
        self._failures += 1
        if self._failures == 1 or self._failures % LOG_EVERY == 0:
            logger.error(
                "cannot reach NATS (%s; %d failures in a row): still trying", self._last_error, self._failures
            )
        if self._state == "connecting":
            self._state = "reconnecting"  # subscriptions stop waiting for the first connection
            self._settled.set()
        if self._attempting:
            raise _AttemptFailed(self._last_error) from exc

    async def _disconnected(self) -> None:
        if self._running and self._state in ("connected", "unresponsive"):
            self._lost(self._last_error or "the connection ended")

    async def _reconnected(self) -> None:
        self._wake.set()  # the watcher sends what is missing, and marks the backend connected

    async def _closed(self) -> None:
        self._wake.set()

    def _observe(self, client: NatsClient) -> None:
        """Follow the application's client, whose callbacks are its own: a connection lost, or a
        reconnection made between two looks, is a loss."""
        reconnects = client.stats["reconnects"]
        if self._state in ("connected", "unresponsive") and (
            not client.is_connected or reconnects != self._seen_reconnects
        ):
            self._lost(
                "the NATS client reconnected" if client.is_connected else "the NATS client is disconnected"
            )
        self._seen_reconnects = reconnects
        if client.is_closed:
            self._last_error = "the NATS client was closed by its owner"

    def _lost(self, why: str) -> None:
        """A working connection is gone."""
        self._reconnects += 1
        self._failures = 1  # the loss is logged here; the attempts that fail next from the 20th
        self._state = "reconnecting"
        logger.error("lost the connection to NATS at %s (%s): reconnecting", self._server, why)

    def _up(self, client: NatsClient) -> None:
        """Connected, and every wanted subscription confirmed."""
        self._server = _address(client)
        if self._state == "reconnecting":
            logger.warning("reconnected to NATS at %s", self._server)
        else:
            logger.info("connected to NATS at %s", self._server)
        self._state = "connected"
        self._failures = 0
        self._last_error = ""
        self._seen_reconnects = client.stats["reconnects"]
        self._backoff.succeeded()
        self._settled.set()

    def _unresponsive(self, why: str) -> None:
        if self._state == "connected":
            self._state = "unresponsive"
            self._last_error = why
            logger.warning("NATS at %s is not answering (%s)", self._server, why)
            self._wake.set()  # the watcher probes until it answers

    def _answered(self) -> None:
        if self._state == "unresponsive":
            self._state = "connected"
            logger.warning("NATS at %s answers again", self._server)

    def _reject(self, topic: str, size: int, limit: int) -> None:
        # NATS will never take it (its max_payload): retrying would hold up every later message.
        self._rejected += 1
        logger.error(
            "NATS refuses messages over %d bytes (its max_payload): a %d-byte message on %r was dropped",
            limit,
            size,
            topic,
        )
