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

The package, one job per module:

- :mod:`.tokens`: the HMAC tokens (``make_token``, ``verify_token``, ``TokenError``).
- :mod:`.config`: peer addresses, the TLS configuration and credentials, the shared settings.
- :mod:`.peers`: the per-peer bookkeeping: each peer's outbox and interest, each inbound stream.
- :mod:`.inbound`: the gRPC server and the streams peers open to this node.
- :mod:`.outbound`: one link per peer: connect, handshake, pump.
- :mod:`.backend`: :class:`GrpcBackend`, tying them together.
"""

from __future__ import annotations

from typed_ss.errors import MissingDependencyError

try:
    import grpc.aio  # noqa: F401

    from typed_ss.backends._grpc import multihome_pb2_grpc  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError("grpcio", "grpc") from exc

from typed_ss.backends.grpc.backend import GrpcBackend
from typed_ss.backends.grpc.config import TLSConfig
from typed_ss.backends.grpc.tokens import TokenError, make_token, verify_token

__all__ = ["GrpcBackend", "TLSConfig", "TokenError", "make_token", "verify_token"]
