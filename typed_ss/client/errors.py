"""The client's own exception: :class:`ClientClosed`. Everything else it raises is typed-ss's
(:mod:`typed_ss.errors`): ``CallError``, ``CallClosed``, ``PayloadValidationError``, ``EncodeError``,
``InvalidName``, ``LimitExceeded``, ``HandlerSignatureError``."""

from __future__ import annotations

from typed_ss.errors import CallClosed

__all__ = ["ClientClosed"]


class ClientClosed(CallClosed):
    """The client is closed for good (``close()``, a close code after which it does not reconnect, or
    ``max_attempts`` failed attempts): emits and calls fail with it. It is a ``CallClosed``, so code
    that handles a call lost to a disconnect handles this one too."""

    def __init__(self, message: str = "the client is closed") -> None:
        super().__init__(message)
