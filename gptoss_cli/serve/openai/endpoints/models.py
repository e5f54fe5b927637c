"""``GET /v1/models`` and ``GET /v1/models/{id}``: the served name and its aliases."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gptoss_cli.serve.errors import ModelNotFound
from gptoss_cli.serve.openai.admission import allowed_models
from gptoss_cli.serve.openai.endpoints.common import ERRORS, json_response
from gptoss_cli.serve.openai.fronts import front_for
from gptoss_cli.serve.openai.protocol import ModelCard, ModelList
from gptoss_cli.serve.openai.state import ServerState, server_state

router = APIRouter()


def _cards(server: ServerState) -> list[ModelCard]:
    settings = server.settings
    length = front_for(server).context_length(server)
    return [
        ModelCard(
            id=name,
            created=server.created,
            owned_by=settings.owned_by,
            root=settings.served_model_name,
            max_model_len=length,
            context_length=length,
        )
        for name in allowed_models(server, settings.model_names)  # a key with a model list sees only those
    ]


@router.get("/v1/models", response_model=ModelList, responses=ERRORS, summary="List the served model and aliases")
async def list_models(request: Request) -> Response:
    return json_response(ModelList(data=_cards(server_state(request))))


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=ERRORS, summary="Describe a model")
async def get_model(model_id: str, request: Request) -> Response:
    server = server_state(request)
    if model_id not in allowed_models(server, server.settings.model_names):
        raise ModelNotFound(model_id, allowed_models(server, server.settings.model_names))
    return json_response(next(c for c in _cards(server) if c.id == model_id))
