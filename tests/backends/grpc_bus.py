"""The gRPC mesh as a conformance bus: N backends on free loopback ports, TLS with test certificates."""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.backends.grpc_certs import CertificateAuthority
from tests.support import free_ports
from typed_ss.backends import Backend
from typed_ss.backends.grpc import GrpcBackend


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
