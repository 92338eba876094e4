"""Exceptions raised by typed-ss, and the close codes it sends.

The tree::

    TypedSSError
     ├── ConfigurationError            a server or handler set up wrongly (raised at import time)
     │    └── HandlerSignatureError    also a TypeError: a handler @ss.on cannot use
     ├── ProtocolError                 a client frame that does not follow the wire protocol
     ├── PayloadValidationError        a payload that its handler's type rejects
     ├── EncodeError                   also a TypeError: a value emit cannot turn into a frame
     ├── InvalidName                   also a ValueError: a bad or reserved event or room name
     ├── LimitExceeded                 a configured limit was hit (rooms per socket, ...)
     ├── BackendError                  a multihome backend failed
     ├── HandlerError                  raised by a handler: a call fails with the application's code
     ├── CallError                     the other side answered a call with an error
     │    └── CallClosed               the connection closed before the call was answered
     └── MissingDependencyError        also an ImportError: an optional extra is not installed

Application code catches ``TypedSSError`` to handle all of them; the more specific classes say what
went wrong. :class:`CloseCode` lists every WebSocket close code the server sends.
"""

from __future__ import annotations

import enum

__all__ = [
    "BackendError",
    "CallClosed",
    "CallError",
    "CloseCode",
    "ConfigurationError",
    "EncodeError",
    "HandlerError",
    "HandlerSignatureError",
    "InvalidName",
    "LimitExceeded",
    "MissingDependencyError",
    "PayloadValidationError",
    "ProtocolError",
    "TypedSSError",
]


class TypedSSError(Exception):
    """Base class of every exception typed-ss raises on purpose."""


class ConfigurationError(TypedSSError):
    """The server, a hook or a handler is configured in a way that cannot work."""


class HandlerSignatureError(ConfigurationError, TypeError):
    """A function given to ``@ss.on`` (or a hook decorator) has a signature typed-ss cannot call."""


class ProtocolError(TypedSSError):
    """A client frame breaks the wire protocol: no 0x02 delimiter, an empty or oversized event name,
    an event name that is not UTF-8. The one error :func:`typed_ss.protocol.parse_client_frame` raises."""


class PayloadValidationError(TypedSSError):
    """A payload could not be decoded into the type its handler declares.

    ``detail`` is safe to show to the client: it names what was expected and where (a JSON path),
    never server internals.
    """

    def __init__(self, event: str, detail: str) -> None:
        super().__init__(f"invalid payload for event {event!r}: {detail}")
        self.event = event
        self.detail = detail


class EncodeError(TypedSSError, TypeError):
    """A value passed to emit (or a cast) cannot be encoded as a frame; nothing was sent."""


class InvalidName(TypedSSError, ValueError):
    """An event or room name is empty, too long, contains a protocol delimiter, or is reserved
    (names starting with two underscores belong to the protocol)."""


class LimitExceeded(TypedSSError):
    """A configured limit would be exceeded, for example joining more rooms than ``max_rooms_per_socket``."""


class BackendError(TypedSSError):
    """A multihome backend failed to start, publish or subscribe."""


class HandlerError(TypedSSError):
    """Raised by a handler to fail the call it is answering with the application's own error:
    ``raise HandlerError("not_found", "no such room", data={"room": room})``. The caller gets an error
    reply with this ``code``, ``message`` and ``data`` (JSON); a message that was not a call gets an
    ``__error`` event with the code and message. Codes typed-ss uses itself: ``invalid_payload``,
    ``handler_error``, ``unknown_event``, ``too_many_calls``, ``disconnected``, ``timeout``."""

    def __init__(self, code: str, message: str, data: object = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class CallError(TypedSSError):
    """A call failed on the other side: it answered with an error reply (``code``, ``message`` and
    ``data``, as its :class:`HandlerError` or typed-ss's own codes say)."""

    def __init__(self, code: str, message: str, data: object = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class CallClosed(CallError):
    """The connection closed while the call waited for its reply (code ``disconnected``)."""

    def __init__(self, message: str = "the connection closed before the call was answered") -> None:
        super().__init__("disconnected", message)


class MissingDependencyError(TypedSSError, ImportError):
    """An optional feature needs a package that is not installed; the message names the extra."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed; install it with: pip install 'typed-ss[{extra}]'")
        self.package = package
        self.extra = extra


class CloseCode(enum.IntEnum):
    """WebSocket close codes typed-ss sends, and what a client should do after each.

    The 4000-4999 range is for typed-ss's own policies and for applications.
    """

    NORMAL = 1000
    """The socket was closed on purpose (``sock.close()``); clients do not reconnect."""
    GOING_AWAY = 1001
    """The server is shutting down (``ss.shutdown()``); reconnect after a jittered delay."""
    POLICY_VIOLATION = 1008
    """Refused by policy (origin or authentication, where HTTP 403 was not possible); do not reconnect."""
    MESSAGE_TOO_BIG = 1009
    """A message was larger than ``max_message_size``; reconnecting is fine, resending it is not."""
    INTERNAL_ERROR = 1011
    """An unexpected server error; reconnect after a jittered delay."""
    SERVICE_RESTART = 1012
    """The server process is restarting (uvicorn sends it on SIGTERM); reconnect after a jittered delay."""
    TRY_AGAIN_LATER = 1013
    """The server is at ``max_connections`` (or shutting down) and cannot answer with HTTP 503 during
    the handshake; reconnect after a jittered delay."""
    SLOW_CONSUMER = 4008
    """The client read too slowly: its send queue passed ``send_queue_bytes`` or a send missed
    ``send_timeout``. Messages were lost; reconnect after a jittered delay."""
    CONTRACT_MISMATCH = 4010
    """The client was generated from another version of the server's contract and the server
    refuses such clients (``contract_check="refuse"``): reload the page instead of reconnecting."""
