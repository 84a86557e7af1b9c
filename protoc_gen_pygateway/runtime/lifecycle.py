"""Graceful shutdown: the hook each open stream registers with its Gateway."""

from __future__ import annotations

import asyncio
from collections.abc import (
    Callable,
)
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from .app import Gateway


#: The final status of streams a gateway shutdown ends (and of new streams refused during one).
_SHUTDOWN_TEXT = "gateway shutting down"


@final
class _Stop:
    """An open stream's hook into `Gateway.shutdown()`: `fire()` runs `action` once, on the stream's loop.

    The action cancels the upstream call, so the relay's pending `call.read()` ends in CancelledError and
    the relay, seeing `fired`, ends the stream with the shutdown status. A message the read already took
    is still returned and relayed first: the read itself is never cancelled, only the call.
    """

    __slots__ = ("action", "fired", "gateway", "loop")

    def __init__(self, gateway: Gateway, action: Callable[[], object]) -> None:
        self.gateway = gateway
        self.action = action
        self.fired = False
        self.loop = asyncio.get_running_loop()

    def __enter__(self) -> _Stop:
        self.gateway._stops.add(self)
        if self.gateway.shutting_down:  # the shutdown began while the stream was being set up
            self.fire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.gateway._stops.discard(self)

    def fire(self) -> None:
        if not self.fired:
            self.fired = True
            self.action()
