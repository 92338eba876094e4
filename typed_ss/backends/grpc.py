"""The gRPC backend: instances talk to each other directly, a static full mesh with no broker.

``GrpcBackend(listen="127.0.0.1:30001", peers=["127.0.0.1:30002", "node3@10.0.0.3:30001"],
tls=TLSConfig(ca=..., cert=..., key=...), shared_key=b"...")`` (extra ``grpc``). Each instance
listens on ``listen`` and opens **one long-lived stream to each peer**
(``proto/typed_ss/multihome/v1/multihome.proto``): on it the instance publishes the casts that peer
wants, and the peer tells it which topics it wants. A peer is ``host:port`` or
``servername@host:port``, the servername being the name its TLS certificate is checked against
(``host`` when not given). A node must not list itself (it notices, and drops that entry).

- **Secured by default.** TLS with a CA, a certificate and a key (``TLSConfig``; ``mutual=True`` also
  makes every peer present a certificate from the CA), and on every stream a token: HMAC-SHA256 with
  the mesh's ``shared_key`` over the sending node's name and an expiry. The receiver checks it
  (constant-time, expiry with a small clock-skew allowance) before reading anything; the sender sends
  a fresh one on the stream before it expires. Plaintext only with an explicit ``insecure=True``,
  which logs a warning.
- **Interest routing.** Each instance tells its peers the topics it subscribes to (the whole set on
  every new stream, then each change), and a publisher sends a message only to the peers that want
  its topic. ``subscribe`` returns once every connected peer has acknowledged the change (or after
  ``subscribe_timeout``: a peer that does not answer is marked lagging and not waited for again until
  it answers); a peer that is down gets the whole set when it connects.
- **Nothing waits on a peer.** ``publish`` only queues: each peer has its own bounded outbox
  (drop-oldest, counted) drained by its own task, so a slow, hung or dead peer delays no other.
  Every wait on a peer has a time limit (connecting, each write, acknowledgements); both ends of a
  stream send a heartbeat when idle for ``keepalive`` (2 s) and end a stream on which the peer sent
  nothing for three intervals, so a hung peer is let go; a lost link is made again with a backoff
  capped at 2 s (at once when the peer itself connects). A link to a peer that comes back with the
  same boot number sends what its outbox kept; a restarted peer (a new boot number) starts empty.
- Health: every peer's link state, outbox and counters are in ``ss.health()``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, cast

from typed_ss.backends.base import BackendHealth, BackendState
from typed_ss.errors import BackendError, ConfigurationError, MissingDependencyError
from typed_ss.supervision import Backoff, Supervised

try:
    import grpc
    from grpc import aio

    from typed_ss.backends._grpc import multihome_pb2 as pb
    from typed_ss.backends._grpc import multihome_pb2_grpc as pb_grpc
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError("grpcio", "grpc") from exc

__all__ = ["GrpcBackend", "TLSConfig", "make_token", "verify_token"]

logger = logging.getLogger("typed_ss.backends.grpc")

TOKEN_VERSION: Final = "v1"
_TOKEN_CONTEXT: Final = b"typed-ss multihome token v1\x00"


_SHUTTING_DOWN: Final = "the peer is shutting down"


class TokenError(Exception):
    """A peer's token is missing, malformed, badly signed or expired."""


def make_token(key: bytes, issuer: str, expires: int) -> str:
    """A token saying that ``issuer`` holds ``key``, valid until ``expires`` (Unix seconds)."""
    name = base64.urlsafe_b64encode(issuer.encode()).decode().rstrip("=")
    mac = hmac.new(key, _TOKEN_CONTEXT + f"{name}.{expires}".encode(), hashlib.sha256).digest()
    return f"{TOKEN_VERSION}.{name}.{expires}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def verify_token(key: bytes, token: str, *, now: float | None = None, skew: float = 30.0) -> tuple[str, int]:
    """Check a token made by :func:`make_token`; returns ``(issuer, expires)``.

    Raises:
        TokenError: malformed, signed with another key, or expired more than ``skew`` seconds ago.
    """
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != TOKEN_VERSION or not parts[2].isdigit():
        raise TokenError("malformed token")
    _, name, expires_text, signature = parts
    expected = hmac.new(key, _TOKEN_CONTEXT + f"{name}.{expires_text}".encode(), hashlib.sha256).digest()
    try:
        given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        issuer = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise TokenError("malformed token") from exc
    if not hmac.compare_digest(given, expected):
        raise TokenError("bad token signature (another shared key?)")
    expires = int(expires_text)
    if expires + skew < (time.time() if now is None else now):
        raise TokenError("expired token")
    return issuer, expires


