"""The sending side: one link per peer, which connects, says hello, and pumps the peer's outbox.

A :class:`PeerLink` keeps one long-lived stream to one peer open. Each attempt (:meth:`PeerLink.serve`)
checks the channel first (so that a refused connection or a failed TLS handshake fails at once),
opens the stream with this node's token, sends a hello and waits for the peer's welcome, which
carries the topics the peer wants; then it writes acknowledgements, token refreshes, batches from the
outbox and heartbeats, while it reads the peer's interest changes. A peer that sends nothing for
three keepalive intervals is taken for hung and the stream ends.

Reconnecting is the job of a :class:`~typed_ss.backends._support.Link` (state, counted losses,
logging, a backoff capped at ``max_backoff``, cut short when the peer itself connects), run under a
:class:`~typed_ss.supervision.Supervised` task. A peer that turns out to be this node itself is
parked: never linked to again until the backend stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import grpc
from grpc import aio

from typed_ss.backends._grpc import multihome_pb2 as pb
from typed_ss.backends._grpc import multihome_pb2_grpc as pb_grpc
from typed_ss.backends._support import Link
from typed_ss.backends.grpc.config import SHUTTING_DOWN, Credentials, Settings
from typed_ss.backends.grpc.peers import Peer
from typed_ss.backends.grpc.tokens import Tokens
from typed_ss.supervision import Supervised

__all__ = ["PeerLink", "Refused", "describe"]

logger = logging.getLogger("typed_ss.backends.grpc")


class Refused(Exception):
    """The peer refused this node (authentication) or the handshake broke the protocol."""


GONE = (grpc.RpcError, OSError, asyncio.InvalidStateError, Refused)
"""What a lost, unreachable or refusing peer raises (``InvalidStateError``: a write on a stream
that just ended)."""


def describe(exc: BaseException) -> str:
    """The ``last_error`` text of a failed link."""
    if isinstance(exc, aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return repr(exc)


def failure_level(exc: BaseException, was_working: bool) -> int | None:
    """How loud a failed link is: a peer that stops ends its streams saying so (:data:`SHUTTING_DOWN`),
    which is a warning; a refusal (a wrong key or certificate) is an error even before the peer was
    ever reached, since waiting will not cure it. Anything else: Link's default."""
    if SHUTTING_DOWN in describe(exc):
        return logging.WARNING
    if isinstance(exc, Refused):
        return logging.ERROR
    return None


