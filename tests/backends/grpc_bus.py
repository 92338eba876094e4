"""The gRPC mesh as a conformance bus: N backends on free loopback ports, TLS with test certificates."""

from __future__ import annotations

import random
import secrets
import socket
from pathlib import Path

from tests.backends.grpc_certs import CertificateAuthority
from typed_ss.backends import Backend
from typed_ss.backends.grpc import GrpcBackend


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that are free right now, for gRPC servers started later.

    They are drawn below the kernel's ephemeral range: a port the OS hands out for ``bind(port 0)``
    (as ``tests.support.running`` and ``tests.serve`` do for uvicorn, between our pick and the gRPC
    server's bind) would otherwise collide, since uvicorn's socket binds early but listens late.
    Each is checked by binding it, all at once; a conflict after that makes ``start()`` fail loudly.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = list(range(max(1024, low - 20_000), low))
    random.shuffle(candidates)
    sockets: list[socket.socket] = []
    try:
        for port in candidates:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
            if len(sockets) == count:
                return [s.getsockname()[1] for s in sockets]
        raise RuntimeError(f"no {count} free ports below {low}")
    finally:
        for sock in sockets:
            sock.close()


class GrpcBus:
    name = "grpc"

    def __init__(self, directory: Path, *, mutual: bool = False) -> None:
        self.directory = directory
        self.ca = CertificateAuthority.create(directory)
        self.key = secrets.token_bytes(32)
        self.mutual = mutual
        self.made: list[GrpcBackend] = []

    def backends(self, count: int) -> list[Backend]:
        ports = free_ports(count)
        addresses = [f"127.0.0.1:{port}" for port in ports]
        made = [
            GrpcBackend(
                listen=address,
                peers=[other for other in addresses if other != address],
                tls=self.ca.issue(self.directory, f"node{i}", mutual=self.mutual),
                shared_key=self.key,
                name=f"node{i}-{ports[i]}",
            )
            for i, address in enumerate(addresses)
        ]
        self.made.extend(made)
        return list(made)

    async def subscribers(self, topic: str) -> int:
        """How many nodes the mesh routes ``topic`` to: the union of what every node's peers told it."""
        interested: set[str] = set()
        for backend in self.made:
            interested |= backend.interested_peers(topic)
        return len(interested)
