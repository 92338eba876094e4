"""Multihome backends: what carries casts between server instances.

Every backend implements :class:`typed_ss.backends.base.Backend`; the hub's bridge to it lives in
:mod:`typed_ss.multihome`. Import a backend from its own module, so that only its driver is loaded:
``from typed_ss.backends.redis import RedisBackend``.
"""

from typed_ss.backends.base import Backend, BackendHealth
from typed_ss.backends.memory import MemoryBackend, MemoryBroker

__all__ = ["Backend", "BackendHealth", "MemoryBackend", "MemoryBroker"]
