"""ASGI types shared by the runtime's modules, the package logger and the JSON content type."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .request import Request

logger = logging.getLogger("pygateway")

Scope = MutableMapping[str, Any]
Event = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Event]]
Send = Callable[[Event], Awaitable[None]]
Handler = Callable[["Request"], Awaitable[None]]
Metadata = list[tuple[str, "str | bytes"]]

#: The Content-Type header of every JSON response.
_JSON = (b"content-type", b"application/json")
