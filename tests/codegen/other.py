"""A second ``Message`` type, so that the generator has to module-qualify a name collision."""

from __future__ import annotations

import msgspec


class Message(msgspec.Struct):
    """The other module's message."""

    body: str
    urgent: bool = False