@dataclass(frozen=True)
class TLSConfig:
    """The mesh's TLS material: PEM file paths (or the PEM bytes themselves).

    ``ca`` signs every node's certificate and is the only trust root; ``cert`` and ``key`` are this
    node's. With ``mutual=True`` a node also refuses peers that present no certificate from ``ca``.
    """

    ca: str | os.PathLike[str] | bytes
    cert: str | os.PathLike[str] | bytes
    key: str | os.PathLike[str] | bytes
    mutual: bool = False

    def load(self) -> tuple[bytes, bytes, bytes]:
        """``(ca, cert, key)`` as PEM bytes."""
        return _pem(self.ca), _pem(self.cert), _pem(self.key)


def _pem(source: str | os.PathLike[str] | bytes) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


@dataclass(frozen=True)
class PeerAddress:
    """One entry of the peer list: ``host:port`` or ``servername@host:port``."""

    target: str
    servername: str

    @classmethod
    def parse(cls, entry: str) -> PeerAddress:
        servername, _, target = entry.rpartition("@")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"a peer is host:port or servername@host:port, not {entry!r}")
        return cls(target, servername or host.strip("[]"))


@dataclass
class _Inbound:
    """A stream a peer opened to this node: its publishes arrive on it, our interest leaves on it."""

    node: str
    boot: int
    control: asyncio.Queue[pb.Downstream | None] = field(default_factory=asyncio.Queue)
    acked: int = 0
    """The highest interest change the peer acknowledged."""
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    lagging: bool = False
    """Missed an acknowledgement deadline: subscribes do not wait for it until it answers again."""
    token_expires: float = float("inf")
    last_seen: float = field(default_factory=time.monotonic)
    received: int = 0
    connected_at: float = field(default_factory=time.monotonic)

    def acknowledge(self, ack_id: int) -> None:
        self.acked = max(self.acked, ack_id)
        if self.lagging:
            self.lagging = False
            logger.warning("peer %s answers again", self.node)
        still = []
        for wanted, future in self.waiters:
            if wanted <= self.acked:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((wanted, future))
        self.waiters = still

    def release(self) -> None:
        """The stream ended: nobody waits for this peer's acknowledgements any more."""
        for _, future in self.waiters:
            if not future.done():
                future.set_result(None)
        self.waiters = []


