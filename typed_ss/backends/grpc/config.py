"""Where the peers are, how the mesh is secured, and what both ends of every stream agree on.

- :class:`PeerAddress`: one entry of the peer list, ``host:port`` or ``servername@host:port``.
- :class:`TLSConfig`: the mesh's TLS material as given; :class:`Credentials`: that material loaded
  (once, at start) as the gRPC credentials of the server and of the channels to peers.
- :class:`Settings`: this node's identity and the time limits both sides of a stream apply, with the
  liveness check (:meth:`Settings.silent`) both use.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import grpc

from typed_ss.errors import ConfigurationError

__all__ = ["SHUTTING_DOWN", "Credentials", "Heard", "PeerAddress", "Settings", "TLSConfig"]

SHUTTING_DOWN: Final = "the peer is shutting down"
"""What a node that stops ends its peers' streams with (so that they do not take it for a fault)."""


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
class Credentials:
    """The TLS material, loaded: what the gRPC server listens with and what every channel to a peer
    connects with (the CA as the only root; this node's certificate too with mutual TLS)."""

    server: grpc.ServerCredentials
    channel: grpc.ChannelCredentials
    mutual: bool

    @classmethod
    def load(cls, tls: TLSConfig) -> Credentials:
        """Read the PEM files (at start: a missing file fails the start)."""
        ca, cert, key = tls.load()
        server = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca if tls.mutual else None, require_client_auth=tls.mutual
        )
        channel = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=key if tls.mutual else None,
            certificate_chain=cert if tls.mutual else None,
        )
        return cls(server, channel, tls.mutual)


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


class Heard(Protocol):
    """One end of a stream: when the peer on it last sent anything (monotonic seconds)."""

    last_seen: float


@dataclass(frozen=True)
class Settings:
    """This node's identity and the limits every stream of the mesh keeps to (see ``GrpcBackend``)."""

    name: str
    boot: int
    """A random number drawn at start: a peer that sees another one knows this node restarted."""
    connect_timeout: float
    write_timeout: float
    subscribe_timeout: float
    keepalive: float
    max_backoff: float
    max_message_bytes: int
    batch_bytes: int

    @property
    def silence_limit(self) -> float:
        """How long a peer may send nothing at all (not even a heartbeat) before its stream ends."""
        return 3 * self.keepalive

    def silent(self, side: Heard, tick: float) -> bool:
        """Whether the peer on this stream has sent nothing (not even a heartbeat) for too long.

        ``tick`` is when the caller last checked: a check that comes much later than it should
        means this process itself stalled (SIGSTOP, a blocked event loop), so the peer gets a fresh
        window instead of being blamed for our own silence.
        """
        now = time.monotonic()
        if now - tick > self.keepalive + self.write_timeout + 1.0:
            side.last_seen = now
        return now - side.last_seen > self.silence_limit
