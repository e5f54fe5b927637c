"""``GET /health`` (liveness: the process is up) and ``GET /ready`` (readiness: the engine answers, not draining)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gptoss_cli.serve.errors import NotReady
from gptoss_cli.serve.openai.fronts import front_for
from gptoss_cli.serve.openai.protocol import ErrorEnvelope
from gptoss_cli.serve.openai.state import server_state

router = APIRouter()


@router.get("/health", summary="Liveness: the process is up")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", responses={503: {"model": ErrorEnvelope}}, summary="Readiness: the model is loaded")
async def ready(request: Request) -> dict[str, Any]:
    server = server_state(request)
    if server.scheduler.draining:
        raise NotReady("The server is shutting down; send new requests elsewhere.")
    return await front_for(server).ready(server)
