"""A Python client for typed-ss servers, on asyncio and ``websockets``: events and calls both ways,
handlers typed by annotation, reconnects that read the close code.

::

    from typed_ss.client import connect

    client = connect("ws://127.0.0.1:8000/socket")
    client.on("chat", on_chat)            # async def on_chat(msg: Chat) -> None: decoded as on the server
    client.handle("confirm", on_confirm)  # answers the server's calls: the return value is the reply
    async with client:
        await client.emit("chat", Chat(room="tea", text="hi"))
        result = await client.call("add", AddQuery(a=1, b=2), returns=AddResult, timeout=5.0)
        await client.join("tea")

Sending
    ``emit(event, data)`` frames ``data`` as the server does: ``str`` a text frame, ``bytes`` a binary
    frame, anything else JSON. ``call(event, data, returns=T, timeout=5.0)`` waits for the handler's
    return value, decoded as ``T`` (mypy infers ``T``). It raises ``TimeoutError`` without a reply,
    ``typed_ss.CallError`` (``code``, ``message``, ``data``) for an error reply, ``typed_ss.CallClosed``
    as soon as the connection closes, ``typed_ss.PayloadValidationError`` for a reply that is not a
    ``T``, and ``CallError("too_many_calls")`` at once when ``max_calls`` calls (from ``__hello``)
    already wait. ``join(room)`` calls the server's ``join`` handler and joins the room again after
    every reconnect.

Receiving
    ``on(event, handler)`` and ``handle(event, fn)`` decode the payload by the function's annotation,
    with :func:`typed_ss.handlers.build_decoder`; ``handle``'s return value is the reply to the
    server's call, encoded by its return annotation. Handlers of one connection run one at a time, in
    order, in a task of their own; replies to calls are taken as they arrive, even while a handler
    runs.

Presence (:mod:`typed_ss.client.presence`)
    With a server that has ``presence=`` on, ``on_presence(hook)`` gets each ``__presence`` event, a
    ``PresenceEvent[T]`` (``room``, ``change``, ``socket``, ``presence``) decoded as the hook's
    annotation says, and ``await members(room, T)`` lists a room's members on every instance, a
    ``Listed[T | None]``, as far as the server allows (``CallError("forbidden")`` otherwise).

Reconnecting (:mod:`typed_ss.client.reconnect`)
    After 1001, 1006, 1009, 1011, 1012, 1013, 4008 and every other abnormal close, after a jittered
    exponential backoff (``ReconnectPolicy``: 1 s doubling to 30 s by default, starting over after a
    connection that lasted 5 s); never after 1000, 1008 and 3000-4999 except 4008. 4010 calls the
    ``on_reload_needed`` hook. Emits made while not connected are held, at most ``max_queue`` (1000:
    then the oldest is dropped), and sent in order once connected, after the ``on_connected`` hook;
    calls made then fail with ``CallClosed``.

The modules: :mod:`~typed_ss.client.client` (the ``Client``), :mod:`~typed_ss.client.connection` (one
WebSocket), :mod:`~typed_ss.client.handlers`, :mod:`~typed_ss.client.frames` (the client's framing),
:mod:`~typed_ss.client.outbox` (held emits), :mod:`~typed_ss.client.presence`,
:mod:`~typed_ss.client.reconnect`, :mod:`~typed_ss.client.options`, :mod:`~typed_ss.client.typed` (what
generated clients run on).
docs/python-client.md is the guide.
"""

from typed_ss.client.client import Client, Reconnected, State, connect
from typed_ss.client.connection import ServerHello
from typed_ss.client.errors import ClientClosed
from typed_ss.client.options import ConnectOptions
from typed_ss.client.presence import Listed, ListedMember, PresenceEvent
from typed_ss.client.reconnect import ReconnectPolicy, should_reconnect

__all__ = [
    "Client",
    "ClientClosed",
    "ConnectOptions",
    "Listed",
    "ListedMember",
    "PresenceEvent",
    "ReconnectPolicy",
    "Reconnected",
    "ServerHello",
    "State",
    "connect",
    "should_reconnect",
]