class _Peer:
    """This node's link to one peer: an outbox, and one task that keeps one stream to it open."""

    def __init__(
        self, address: PeerAddress, max_messages: int, max_bytes: int, max_backoff: float = 2.0
    ) -> None:
        self.address = address
        self.node = ""  # the peer's name, from its Welcome
        self.boot: int | None = None  # the peer's boot number, from its Welcome
        self.state: BackendState = "connecting"
        self.interest: set[str] = set()
        self.outbox: deque[tuple[str, bytes]] = deque()
        self.outbox_bytes = 0
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.control: deque[pb.Upstream] = deque()
        self.wake = asyncio.Event()  # something to send
        self.retry_now = asyncio.Event()  # the peer itself connected: skip the backoff
        self.attempted = asyncio.Event()  # the first connection attempt ended, either way
        self.link: Supervised | None = None  # the task that keeps one stream to the peer open
        self.is_self = False
        self.sent = 0
        self.dropped = 0
        self.discarded_on_restart = 0
        self.reconnects = 0
        self.restarts_seen = 0
        self.backoff = Backoff(cap=max_backoff)
        self.last_error = ""
        self.last_seen = 0.0  # when the peer last sent anything on the link (monotonic)

    def queue(self, topic: str, data: bytes) -> None:
        self.outbox.append((topic, data))
        self.outbox_bytes += len(data)
        while len(self.outbox) > self.max_messages or (
            self.outbox_bytes > self.max_bytes and len(self.outbox) > 1
        ):
            _, old = self.outbox.popleft()
            self.outbox_bytes -= len(old)
            self.dropped += 1
            if self.dropped % 1000 == 1:
                logger.warning(
                    "outbox for peer %s full: dropping the oldest; %d dropped so far",
                    self.address.target,
                    self.dropped,
                )
        self.wake.set()

    def take_batch(self, max_bytes: int) -> list[tuple[str, bytes]]:
        """The next messages to send, at most ``max_bytes`` of them (at least one)."""
        batch: list[tuple[str, bytes]] = []
        size = 0
        while self.outbox and (not batch or size + len(self.outbox[0][1]) <= max_bytes) and len(batch) < 512:
            topic, data = self.outbox.popleft()
            self.outbox_bytes -= len(data)
            size += len(data)
            if topic in self.interest:  # the peer may have unsubscribed since it was queued
                batch.append((topic, data))
        return batch

    def clear_outbox(self) -> int:
        count = len(self.outbox)
        self.outbox.clear()
        self.outbox_bytes = 0
        return count

    def health(self) -> dict[str, object]:
        return {
            "node": self.node,
            "state": "self (ignored)" if self.is_self else self.state,
            "outbox": len(self.outbox),
            "outbox_bytes": self.outbox_bytes,
            "sent": self.sent,
            "dropped": self.dropped,
            "discarded_on_restart": self.discarded_on_restart,
            "reconnects": self.reconnects,
            "restarts_seen": self.restarts_seen,
            "interest": len(self.interest),
            "last_error": self.last_error,
        }


class _Refused(Exception):
    """The peer refused this node (authentication) or the handshake broke the protocol."""


