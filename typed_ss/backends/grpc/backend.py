"""The GrpcBackend: one node of the mesh, tying the receiving side and one link per peer together.

:class:`GrpcBackend` checks the configuration, listens (:class:`~.inbound.Inbound`), starts a
:class:`~.outbound.PeerLink` to every listed peer, queues each published message for the peers that
want its topic, hands what the peers send to the bridge (:class:`~typed_ss.backends._support.Inbox`),
and reports it all in :meth:`GrpcBackend.health`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence

from typed_ss.backends._support import Inbox
from typed_ss.backends.base import BackendHealth, BackendState
from typed_ss.backends.grpc.config import Credentials, PeerAddress, Settings, TLSConfig
from typed_ss.backends.grpc.inbound import Inbound
from typed_ss.backends.grpc.outbound import PeerLink
from typed_ss.backends.grpc.peers import Peer
from typed_ss.backends.grpc.tokens import Tokens
from typed_ss.errors import BackendError, ConfigurationError

__all__ = ["GrpcBackend"]

logger = logging.getLogger("typed_ss.backends.grpc")


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
        self._insecure = insecure
        self._start_timeout = start_timeout
        self._settings = Settings(
            name=self.name,
            boot=self.boot,
            connect_timeout=connect_timeout,
            write_timeout=write_timeout,
            subscribe_timeout=subscribe_timeout,
            keepalive=keepalive,
            max_backoff=max_backoff,
            max_message_bytes=max_message_bytes,
            batch_bytes=min(batch_bytes, max_message_bytes // 2),
        )
        self._tokens = Tokens(shared_key, self.name, ttl=token_ttl, skew=clock_skew) if shared_key else None
        addresses = [PeerAddress.parse(entry) for entry in peers]
        self._changed = asyncio.Event()  # a link came up, an attempt ended, or a peer's stream came
        self._links = [
            PeerLink(
                Peer(address, outbox_messages, outbox_bytes),
                self._settings,
                self._tokens,
                changed=self._changed.set,
            )
            for address in addresses
        ]
        self._inbox: Inbox[tuple[str, bytes]] = Inbox(max_pending)
        self._inbound = Inbound(
            self._settings, self._tokens, self._inbox, changed=self._changed.set, peer_up=self._retry_links
        )
        self._running = False
        self._too_large = 0
        self.port = 0

    @property
    def counters(self) -> dict[str, int]:
        """The node's counters: ``refused``, ``too_large``, ``received``, ``inbound_streams``,
        ``lagging_acks``, ``silent_peers``."""
        return {**self._inbound.counters, "too_large": self._too_large}

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        credentials = None
        if self._tls is not None:
            credentials = Credentials.load(self._tls)
        else:
            logger.warning(
                "gRPC multihome mesh on %s runs INSECURE: plaintext%s; use it only on a trusted network",
                self.listen,
                ", peers authenticated with the shared key" if self._tokens else " and no authentication",
            )
        self.port = await self._inbound.start(self.listen, credentials)
        self._running = True
        self._inbox.open()
        for link in self._links:
            link.start(credentials)
        await self._linked_both_ways()

    async def _linked_both_ways(self) -> None:
        """Wait (at most ``start_timeout``) until every peer that is up is linked both ways: our
        stream to it is open, and its stream to us (a peer that is down is not waited for)."""

        def settled(link: PeerLink) -> bool:
            if link.peer.is_self:
                return True
            if link.connected:
                return link.peer.node in self._inbound.streams
            return link.peer.attempted.is_set()

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._start_timeout):
                while not all(settled(link) for link in self._links):
                    self._changed.clear()
                    await self._changed.wait()

    async def stop(self) -> None:
        self._running = False
        for link in self._links:
            await link.stop()
        await self._inbound.stop()
        self._inbox.close()

    # --- the Backend interface ---------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        if not self._running:
            raise BackendError("the gRPC backend is not started")
        limit = self._settings.max_message_bytes
        if len(data) + len(topic) + 64 > limit:
            self._too_large += 1
            logger.error(
                "dropped a %d-byte message on %r: larger than max_message_bytes (%d)", len(data), topic, limit
            )
            return
        for link in self._links:
            if topic in link.peer.interest:
                link.peer.queue(topic, data)

    async def subscribe(self, topic: str) -> None:
        await self._inbound.subscribe(topic)

    async def unsubscribe(self, topic: str) -> None:
        await self._inbound.unsubscribe(topic)

    def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        return self._inbox.messages()

    def health(self) -> BackendHealth:
        return BackendHealth(
            name="grpc",
            state=self._overall_state(),
            reconnects=sum(link.link.reconnects for link in self._links),
            detail={
                "node": self.name,
                "listen": self.listen,
                "port": self.port,
                "secure": not self._insecure,
                "mutual_tls": bool(self._tls and self._tls.mutual),
                "topics": len(self._inbound.topics),
                "pending": len(self._inbox),
                "dropped": self._inbox.dropped,
                "peers": {link.peer.address.target: link.health() for link in self._links},
                "inbound": self._inbound.health(),
                **self.counters,
            },
            tasks=[link.task.health() for link in self._links],
        )

    def interested_peers(self, topic: str) -> set[str]:
        """The names of the peers that told this node they want ``topic``."""
        return {link.peer.node for link in self._links if link.connected and topic in link.peer.interest}

    def _overall_state(self) -> BackendState:
        if not self._running:
            return "stopped"
        links = [link.link for link in self._links if not link.peer.is_self]
        if all(link.state == "connected" for link in links):
            return "connected"
        if any(link.reconnects or link.state == "reconnecting" for link in links):
            return "reconnecting"
        return "connecting"

    def _retry_links(self) -> None:
        """A peer connected to this node: the links waiting out a backoff try again at once."""
        for link in self._links:
            link.retry_now()
