"""Which front serves a request: harmony (token engines) or relay (whole-request engines), decided by the engine's
protocol once per request in this one place (the endpoints never branch on the engine)."""

from __future__ import annotations

from types import ModuleType

from gptoss_cli.serve.openai import harmony_front, relay_front
from gptoss_cli.serve.openai.state import ServerState


def front_for(server: ServerState) -> ModuleType:
    """The module with ``chat``, ``completion``, ``ready`` and ``context_length`` for this server's engine."""
    return relay_front if server.relays else harmony_front


__all__ = ["front_for"]