class GrpcBackend:
    """A :class:`~typed_ss.backends.base.Backend` over a static gRPC full mesh (extra ``grpc``)."""

    def __init__(
        self,
        listen: str,
        peers: Sequence[str],
        *,
        tls: TLSConfig | None = None,
        shared_key: bytes | str | None = None,
        insecure: bool = False,
        name: str | None = None,
        token_ttl: float = 600.0,
        clock_skew: float = 30.0,
        connect_timeout: float = 2.0,
        write_timeout: float = 2.0,
        subscribe_timeout: float = 1.0,
        start_timeout: float = 3.0,
        keepalive: float = 2.0,
        max_backoff: float = 2.0,
        outbox_messages: int = 10_000,
        outbox_bytes: int = 64 * 1024 * 1024,
        max_message_bytes: int = 16 * 1024 * 1024,
        batch_bytes: int = 1024 * 1024,
        max_pending: int = 100_000,
    ) -> None:
        if isinstance(shared_key, str):
            shared_key = shared_key.encode()
        if insecure:
            if tls is not None:
                raise ConfigurationError("GrpcBackend: insecure=True and tls=... contradict each other")
        else:
            if tls is None or not shared_key:
                raise ConfigurationError(
                    "GrpcBackend needs tls=TLSConfig(ca=..., cert=..., key=...) and shared_key=...; "
                    "a plaintext mesh must be asked for explicitly with insecure=True"
                )
        if shared_key is not None and len(shared_key) < 16:
            raise ConfigurationError("GrpcBackend: shared_key must be at least 16 bytes")
        if max_backoff > 2.0:
            raise ConfigurationError("GrpcBackend: max_backoff is capped at 2 s")
        self.listen = listen
        self.name = name or listen
        self.boot = secrets.randbits(63) or 1
        self._tls = tls
        self._key = shared_key or None
        self._insecure = insecure
        self._token_ttl = token_ttl
        self._skew = clock_skew
        self._connect_timeout = connect_timeout
        self._write_timeout = write_timeout
        self._subscribe_timeout = subscribe_timeout
        self._start_timeout = start_timeout
        self._keepalive = keepalive
        self._silence_limit = 3 * keepalive
        self._max_backoff = max_backoff
        self._max_message_bytes = max_message_bytes
        self._batch_bytes = min(batch_bytes, max_message_bytes // 2)
        addresses = [PeerAddress.parse(entry) for entry in peers]
        self._peers = [_Peer(address, outbox_messages, outbox_bytes, max_backoff) for address in addresses]
        self._interest: set[str] = set()
        self._interest_ids = 0
        self._inbound: dict[str, _Inbound] = {}
        self._pending: deque[tuple[str, bytes]] = deque(maxlen=max_pending)
        self._arrived = asyncio.Event()
        self._links_changed = asyncio.Event()  # a link came up or an attempt ended
        self._server: aio.Server | None = None
        self._state: BackendState = "stopped"
        self._token: tuple[str, float] | None = None  # the current token and when to refresh it
        self._ca = self._cert = self._pkey = b""
        self.port = 0
        self.counters: dict[str, int] = dict.fromkeys(
            ("refused", "too_large", "received", "inbound_streams", "lagging_acks", "silent_peers"), 0
        )

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tls is not None:
            self._ca, self._cert, self._pkey = self._tls.load()
        else:
            logger.warning(
                "gRPC multihome mesh on %s runs INSECURE: plaintext%s; use it only on a trusted network",
                self.listen,
                ", peers authenticated with the shared key" if self._key else " and no authentication",
            )
        server = aio.server(options=self._server_options())
        pb_grpc.add_MeshServicer_to_server(_Servicer(self), server)
        try:
            if self._tls is not None:
                credentials = grpc.ssl_server_credentials(
                    [(self._pkey, self._cert)],
                    root_certificates=self._ca if self._tls.mutual else None,
                    require_client_auth=self._tls.mutual,
                )
                self.port = server.add_secure_port(self.listen, credentials)
            else:
                self.port = server.add_insecure_port(self.listen)
        except RuntimeError as exc:
            raise BackendError(f"cannot listen on {self.listen}: {exc}") from exc
        if not self.port:
            raise BackendError(f"cannot listen on {self.listen}")
        await server.start()
        self._server = server
        self._state = "connecting"
        for peer in self._peers:
            peer.link = Supervised(
                f"grpc link to {peer.address.target}", functools.partial(self._link, peer), log=logger
            )
            peer.link.start()
        await self._linked_both_ways()

    async def _linked_both_ways(self) -> None:
        """Wait (at most ``start_timeout``) until every peer that is up is linked both ways: our
        stream to it is open, and its stream to us (a peer that is down is not waited for)."""

        def settled(peer: _Peer) -> bool:
            if peer.is_self:
                return True
            if peer.state == "connected":
                return peer.node in self._inbound
            return peer.attempted.is_set()

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._start_timeout):
                while not all(settled(peer) for peer in self._peers):
                    self._links_changed.clear()
                    await self._links_changed.wait()

    async def stop(self) -> None:
        self._state = "stopped"
        for peer in self._peers:
            if peer.link is not None:
                await peer.link.stop()
            peer.state = "stopped"
        for inbound in self._inbound.values():
            inbound.release()
            inbound.control.put_nowait(None)
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace=0.5)
        self._inbound.clear()
        self._arrived.set()

    # --- the Backend interface ---------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        if self._state == "stopped":
            raise BackendError("the gRPC backend is not started")
        if len(data) + len(topic) + 64 > self._max_message_bytes:
            self.counters["too_large"] += 1
            logger.error(
                "dropped a %d-byte message on %r: larger than max_message_bytes (%d)",
                len(data),
                topic,
                self._max_message_bytes,
            )
            return
        for peer in self._peers:
            if topic in peer.interest:
                peer.queue(topic, data)

    async def subscribe(self, topic: str) -> None:
        if topic in self._interest:
            return
        self._interest.add(topic)
        await self._announce(pb.Interest(subscribe=[topic]))

    async def unsubscribe(self, topic: str) -> None:
        if topic not in self._interest:
            return
        self._interest.discard(topic)
        await self._announce(pb.Interest(unsubscribe=[topic]), wait=False)

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        while self._state != "stopped":
            while self._pending:
                yield self._pending.popleft()
            self._arrived.clear()
            await self._arrived.wait()

    def health(self) -> BackendHealth:
        return BackendHealth(
            name="grpc",
            state=self._overall_state(),
            reconnects=sum(peer.reconnects for peer in self._peers),
            detail={
                "node": self.name,
                "listen": self.listen,
                "port": self.port,
                "secure": not self._insecure,
                "mutual_tls": bool(self._tls and self._tls.mutual),
                "topics": len(self._interest),
                "pending": len(self._pending),
                "peers": {peer.address.target: peer.health() for peer in self._peers},
                "inbound": {
                    node: {"lagging": inbound.lagging, "received": inbound.received}
                    for node, inbound in self._inbound.items()
                },
                **self.counters,
            },
            tasks=[peer.link.health() for peer in self._peers if peer.link is not None],
        )

    def interested_peers(self, topic: str) -> set[str]:
        """The names of the peers that told this node they want ``topic``."""
        return {peer.node for peer in self._peers if peer.state == "connected" and topic in peer.interest}

    def _overall_state(self) -> BackendState:
        if self._state == "stopped":
            return "stopped"
        links = [peer for peer in self._peers if not peer.is_self]
        if all(peer.state == "connected" for peer in links):
            return "connected"
        if any(peer.reconnects or peer.state == "reconnecting" for peer in links):
            return "reconnecting"
        return "connecting"

    # --- our interest, told to every peer's stream to us -------------------------------------------

    async def _announce(self, change: pb.Interest, *, wait: bool = True) -> None:
        self._interest_ids += 1
        change.id = self._interest_ids
        loop = asyncio.get_running_loop()
        waiting: list[tuple[_Inbound, asyncio.Future[None]]] = []
        for inbound in self._inbound.values():
            message = pb.Downstream()
            message.interest.CopyFrom(change)
            inbound.control.put_nowait(message)
            if wait and not inbound.lagging:
                future: asyncio.Future[None] = loop.create_future()
                inbound.waiters.append((change.id, future))
                waiting.append((inbound, future))
        if not waiting:
            return
        _, late = await asyncio.wait([future for _, future in waiting], timeout=self._subscribe_timeout)
        for inbound, future in waiting:
            if future in late:
                future.cancel()
                if not inbound.lagging:
                    inbound.lagging = True
                    self.counters["lagging_acks"] += 1
                    logger.warning(
                        "peer %s did not acknowledge a subscription within %.1f s: not waiting for it "
                        "until it answers again",
                        inbound.node,
                        self._subscribe_timeout,
                    )

    # --- the receiving side (our gRPC server) ------------------------------------------------------

    def _check_token(self, token: str, node: str | None = None) -> tuple[str, float]:
        assert self._key is not None
        issuer, expires = verify_token(self._key, token, skew=self._skew)
        if node is not None and issuer != node:
            raise TokenError(f"the token was issued to {issuer!r}, not {node!r}")
        return issuer, expires + self._skew

    def _refuse(self, peer: str, reason: str) -> None:
        self.counters["refused"] += 1
        if self.counters["refused"] <= 10 or self.counters["refused"] % 100 == 0:
            logger.warning("refused a peer stream from %s: %s", peer, reason)

    async def _serve(
        self, requests: AsyncIterator[pb.Upstream], context: aio.ServicerContext[pb.Upstream, pb.Downstream]
    ) -> AsyncIterator[pb.Downstream]:
        """One peer's stream to us: check it, welcome the peer, then read its publishes while our
        interest changes are written to it."""
        issuer: str | None = None
        expires = float("inf")
        if self._key is not None:
            values = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
            try:
                if len(values) != 1 or not isinstance(values[0], str) or not values[0].startswith("Bearer "):
                    raise TokenError("no bearer token")
                issuer, expires = self._check_token(values[0].removeprefix("Bearer "))
            except TokenError as exc:
                self._refuse(context.peer(), str(exc))
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        try:
            async with asyncio.timeout(self._connect_timeout):
                first = await anext(aiter(requests))
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no hello")
        if first.WhichOneof("kind") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a hello")
        node, boot = first.hello.node, first.hello.boot
        if issuer is not None and issuer != node:
            self._refuse(context.peer(), f"node {node!r} sent a token issued to {issuer!r}")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the token names another node")
        if boot == self.boot:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "a node must not connect to itself")
        inbound = _Inbound(node, boot, token_expires=expires)
        previous = self._inbound.get(node)
        if previous is not None:  # the peer's new stream supersedes one it gave up on
            previous.release()
            previous.control.put_nowait(None)
        self._inbound[node] = inbound
        self.counters["inbound_streams"] += 1
        # The whole interest set, taken with the registration: later changes follow on the stream.
        self._interest_ids += 1
        welcome = pb.Downstream()
        welcome.welcome.node = self.name
        welcome.welcome.boot = self.boot
        welcome.welcome.topics.extend(sorted(self._interest))
        welcome.welcome.id = self._interest_ids
        inbound.control.put_nowait(welcome)
        self._links_changed.set()
        for peer in self._peers:  # the peer is up: a link to it waiting out a backoff retries now
            if peer.state != "connected":
                peer.retry_now.set()
        reader = asyncio.create_task(self._read(inbound, requests), name=f"typed-ss grpc inbound {node}")
        try:
            tick = time.monotonic()
            while True:
                try:
                    async with asyncio.timeout(self._keepalive):
                        message = await inbound.control.get()
                except TimeoutError:
                    message = pb.Downstream(interest=pb.Interest(id=0))  # a heartbeat
                if message is None:
                    break
                if self._silent(inbound, tick):
                    self.counters["silent_peers"] += 1
                    logger.error(
                        "peer %s sent nothing for %.1f s (hung?): ending its stream",
                        node,
                        self._silence_limit,
                    )
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "no heartbeat")
                tick = time.monotonic()
                if time.time() > inbound.token_expires:
                    self._refuse(node, "its token expired")
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "token expired")
                yield message
            if not reader.done():  # superseded by a newer stream, or stopping: end it for the peer too
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE,
                    _SHUTTING_DOWN if self._state == "stopped" else "stream closed",
                )
            if not reader.cancelled() and isinstance(reader.exception(), TokenError):
                self._refuse(node, str(reader.exception()))
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(reader.exception()))
        finally:
            reader.cancel()
            inbound.release()
            if self._inbound.get(node) is inbound:
                del self._inbound[node]

    async def _read(self, inbound: _Inbound, requests: AsyncIterator[pb.Upstream]) -> None:
        try:
            async for request in requests:
                inbound.last_seen = time.monotonic()
                if self._inbound.get(inbound.node) is not inbound:
                    return  # superseded by a newer stream from the same peer
                kind = request.WhichOneof("kind")
                if kind == "token":
                    _, inbound.token_expires = self._check_token(request.token, inbound.node)
                    continue
                if time.time() > inbound.token_expires:
                    raise TokenError("its token expired")
                if kind == "batch":
                    for message in request.batch.messages:
                        self._pending.append((message.topic, message.data))
                    inbound.received += len(request.batch.messages)
                    self.counters["received"] += len(request.batch.messages)
                    self._arrived.set()
                elif kind == "ack" and request.ack.id:  # id 0 is a heartbeat
                    inbound.acknowledge(request.ack.id)
        finally:
            inbound.control.put_nowait(None)

    # --- the sending side: one link per peer -------------------------------------------------------

    def _server_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.so_reuseport", 0),  # a port already in use is an error, never shared
            ("grpc.max_receive_message_length", self._max_message_bytes),
            ("grpc.max_send_message_length", self._max_message_bytes),
            ("grpc.keepalive_time_ms", int(self._keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", int(self._keepalive * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", int(self._keepalive * 500)),
            ("grpc.http2.min_ping_interval_without_data_ms", int(self._keepalive * 500)),
            ("grpc.http2.max_ping_strikes", 0),
        ]

    def _channel(self, peer: _Peer) -> aio.Channel:
        options: list[tuple[str, int | str]] = [
            ("grpc.use_local_subchannel_pool", 1),  # a fresh connection per attempt, never a stale one
            ("grpc.enable_retries", 0),  # retries are this backend's job
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", int(self._max_backoff * 1000)),
            ("grpc.max_receive_message_length", self._max_message_bytes),
            ("grpc.max_send_message_length", self._max_message_bytes),
            ("grpc.keepalive_time_ms", int(self._keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", int(self._keepalive * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if self._tls is None:
            return aio.insecure_channel(peer.address.target, options=options)
        options.append(("grpc.ssl_target_name_override", peer.address.servername))
        mutual = self._tls.mutual
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self._ca,
            private_key=self._pkey if mutual else None,
            certificate_chain=self._cert if mutual else None,
        )
        return aio.secure_channel(peer.address.target, credentials, options=options)

    def _silent(self, side: _Peer | _Inbound, tick: float) -> bool:
        """Whether the peer on this stream has sent nothing (not even a heartbeat) for too long.

        ``tick`` is when the caller last checked: a check that comes much later than it should
        means this process itself stalled (SIGSTOP, a blocked event loop), so the peer gets a fresh
        window instead of being blamed for our own silence.
        """
        now = time.monotonic()
        if now - tick > self._keepalive + self._write_timeout + 1.0:
            side.last_seen = now
        return now - side.last_seen > self._silence_limit

    def _current_token(self) -> str:
        """This node's token, made afresh once a third of its lifetime is left."""
        assert self._key is not None
        now = time.time()
        if self._token is None or now >= self._token[1]:
            expires = int(now + self._token_ttl)
            self._token = (make_token(self._key, self.name, expires), expires - self._token_ttl / 3)
        return self._token[0]

    async def _link(self, peer: _Peer) -> None:
        """Keep one stream to ``peer`` open; make it again with capped backoff whenever it fails."""
        while True:
            channel = self._channel(peer)
            try:
                await self._run_link(peer, channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                peer.last_error = _describe(exc)
                if peer.is_self:
                    logger.error("peer %s is this node itself: ignoring it", peer.address.target)
                    peer.clear_outbox()
                    peer.interest.clear()
                    await asyncio.Future()  # parked until the backend stops: there is nothing to link
                    return
                if peer.state == "connected":
                    peer.reconnects += 1
                    peer.backoff.succeeded()
                    logger.log(
                        logging.WARNING if _SHUTTING_DOWN in peer.last_error else logging.ERROR,
                        "lost the link to peer %s (%s): reconnecting",
                        peer.address.target,
                        peer.last_error,
                    )
                elif peer.backoff.failures == 0 or peer.backoff.failures % 20 == 0:
                    level = (
                        logging.ERROR if isinstance(exc, _Refused) or peer.boot is not None else logging.INFO
                    )
                    logger.log(
                        level, "cannot reach peer %s (%s): still trying", peer.address.target, peer.last_error
                    )
                peer.state = "reconnecting" if peer.boot is not None else "connecting"
                peer.backoff.failed()
            finally:
                peer.attempted.set()
                self._links_changed.set()
                with contextlib.suppress(Exception):
                    await asyncio.shield(channel.close(grace=None))
            peer.retry_now.clear()
            delay = peer.backoff.delay()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await peer.retry_now.wait()

    async def _run_link(self, peer: _Peer, channel: aio.Channel) -> None:
        async with asyncio.timeout(self._connect_timeout):
            # Connect first, so that an unreachable peer fails at once instead of at the deadline.
            state = channel.get_state(try_to_connect=True)
            while state != grpc.ChannelConnectivity.READY:
                if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                    raise ConnectionError("unreachable (connection or TLS handshake failed)")
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=True)
        stub = pb_grpc.MeshStub(channel)
        metadata = () if self._key is None else (("authorization", f"Bearer {self._current_token()}"),)
        call = stub.Connect(metadata=metadata, wait_for_ready=True)
        try:
            hello = pb.Upstream()
            hello.hello.node = self.name
            hello.hello.boot = self.boot
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await call.write(hello)
                    first = await call.read()
                if first is aio.EOF or not isinstance(first, pb.Downstream):
                    await call.wait_for_connection()  # raises the call's error
                    raise _Refused("the peer ended the stream without a welcome")
            except aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    peer.is_self = True
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                    raise _Refused(f"refused by the peer: {exc.details()}") from exc
                raise
            if first.WhichOneof("kind") != "welcome":
                raise _Refused("the peer's first message was not a welcome")
            self._welcomed(peer, first.welcome)
            await self._pump(peer, call)
        finally:
            call.cancel()

    def _welcomed(self, peer: _Peer, welcome: pb.Welcome) -> None:
        if peer.boot is not None and peer.boot != welcome.boot:
            peer.restarts_seen += 1
            discarded = peer.clear_outbox()
            peer.discarded_on_restart += discarded
            logger.warning(
                "peer %s restarted (new boot number): discarded %d queued messages meant for its "
                "previous run",
                peer.address.target,
                discarded,
            )
        elif peer.state == "reconnecting":
            logger.warning(
                "reconnected to peer %s; %d queued messages to send", peer.address.target, len(peer.outbox)
            )
        peer.node, peer.boot = welcome.node, welcome.boot
        peer.interest = set(welcome.topics)
        peer.control.clear()
        ack = pb.Upstream()
        ack.ack.id = welcome.id
        peer.control.append(ack)
        peer.state = "connected"
        peer.last_seen = time.monotonic()
        peer.backoff.succeeded()
        peer.last_error = ""
        self._links_changed.set()

    async def _pump(self, peer: _Peer, call: aio.StreamStreamCall[pb.Upstream, pb.Downstream]) -> None:
        """Run the stream: interest changes in, acknowledgements, token refreshes and batches out."""
        reader = asyncio.create_task(self._read_interest(peer, call))
        last_write = tick = time.monotonic()
        try:
            while True:
                if self._silent(peer, tick):
                    raise ConnectionError(f"the peer sent nothing for {self._silence_limit:.1f} s (hung?)")
                tick = time.monotonic()
                if reader.done():
                    reader.result()  # raises what ended the stream
                    raise ConnectionError("the peer ended the stream")
                message: pb.Upstream | None = None
                count = 0
                if peer.control:
                    message = peer.control.popleft()
                elif self._key is not None and self._token is not None and time.time() >= self._token[1]:
                    message = pb.Upstream(token=self._current_token())
                elif peer.outbox:
                    batch = peer.take_batch(self._batch_bytes)
                    if batch:
                        message = pb.Upstream()
                        message.batch.messages.extend(pb.Message(topic=t, data=d) for t, d in batch)
                        count = len(batch)
                if message is None and time.monotonic() - last_write >= self._keepalive:
                    message = pb.Upstream(ack=pb.Ack(id=0))  # a heartbeat
                if message is None:
                    peer.wake.clear()
                    wait = last_write + self._keepalive - time.monotonic()
                    if self._token is not None:
                        wait = min(wait, self._token[1] - time.time())
                    waker = asyncio.create_task(peer.wake.wait())
                    await asyncio.wait(
                        [waker, reader], timeout=max(0.0, wait), return_when=asyncio.FIRST_COMPLETED
                    )
                    waker.cancel()
                    continue
                async with asyncio.timeout(self._write_timeout):
                    await call.write(message)
                last_write = time.monotonic()
                peer.sent += count
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read_interest(
        self, peer: _Peer, call: aio.StreamStreamCall[pb.Upstream, pb.Downstream]
    ) -> None:
        while True:
            message = await call.read()
            peer.last_seen = time.monotonic()
            if message is aio.EOF or not isinstance(message, pb.Downstream):
                return
            if message.WhichOneof("kind") != "interest" or not message.interest.id:
                continue  # id 0: a heartbeat
            change = message.interest
            peer.interest.update(change.subscribe)
            peer.interest.difference_update(change.unsubscribe)
            ack = pb.Upstream()
            ack.ack.id = change.id
            peer.control.append(ack)
            peer.wake.set()


class _Servicer(pb_grpc.MeshServicer):
    def __init__(self, backend: GrpcBackend) -> None:
        self._backend = backend

    async def Connect(
        self, request_iterator: Iterable[pb.Upstream] | AsyncIterator[pb.Upstream], context: object
    ) -> AsyncIterator[pb.Downstream]:
        # An async generator function, so the asyncio server streams what it yields. It passes an
        # async iterator of requests and its own context.
        async for message in self._backend._serve(
            cast("AsyncIterator[pb.Upstream]", request_iterator),
            cast("aio.ServicerContext[pb.Upstream, pb.Downstream]", context),
        ):
            yield message


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return repr(exc)
