"""The native transport: typed-ss served without ASGI, on picows, owning every connection end to end.

::

    import typed_ss

    typed_ss.serve(ss, host="127.0.0.1", port=8080)   # ws://127.0.0.1:8080/socket

The same :class:`~typed_ss.server.Server`, the same wire, close codes, limits and hooks as under
uvicorn; clients cannot tell the two apart. The modules: :mod:`~typed_ss.native.server` (the listening
server and the process), :mod:`~typed_ss.native.http` (each connection until it is upgraded: the
request head, the core's checks, plain HTTP answers), :mod:`~typed_ss.native.transport` (one WebSocket,
behind :class:`typed_ss.transport.Transport`).
"""

from typed_ss.native.server import NativeServer, serve

__all__ = ["NativeServer", "serve"]