class PeerLink:
    """This node's link to one peer: one stream at a time, made again whenever it is lost.

    Args:
        peer: the peer's bookkeeping (outbox, interest, counters).
        settings: this node's name, boot number and time limits.
        tokens: this node's tokens (``None``: the mesh has no shared key).
        changed: called when an attempt ends or the link comes up (``start()`` waits on it).
    """

    def __init__(
        self, peer: Peer, settings: Settings, tokens: Tokens | None, *, changed: Callable[[], None]
    ) -> None:
        self.peer = peer
        self._settings = settings
        self._tokens = tokens
        self._changed = changed
        self._credentials: Credentials | None = None
        self.link = Link(
            f"peer {peer.address.target}",
            self.serve,
            gone=GONE,
            log=logger,
            max_backoff=settings.max_backoff,
            describe=describe,
            quiet_until_first_contact=True,
            level=failure_level,
        )
        self.task = Supervised(f"grpc link to {peer.address.target}", self.link.run, log=logger)

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self, credentials: Credentials | None) -> None:
        """Start linking (TLS with ``credentials``, else plaintext)."""
        self._credentials = credentials
        self.task.start()

    async def stop(self) -> None:
        await self.task.stop()
        self.link.stopped()

    def retry_now(self) -> None:
        """The peer showed it is up: a link waiting out a backoff tries again at once."""
        if self.link.state != "connected":
            self.link.retry_now()

    @property
    def connected(self) -> bool:
        return self.link.state == "connected"

    def health(self) -> dict[str, object]:
        peer = self.peer
        return {
            "node": peer.node,
            "state": "self (ignored)" if peer.is_self else self.link.state,
            "outbox": len(peer.outbox),
            "outbox_bytes": peer.outbox.bytes,
            "sent": peer.sent,
            "dropped": peer.outbox.dropped,
            "discarded_on_restart": peer.discarded_on_restart,
            "reconnects": self.link.reconnects,
            "restarts_seen": peer.restarts_seen,
            "interest": len(peer.interest),
            "last_error": self.link.last_error,
        }

    # --- one attempt -------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Link to the peer and run the stream until it fails (the :class:`Link`'s ``serve``)."""
        try:
            await self._attempt()
        except GONE as exc:
            if self.peer.is_self:
                self.link.last_error = describe(exc)
                logger.error("peer %s is this node itself: ignoring it", self.peer.address.target)
                self.peer.itself()
                await asyncio.Future()  # parked until the backend stops: there is nothing to link
                return
            raise

    async def _attempt(self) -> None:
        channel = self._channel()
        try:
            await self._run(channel)
        finally:
            self.peer.attempted.set()
            self._changed()
            with contextlib.suppress(Exception):
                await asyncio.shield(channel.close(grace=None))

    def _channel(self) -> aio.Channel:
        settings = self._settings
        options: list[tuple[str, int | str]] = [
            ("grpc.use_local_subchannel_pool", 1),  # a fresh connection per attempt, never a stale one
            ("grpc.enable_retries", 0),  # retries are this backend's job
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", int(settings.max_backoff * 1000)),
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.keepalive_time_ms", int(settings.keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", int(settings.keepalive * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        address = self.peer.address
        if self._credentials is None:
            return aio.insecure_channel(address.target, options=options)
        options.append(("grpc.ssl_target_name_override", address.servername))
        return aio.secure_channel(address.target, self._credentials.channel, options=options)

    async def _run(self, channel: aio.Channel) -> None:
        settings = self._settings
        async with asyncio.timeout(settings.connect_timeout):
            # Connect first, so that an unreachable peer fails at once instead of at the deadline.
            state = channel.get_state(try_to_connect=True)
            while state != grpc.ChannelConnectivity.READY:
                if state in (grpc.ChannelConnectivity.TRANSIENT_FAILURE, grpc.ChannelConnectivity.SHUTDOWN):
                    raise ConnectionError("unreachable (connection or TLS handshake failed)")
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=True)
        stub = pb_grpc.MeshStub(channel)
        metadata = () if self._tokens is None else (("authorization", f"Bearer {self._tokens.current()}"),)
        call = stub.Connect(metadata=metadata, wait_for_ready=True)
        try:
            welcome = await self._handshake(call)
            self._welcomed(welcome)
            await self._pump(call)
        finally:
            call.cancel()

    async def _handshake(self, call: aio.StreamStreamCall[pb.Upstream, pb.Downstream]) -> pb.Welcome:
        """Say hello; returns the peer's welcome."""
        hello = pb.Upstream()
        hello.hello.node = self._settings.name
        hello.hello.boot = self._settings.boot
        try:
            async with asyncio.timeout(self._settings.connect_timeout):
                await call.write(hello)
                first = await call.read()
            if first is aio.EOF or not isinstance(first, pb.Downstream):
                await call.wait_for_connection()  # raises the call's error
                raise Refused("the peer ended the stream without a welcome")
        except aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
                self.peer.is_self = True
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise Refused(f"refused by the peer: {exc.details()}") from exc
            raise
        if first.WhichOneof("kind") != "welcome":
            raise Refused("the peer's first message was not a welcome")
        return first.welcome

    def _welcomed(self, welcome: pb.Welcome) -> None:
        peer = self.peer
        discarded = peer.welcomed(welcome.node, welcome.boot, welcome.topics)
        if discarded is not None:
            logger.warning(
                "peer %s restarted (new boot number): discarded %d queued messages meant for its "
                "previous run",
                peer.address.target,
                discarded,
            )
        back = self.link.state == "reconnecting" and discarded is None
        peer.acknowledge(welcome.id)
        self.link.connected()  # logs the reconnection
        if back and peer.outbox:
            logger.info("peer %s: %d queued messages to send", peer.address.target, len(peer.outbox))
        self._changed()

    async def _pump(self, call: aio.StreamStreamCall[pb.Upstream, pb.Downstream]) -> None:
        """Run the stream: interest changes in, acknowledgements, token refreshes and batches out."""
        peer, settings, tokens = self.peer, self._settings, self._tokens
        reader = asyncio.create_task(self._read_interest(call))
        last_write = tick = time.monotonic()
        try:
            while True:
                if settings.silent(peer, tick):
                    raise ConnectionError(f"the peer sent nothing for {settings.silence_limit:.1f} s (hung?)")
                tick = time.monotonic()
                if reader.done():
                    reader.result()  # raises what ended the stream
                    raise ConnectionError("the peer ended the stream")
                message: pb.Upstream | None = None
                count = 0
                if peer.control:
                    message = peer.control.popleft()
                elif tokens is not None and tokens.refresh_due():
                    message = pb.Upstream(token=tokens.current())
                elif peer.outbox:
                    batch = peer.take_batch(settings.batch_bytes)
                    if batch:
                        message = pb.Upstream()
                        message.batch.messages.extend(pb.Message(topic=t, data=d) for t, d in batch)
                        count = len(batch)
                if message is None and time.monotonic() - last_write >= settings.keepalive:
                    message = pb.Upstream(ack=pb.Ack(id=0))  # a heartbeat
                if message is None:
                    peer.wake.clear()
                    wait = last_write + settings.keepalive - time.monotonic()
                    if tokens is not None:
                        wait = min(wait, tokens.until_refresh())
                    waker = asyncio.create_task(peer.wake.wait())
                    await asyncio.wait(
                        [waker, reader], timeout=max(0.0, wait), return_when=asyncio.FIRST_COMPLETED
                    )
                    waker.cancel()
                    continue
                async with asyncio.timeout(settings.write_timeout):
                    await call.write(message)
                last_write = time.monotonic()
                peer.sent += count
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read_interest(self, call: aio.StreamStreamCall[pb.Upstream, pb.Downstream]) -> None:
        peer = self.peer
        while True:
            message = await call.read()
            peer.last_seen = time.monotonic()
            if message is aio.EOF or not isinstance(message, pb.Downstream):
                return
            if message.WhichOneof("kind") != "interest" or not message.interest.id:
                continue  # id 0: a heartbeat
            change = message.interest
            peer.interest_changed(change.subscribe, change.unsubscribe)
            peer.acknowledge(change.id)
