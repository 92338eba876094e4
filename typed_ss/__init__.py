"""typed-ss: event-based WebSockets for Python, wire-compatible with Sacrificial-Socket.

Handlers are declared with ``@ss.on("event")`` and receive raw ``bytes``, ``str`` or a validated
msgspec / pydantic model, as their annotation says. Sockets join rooms; the server and each socket can
emit, roomcast, broadcast and socketcast.
"""

from typed_ss.cluster import Answer, Cluster, Member, Presence
from typed_ss.contract import Contract, EventContract
from typed_ss.errors import (
    BackendError,
    CallClosed,
    CallError,
    CloseCode,
    ConfigurationError,
    EncodeError,
    HandlerError,
    HandlerSignatureError,
    InvalidName,
    LimitExceeded,
    MissingDependencyError,
    PayloadValidationError,
    ProtocolError,
    TypedSSError,
)
from typed_ss.events import ServerEvent
from typed_ss.handlers import Handler
from typed_ss.health import MultihomeHealth, ServerHealth
from typed_ss.limits import Limits
from typed_ss.native import NativeServer, serve
from typed_ss.recovery import Recovery
from typed_ss.server import AuthHook, ContractCheck, Server, SocketHook
from typed_ss.serving import run, uvicorn_settings
from typed_ss.socket import Socket, SocketState

__all__ = [
    "Answer",
    "AuthHook",
    "BackendError",
    "CallClosed",
    "CallError",
    "CloseCode",
    "Cluster",
    "ConfigurationError",
    "Contract",
    "ContractCheck",
    "EncodeError",
    "EventContract",
    "Handler",
    "HandlerError",
    "HandlerSignatureError",
    "InvalidName",
    "LimitExceeded",
    "Limits",
    "Member",
    "MissingDependencyError",
    "MultihomeHealth",
    "NativeServer",
    "PayloadValidationError",
    "Presence",
    "ProtocolError",
    "Recovery",
    "Server",
    "ServerEvent",
    "ServerHealth",
    "Socket",
    "SocketHook",
    "SocketState",
    "TypedSSError",
    "run",
    "serve",
    "uvicorn_settings",
]

# The one place the version is written: the build reads it from here ([tool.hatch.version] in
# pyproject.toml), and tests/test_packaging.py holds clients/js/package.json's version to it.
__version__ = "0.1.0"
