"""Calls both ways: a tea shop's order desk, which Python services (``bot.py``) drive through a
generated, typed client.

- ``quote`` is a call: its handler prices a basket and returns a ``Quote``, which is the reply. An
  item that is not on the menu, or an unknown coupon, is the app's own error: ``HandlerError`` with
  the codes ``unknown_item`` and ``unknown_coupon``, and data the caller can act on.
- ``order`` prices the basket the same way, tells the room ``orders`` (the ``placed`` event) and
  replies with a ``Receipt``.
- ``join`` and ``leave`` follow the shop's rooms. ``leave`` asks first: the server calls the client's
  ``confirm`` handler (``ss.event("confirm", Question, reply=Answer)``) and leaves only if it says yes.

``examples/calls/generated/ss_client.py`` is the Python client generated from this contract, which
``bot.py`` imports; ``make test`` fails when it is stale, and ``make codegen`` regenerates it:

    typed-ss gen-client examples.calls.app:ss --out examples/calls/generated --lang py

The server refuses a client generated from an older contract (``contract_check="refuse"``, close code
4010). Run it, and the bot against it:

    python -m examples.calls.app [--port 8080]
    python -m examples.calls.bot ws://127.0.0.1:8080/socket
"""

from __future__ import annotations

import argparse
import itertools
from typing import Annotated, Final

import msgspec
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

from typed_ss import HandlerError, Server, Socket, run

ss = Server(contract_check="refuse")

PRICES: Final = {"sencha": 450, "scone": 300, "jam": 250}
"""The menu: each item's price in cents."""
COUPONS: Final = {"WELCOME10": 10}
"""Coupons, and the percentage each takes off."""
ROOMS: Final = frozenset({"orders", "kitchen"})
"""The rooms a client may follow."""

Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class Line(msgspec.Struct):
    """One line of a basket."""

    sku: Sku
    quantity: Annotated[int, msgspec.Meta(ge=1, le=99)] = 1


class Basket(msgspec.Struct):
    """What a client wants to buy."""

    lines: Annotated[list[Line], msgspec.Meta(min_length=1, max_length=50)]
    coupon: str | None = None


class Quote(msgspec.Struct):
    """A basket's price, in cents."""

    subtotal: int
    discount: int
    total: int


class Receipt(msgspec.Struct):
    """An order placed."""

    order: int
    total: int


class Placed(msgspec.Struct):
    """Sent to the room ``orders`` for every order placed."""

    order: int
    items: int
    total: int


class Question(msgspec.Struct):
    """What the server asks a client before it acts for it."""

    text: str


class Answer(msgspec.Struct):
    """The client's answer to a ``Question``."""

    yes: bool
    reason: str = ""


placed = ss.event("placed", Placed)
confirm = ss.event("confirm", Question, reply=Answer)  # the server calls the client with it

order_numbers = itertools.count(1)


def price(basket: Basket) -> Quote:
    """The basket's price, or the app's own error for an item or a coupon it does not know."""
    unknown = sorted({line.sku for line in basket.lines} - PRICES.keys())
    if unknown:
        raise HandlerError("unknown_item", f"not on the menu: {', '.join(unknown)}", data={"skus": unknown})
    percent = 0
    if basket.coupon is not None:
        if basket.coupon not in COUPONS:
            raise HandlerError("unknown_coupon", f"no coupon {basket.coupon}", data={"coupon": basket.coupon})
        percent = COUPONS[basket.coupon]
    subtotal = sum(PRICES[line.sku] * line.quantity for line in basket.lines)
    discount = subtotal * percent // 100
    return Quote(subtotal, discount, subtotal - discount)


@ss.on("quote")
async def quote(sock: Socket, basket: Basket) -> Quote:
    """Price a basket without ordering it."""
    return price(basket)


@ss.on("order")
async def order(sock: Socket, basket: Basket) -> Receipt:
    """Order a basket, priced as ``quote`` prices it; the room ``orders`` is told."""
    total = price(basket).total
    number = next(order_numbers)
    await placed.roomcast("orders", Placed(number, sum(line.quantity for line in basket.lines), total))
    return Receipt(number, total)


@ss.on("join")
async def join(sock: Socket, room: str) -> int:
    """Follow one of the shop's rooms; the reply is how many follow it now."""
    if room not in ROOMS:
        raise HandlerError("unknown_room", f"no room {room}", data={"rooms": sorted(ROOMS)})
    await sock.join(room)
    return ss.hub.room_size(room)


@ss.on("leave")
async def leave(sock: Socket, room: str) -> bool:
    """Stop following a room, once the client confirms; the reply says whether it left."""
    if not sock.in_room(room):
        return False
    # The client's answer is taken at once, although this handler, which waits for it, is running.
    answer = await confirm.call(sock, Question(f"Stop following {room}?"), timeout=4.0)  # an Answer
    if answer.yes:
        await sock.leave(room)
    return answer.yes


app = Starlette(routes=[WebSocketRoute("/socket", ss)], lifespan=ss.lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description="typed-ss calls example: a tea shop's order desk")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    print(f"order desk on ws://{args.host}:{args.port}/socket", flush=True)
    run(app, ss, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
