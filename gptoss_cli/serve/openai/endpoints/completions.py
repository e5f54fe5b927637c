"""``POST /v1/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gptoss_cli.serve.openai.admission import admit, captured
from gptoss_cli.serve.openai.endpoints.common import reply, stream_doc
from gptoss_cli.serve.openai import policy_front
from gptoss_cli.serve.openai.protocol import Completion, CompletionRequest
from gptoss_cli.serve.openai.state import server_state

router = APIRouter()


@router.post(
    "/v1/completions",
    response_model=Completion,
    responses={**stream_doc(Completion)},
    summary="Create a text completion (the prompt is sent as one user message; text is the final answer)",
)
async def completions(body: CompletionRequest, request: Request) -> Response:
    server = server_state(request)
    await admit(server, body, request)  # key's models and limits; model, user, prompt on the record
    return reply(captured(await policy_front.completion(server, body, request)))  # --policy around either front
