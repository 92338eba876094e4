# region imports
"""A till: a Python service that works the order desk of examples/calls/app.py through the client
generated from its contract. It follows the room ``orders``, prices each basket (a call, typed by the
handler's return type), orders the ones the desk can price, skips the ones it refuses with its own
error codes, and answers the desk's ``confirm`` call when it leaves the room.

    python -m examples.calls.app --port 8080                 # the desk
    python -m examples.calls.bot ws://127.0.0.1:8080/socket  # a shift at the till

``examples/calls/generated/ss_client.py`` is the generated client (``make codegen`` writes it), and mypy
--strict checks this file against it: a wrong field, a wrong reply type or an event the server does not
handle is a type error here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Final

from examples.calls.generated import ss_client
from examples.calls.generated.ss_client import (
    AnswerInput,
    BasketInput,
    LineInput,
    Placed,
    Question,
    Quote,
    Receipt,
)
from typed_ss import CallError
from typed_ss.client import ReconnectPolicy

BASKETS: Final = [
    BasketInput(lines=[LineInput(sku="sencha", quantity=2), LineInput(sku="scone")], coupon="WELCOME10"),
    BasketInput(lines=[LineInput(sku="espresso")]),  # not on the menu: the desk refuses it
    BasketInput(lines=[LineInput(sku="jam")]),  # the quantity is left out: the desk's default, 1
]
"""The shift's baskets. ``BasketInput`` is the shape a client sends: fields with a default may be left
out (the received shape, ``Basket``, would be accepted too)."""
REFUSALS: Final = frozenset({"unknown_item", "unknown_coupon"})
"""The desk's own error codes (its ``HandlerError``s) for a basket it cannot price."""


class OutOfDate(Exception):
    """The desk's contract is not the one ss_client.py was generated from."""


# endregion

# region till


class Till:
    """What a shift saw: the orders placed, the baskets refused, the desk's questions."""

    def __init__(self) -> None:
        self.orders: list[tuple[Quote, Receipt, Placed]] = []
        self.refused: list[CallError] = []
        self.questions: list[str] = []
        self._announced: asyncio.Queue[Placed] = asyncio.Queue()

    def placed(self, order: Placed) -> None:
        """The ``placed`` events of the room ``orders``: every till's orders."""
        self._announced.put_nowait(order)

    async def announcement_of(self, order: int | float) -> Placed:
        """Wait until the room announces ``order``."""
        while (placed := await self._announced.get()).order != order:
            pass  # another till's order
        return placed

    async def confirm(self, question: Question) -> AnswerInput:
        """Answers the desk's ``confirm`` calls: the return value is the reply."""
        self.questions.append(question.text)
        return AnswerInput(yes=True)  # reason is left out


# endregion

# region shift


async def shift(url: str) -> Till:
    """Follow the room ``orders``, price and order each basket, then leave the room."""
    till = Till()
    client = ss_client.connect(url, reconnect=ReconnectPolicy(max_attempts=10))
    client.on.placed(till.placed)
    client.handle.confirm(till.confirm)
    async with client:
        if client.contract_status == "stale":  # from the desk's __hello: it has another contract
            raise OutOfDate("the desk has another contract than this till: regenerate ss_client.py")
        await client.join("orders")  # joined again after every reconnect
        for basket in BASKETS:
            try:
                quote = await client.call.quote(basket)  # a Quote
            except CallError as error:
                if error.code not in REFUSALS:
                    raise  # the connection lost (CallClosed), too_many_calls, a bug: not for the till to hide
                till.refused.append(error)  # error.data says what: {"skus": ["espresso"]}
                continue
            receipt = await client.call.order(basket, timeout=10.0)  # a Receipt
            placed = await asyncio.wait_for(till.announcement_of(receipt.order), timeout=5.0)
            till.orders.append((quote, receipt, placed))
        await client.leave("orders")  # the desk calls confirm before it lets the till go
    return till


# endregion

# region main


def main() -> None:
    parser = argparse.ArgumentParser(description="a till for the order desk of examples/calls/app.py")
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:8080/socket")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    till = asyncio.run(shift(args.url))
    for quote, receipt, placed in till.orders:
        total, discount = quote.total / 100, quote.discount / 100
        print(f"order {receipt.order}: {placed.items} items, {total:.2f} after {discount:.2f} off")
    for error in till.refused:
        print(f"refused: {error.code}: {error.message} {error.data}")
    for question in till.questions:
        print(f"the desk asked {question!r}: yes")


if __name__ == "__main__":
    main()

# endregion
