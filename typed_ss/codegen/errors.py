"""How the generator refuses a payload type: :class:`CodegenError`, naming the event and field at fault.

Both front ends report through :class:`Where`, so every refusal reads the same way::

    cannot generate TypeScript for event 'upload' (server to client), field Upload.meta: <problem>
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from typed_ss.errors import TypedSSError

if TYPE_CHECKING:
    from typed_ss.contract import EventContract

__all__ = ["CodegenError", "Where"]


class CodegenError(TypedSSError):
    """A payload type that the generator cannot express in TypeScript; the message names the event
    and the field."""


@dataclass(frozen=True)
class Where:
    """Where in the contract a type is, for error messages."""

    event: EventContract
    path: str = "the payload"

    def at(self, path: str) -> Where:
        """The same event, another place in its payload type (``field Model.name``)."""
        return Where(self.event, path)

    def unsupported(self, problem: str) -> CodegenError:
        """The error for a type here that has no TypeScript form."""
        direction = "client to server" if self.event.direction == "client_to_server" else "server to client"
        return CodegenError(
            f"cannot generate TypeScript for event {self.event.name!r} ({direction}), {self.path}: {problem}"
        )
