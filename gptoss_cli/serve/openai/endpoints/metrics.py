"""``GET /metrics``: Prometheus text (outside /v1, so the API key does not guard it; not in the OpenAPI schema)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gptoss_cli.serve.openai.state import server_state

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    body, content_type = server_state(request).metrics.render()
    return Response(body, media_type=content_type.split(";")[0], headers={"Content-Type": content_type})
