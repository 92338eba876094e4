"""The server tests/test_native.py serves with ``typed-ss serve tests.native_app:ss`` in a process."""

from __future__ import annotations

from typed_ss import Server, Socket

ss = Server()


@ss.on("echo_back")
async def echo_back(sock: Socket, text: str) -> str:
    return text
