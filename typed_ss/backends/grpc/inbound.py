"""The receiving side: this node's gRPC server and the streams its peers open to it.

Each peer opens one long-lived stream to this node. :meth:`Inbound.serve` checks it (the token
before anything else, then the hello), welcomes the peer with this node's whole interest set, and
then, until the stream ends, hands the peer's batches to the backend's inbox while this node's
interest changes (:meth:`Inbound.subscribe`, :meth:`Inbound.unsubscribe`) and heartbeats are
written to it. A peer that sends nothing for three keepalive intervals is let go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import cast

import grpc
from grpc import aio

from typed_ss.backends._grpc import multihome_pb2 as pb
from typed_ss.backends._grpc import multihome_pb2_grpc as pb_grpc
from typed_ss.backends._support import Inbox
from typed_ss.backends.grpc.config import SHUTTING_DOWN, Credentials, Settings
from typed_ss.backends.grpc.peers import InboundStream
from typed_ss.backends.grpc.tokens import TokenError, Tokens
from typed_ss.errors import BackendError

__all__ = ["Inbound", "Servicer"]

logger = logging.getLogger("typed_ss.backends.grpc")


class Inbound:
    """This node's server, the streams peers opened to it, and this node's interest, told on them.

    Args:
        settings: this node's name, boot number and time limits.
        tokens: the token check (``None``: the mesh has no shared key).
        inbox: where the peers' publishes go.
        changed: called when a stream is registered (``start()`` waits for the mesh to be linked).
        peer_up: called when a peer opens a stream: it is up, so a link to it waiting out a backoff
            may try again at once.
    """

    def __init__(
        self,
        settings: Settings,
        tokens: Tokens | None,
        inbox: Inbox[tuple[str, bytes]],
        *,
        changed: Callable[[], None],
        peer_up: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._inbox = inbox
        self._changed = changed
        self._peer_up = peer_up
        self.streams: dict[str, InboundStream] = {}
        """The peers' streams to this node, by peer name."""
        self.topics: set[str] = set()
        """This node's interest: what it told its peers it wants."""
        self._change_ids = 0
        self._server: aio.Server | None = None
        self._stopping = False
        self.counters: dict[str, int] = dict.fromkeys(
            ("refused", "received", "inbound_streams", "lagging_acks", "silent_peers"), 0
        )

    # --- the server ---------------------------------------------------------------------------------

    async def start(self, listen: str, credentials: Credentials | None) -> int:
        """Listen on ``listen`` (TLS with ``credentials``, else plaintext); returns the port.

        Raises:
            BackendError: the address cannot be listened on.
        """
        self._stopping = False
        server = aio.server(options=self._server_options())
        pb_grpc.add_MeshServicer_to_server(Servicer(self), server)
        try:
            if credentials is not None:
                port = server.add_secure_port(listen, credentials.server)
            else:
                port = server.add_insecure_port(listen)
        except RuntimeError as exc:
            raise BackendError(f"cannot listen on {listen}: {exc}") from exc
        if not port:
            raise BackendError(f"cannot listen on {listen}")
        await server.start()
        self._server = server
        return port

    async def stop(self) -> None:
        """End every peer's stream (telling it this node shuts down) and stop the server."""
        self._stopping = True
        for stream in self.streams.values():
            stream.end()
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop(grace=0.5)
        self.streams.clear()

    def _server_options(self) -> list[tuple[str, int]]:
        settings = self._settings
        return [
            ("grpc.so_reuseport", 0),  # a port already in use is an error, never shared
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.keepalive_time_ms", int(settings.keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", int(settings.keepalive * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_recv_ping_interval_without_data_ms", int(settings.keepalive * 500)),
            ("grpc.http2.min_ping_interval_without_data_ms", int(settings.keepalive * 500)),
            ("grpc.http2.max_ping_strikes", 0),
        ]

    def health(self) -> dict[str, object]:
        """Every peer's stream to this node: whether it lags, and how many messages came on it."""
        return {
            node: {"lagging": stream.lagging, "received": stream.received}
            for node, stream in self.streams.items()
        }

    # --- our interest, told to every peer's stream to us -------------------------------------------

    async def subscribe(self, topic: str) -> None:
        """Want ``topic``; returns once every answering peer acknowledged it (see ``_announce``)."""
        if topic in self.topics:
            return
        self.topics.add(topic)
        await self._announce(pb.Interest(subscribe=[topic]))

    async def unsubscribe(self, topic: str) -> None:
        """Stop wanting ``topic`` (nobody waits for the acknowledgements)."""
        if topic not in self.topics:
            return
        self.topics.discard(topic)
        await self._announce(pb.Interest(unsubscribe=[topic]), wait=False)

    async def _announce(self, change: pb.Interest, *, wait: bool = True) -> None:
        """Tell every peer's stream; wait (at most ``subscribe_timeout``) for the acknowledgements
        of the peers that are not lagging. One that misses the deadline is marked lagging, and not
        waited for again until it answers."""
        self._change_ids += 1
        change.id = self._change_ids
        waiting: list[tuple[InboundStream, asyncio.Future[None]]] = []
        for stream in self.streams.values():
            message = pb.Downstream()
            message.interest.CopyFrom(change)
            stream.control.put_nowait(message)
            if wait and not stream.lagging:
                waiting.append((stream, stream.wait_for(change.id)))
        if not waiting:
            return
        timeout = self._settings.subscribe_timeout
        _, late = await asyncio.wait([future for _, future in waiting], timeout=timeout)
        for stream, future in waiting:
            if future in late:
                future.cancel()
                if not stream.lagging:
                    stream.lagging = True
                    self.counters["lagging_acks"] += 1
                    logger.warning(
                        "peer %s did not acknowledge a subscription within %.1f s: not waiting for it "
                        "until it answers again",
                        stream.node,
                        timeout,
                    )

    # --- the peers' streams ------------------------------------------------------------------------

    def _refuse(self, peer: str, reason: str) -> None:
        self.counters["refused"] += 1
        if self.counters["refused"] <= 10 or self.counters["refused"] % 100 == 0:
            logger.warning("refused a peer stream from %s: %s", peer, reason)

    async def serve(
        self, requests: AsyncIterator[pb.Upstream], context: aio.ServicerContext[pb.Upstream, pb.Downstream]
    ) -> AsyncIterator[pb.Downstream]:
        """One peer's stream to us: check it, welcome the peer, then read its publishes while our
        interest changes are written to it."""
        settings = self._settings
        issuer: str | None = None
        expires = float("inf")
        if self._tokens is not None:
            values = [v for k, v in context.invocation_metadata() or () if k == "authorization"]
            try:
                if len(values) != 1 or not isinstance(values[0], str) or not values[0].startswith("Bearer "):
                    raise TokenError("no bearer token")
                issuer, expires = self._tokens.check(values[0].removeprefix("Bearer "))
            except TokenError as exc:
                self._refuse(context.peer(), str(exc))
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        try:
            async with asyncio.timeout(settings.connect_timeout):
                first = await anext(aiter(requests))
        except (TimeoutError, StopAsyncIteration):
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no hello")
        if first.WhichOneof("kind") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a hello")
        node, boot = first.hello.node, first.hello.boot
        if issuer is not None and issuer != node:
            self._refuse(context.peer(), f"node {node!r} sent a token issued to {issuer!r}")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "the token names another node")
        if boot == settings.boot:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "a node must not connect to itself")
        stream = InboundStream(node, boot, token_expires=expires)
        previous = self.streams.get(node)
        if previous is not None:  # the peer's new stream supersedes one it gave up on
            previous.end()
        self.streams[node] = stream
        self.counters["inbound_streams"] += 1
        # The whole interest set, taken with the registration: later changes follow on the stream.
        self._change_ids += 1
        welcome = pb.Downstream()
        welcome.welcome.node = settings.name
        welcome.welcome.boot = settings.boot
        welcome.welcome.topics.extend(sorted(self.topics))
        welcome.welcome.id = self._change_ids
        stream.control.put_nowait(welcome)
        self._changed()
        self._peer_up()
        reader = asyncio.create_task(self._read(stream, requests), name=f"typed-ss grpc inbound {node}")
        try:
            tick = time.monotonic()
            while True:
                try:
                    async with asyncio.timeout(settings.keepalive):
                        message = await stream.control.get()
                except TimeoutError:
                    message = pb.Downstream(interest=pb.Interest(id=0))  # a heartbeat
                if message is None:
                    break
                if settings.silent(stream, tick):
                    self.counters["silent_peers"] += 1
                    logger.error(
                        "peer %s sent nothing for %.1f s (hung?): ending its stream",
                        node,
                        settings.silence_limit,
                    )
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "no heartbeat")
                tick = time.monotonic()
                if time.time() > stream.token_expires:
                    self._refuse(node, "its token expired")
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "token expired")
                yield message
            if not reader.done():  # superseded by a newer stream, or stopping: end it for the peer too
                await context.abort(
                    grpc.StatusCode.UNAVAILABLE, SHUTTING_DOWN if self._stopping else "stream closed"
                )
            if not reader.cancelled() and isinstance(reader.exception(), TokenError):
                self._refuse(node, str(reader.exception()))
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(reader.exception()))
        finally:
            reader.cancel()
            stream.release()
            if self.streams.get(node) is stream:
                del self.streams[node]

    async def _read(self, stream: InboundStream, requests: AsyncIterator[pb.Upstream]) -> None:
        try:
            async for request in requests:
                stream.last_seen = time.monotonic()
                if self.streams.get(stream.node) is not stream:
                    return  # superseded by a newer stream from the same peer
                kind = request.WhichOneof("kind")
                if kind == "token":
                    assert self._tokens is not None
                    _, stream.token_expires = self._tokens.check(request.token, stream.node)
                    continue
                if time.time() > stream.token_expires:
                    raise TokenError("its token expired")
                if kind == "batch":
                    for message in request.batch.messages:
                        self._inbox.put((message.topic, message.data))
                    stream.received += len(request.batch.messages)
                    self.counters["received"] += len(request.batch.messages)
                elif kind == "ack" and request.ack.id:  # id 0 is a heartbeat
                    stream.acknowledge(request.ack.id)
        finally:
            stream.control.put_nowait(None)


class Servicer(pb_grpc.MeshServicer):
    """The generated service's one method, ``Connect``, served by :meth:`Inbound.serve`."""

    def __init__(self, inbound: Inbound) -> None:
        self._inbound = inbound

    async def Connect(
        self, request_iterator: Iterable[pb.Upstream] | AsyncIterator[pb.Upstream], context: object
    ) -> AsyncIterator[pb.Downstream]:
        # An async generator function, so the asyncio server streams what it yields. It passes an
        # async iterator of requests and its own context.
        async for message in self._inbound.serve(
            cast("AsyncIterator[pb.Upstream]", request_iterator),
            cast("aio.ServicerContext[pb.Upstream, pb.Downstream]", context),
        ):
            yield message
