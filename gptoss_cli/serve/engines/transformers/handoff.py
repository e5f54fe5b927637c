"""The hand-off from a worker thread to the event loop that both transformers engines use for their token streams."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator


async def items_until(inbox: asyncio.Queue, end: object) -> AsyncIterator[Any]:
    """Yield what the worker puts into ``inbox`` until ``end``; an exception put there is raised here."""
    while True:
        item = await inbox.get()
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


__all__ = ["items_until"]
