"""``POST /v1/chat/completions``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gptoss_cli.serve.openai.admission import admit, captured
from gptoss_cli.serve.openai.endpoints.common import reply, stream_doc
from gptoss_cli.serve.openai import policy_front
from gptoss_cli.serve.openai.protocol import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from gptoss_cli.serve.openai.state import server_state

router = APIRouter()


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={**stream_doc(ChatCompletionChunk)},
    summary="Create a chat completion (harmony-rendered; reasoning, tool calls, streaming)",
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    server = server_state(request)
    await admit(server, body, request)  # key's models and limits; model, user, prompt on the record
    return reply(captured(await policy_front.chat(server, body, request)))  # --policy around either front
