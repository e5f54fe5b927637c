"""Pydantic models of the OpenAI API subset we serve (requests, responses, stream chunks, errors).

The request models are the contract, and ``/openapi.json`` says exactly what the server accepts:

- types are strict (``"echo": 0``, ``"stream": "true"`` or ``"max_tokens": "5"`` are 400s, not coerced), as JSON
  Schema reads them: a whole number is fine where a float is expected, and ``5.0`` is an integer;
- what the planning code refuses with its own message (``n`` other than 1, ``logprobs``, ``suffix``, more than one
  prompt or 16 stop strings, non-text content parts, unknown reasoning efforts, a ``json_schema`` format without its
  schema) is declared in the schema too (``json_schema_extra``);
- ``seed`` is an int64, like OpenAI's;
- any string holding a lone UTF-16 surrogate (``"\\ud800"``: not Unicode text) is a 400 naming where it is.

What one field cannot say is in its description: a named ``tool_choice`` must name a given tool, ``required`` needs
tools, and prompt plus ``max_tokens`` must fit the context (400 ``context_length_exceeded``).

Requests ignore unknown fields (clients send many we do not use) instead of answering 422. Anything pydantic
rejects becomes a 400 in the OpenAI envelope (see ``app.py``). Stream chunks are built as plain dicts in ``chat.py``
for speed; ``ChatCompletionChunk`` documents (and tests check) their shape.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
EFFORT_VALUES = ("low", "medium", "high", "minimal", "none")  # minimal / none are read as low
TEXT_PART_TYPES = ("text", "input_text")
MAX_STOP_STRINGS = 16
LONE_SURROGATE_ERROR = "lone_surrogate"
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class _Open(BaseModel):
    """Objects whose extra keys we keep (messages carry ``reasoning``, ``thinking`` and other vendor keys)."""

    model_config = ConfigDict(extra="allow", strict=True)


def _integral(value: Any) -> Any:
    """JSON Schema's integers include ``5.0``; strings and booleans stay wrong (strict validation rejects them)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_integral)]
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_integral)]  # constraints first: they reach the schema
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX), BeforeValidator(_integral)]


def _text_key(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("utf-8")


def lone_surrogate_at(value: Any) -> str | None:
    """The dotted path of the first string (or object key) in ``value`` holding a lone surrogate, else None."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return path
        elif isinstance(item, dict):
            children = []
            for key, child in item.items():
                key = str(key)
                if _SURROGATE.search(key):
                    return path or "body"
                children.append((child, f"{path}.{key}" if path else key))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend(reversed([(child, f"{path}[{i}]") for i, child in enumerate(item)]))
    return None


def _check_text(data: Any) -> Any:
    where = lone_surrogate_at(data)
    if where is not None:
        raise PydanticCustomError(
            LONE_SURROGATE_ERROR,
            "{param}: the text holds a lone UTF-16 surrogate, which is not valid Unicode; send UTF-8 text.",
            {"param": _text_key(where)},
        )
    return data


# ----------------------------------------------------------------------------------------------------- requests


class ContentPart(_Open):
    type: str = Field(description="This model reads text only.", json_schema_extra={"enum": list(TEXT_PART_TYPES)})
    text: Optional[str] = None


class FunctionCallIn(_Open):
    name: str
    arguments: Union[str, dict[str, Any], None] = None


class ToolCallIn(_Open):
    id: Optional[str] = None
    type: str = "function"
    function: FunctionCallIn


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Union[str, list[ContentPart], None] = None
    name: Optional[str] = None
    tool_calls: Optional[list[ToolCallIn]] = None
    tool_call_id: Optional[str] = None
    reasoning: Optional[str] = None
    reasoning_content: Optional[str] = None
    thinking: Optional[str] = None


class FunctionDef(_Open):
    name: str = Field(min_length=1)
    description: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    strict: Optional[bool] = None


class Tool(_Request):
    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(_Request):
    name: str


class NamedToolChoice(_Request):
    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaFormat(_Request):
    name: str = "response"
    description: Optional[str] = None
    schema_: Optional[dict[str, Any]] = Field(default=None, alias="schema", description="A valid JSON Schema.")
    strict: Optional[bool] = None


def _response_format_schema(schema: dict[str, Any]) -> None:
    """``json_schema`` is required exactly when ``type`` is ``json_schema``: say so as two alternatives."""
    props = schema.pop("properties")
    schema.pop("required", None)
    nested = props["json_schema"]
    schema["oneOf"] = [
        {"type": "object", "properties": {"type": {"enum": ["text", "json_object"]}, "json_schema": nested},
         "required": ["type"]},
        {"type": "object", "properties": {"type": {"const": "json_schema"},
                                          "json_schema": nested["anyOf"][0] if "anyOf" in nested else nested},
         "required": ["type", "json_schema"]},
    ]


class ResponseFormat(_Request):
    model_config = ConfigDict(json_schema_extra=_response_format_schema)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaFormat] = None


class StreamOptions(_Request):
    include_usage: bool = False


_EFFORT_DOC = {"description": "low | medium | high; minimal and none are read as low.",
               "json_schema_extra": {"enum": [*EFFORT_VALUES, None]}}


class ReasoningOptions(_Request):
    effort: Optional[str] = Field(default=None, **_EFFORT_DOC)  # type: ignore[arg-type]


class SamplingRequest(_Request):
    model: Optional[str] = Field(default=None, description="Served model name or alias (default: the served one).")
    max_tokens: Optional[PositiveInt] = Field(
        default=None, description="Prompt plus max_tokens must fit the context (else 400 context_length_exceeded)."
    )
    temperature: Optional[float] = Field(
        default=None, ge=0.0, le=2.0, description="0 (or anything below 1e-5) is greedy."
    )
    top_p: Optional[float] = Field(default=None, gt=0.0, le=1.0)
    stop: Union[str, list[str], None] = Field(default=None, json_schema_extra={"maxItems": MAX_STOP_STRINGS})
    seed: Optional[Int64] = None
    n: Optional[JsonInt] = Field(default=None, description="Only 1 is supported.",
                             json_schema_extra={"minimum": 1, "maximum": 1})
    stream: Optional[bool] = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    presence_penalty: Optional[float] = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: Optional[float] = Field(default=None, ge=-2.0, le=2.0)
    reasoning_effort: Optional[str] = Field(default=None, **_EFFORT_DOC)  # type: ignore[arg-type]
    reasoning: Optional[ReasoningOptions] = None

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        return _check_text(data)


class ChatCompletionRequest(SamplingRequest):
    logprobs: Optional[bool] = Field(default=None, description="Not supported: false or absent.",
                                     json_schema_extra={"enum": [False, None]})
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Optional[PositiveInt] = None
    tools: Optional[list[Tool]] = None
    tool_choice: Union[Literal["none", "auto", "required"], NamedToolChoice, None] = Field(
        default=None, description="`required` needs tools; a named function must be one of the tools."
    )
    parallel_tool_calls: Optional[bool] = None
    response_format: Optional[ResponseFormat] = None
    functions: Optional[list[FunctionDef]] = Field(default=None, description="Legacy; read as `tools`.")
    function_call: Union[Literal["none", "auto"], NamedFunction, None] = Field(
        default=None, description="Legacy; read as `tool_choice`."
    )


class CompletionRequest(SamplingRequest):
    prompt: Union[str, list[str]] = Field(description="One prompt (a list must hold exactly one string).",
                                          json_schema_extra={"minItems": 1, "maxItems": 1})
    echo: Optional[bool] = False
    suffix: Optional[str] = Field(default=None, description="Not supported: empty or absent.",
                                  json_schema_extra={"maxLength": 0})
    logprobs: Optional[JsonInt] = Field(default=None, description="Not supported: 0 or absent.",
                                    json_schema_extra={"enum": [0, None]})


# ---------------------------------------------------------------------------------------------------- responses


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: Optional[str]
    reasoning_content: Optional[str] = None
    reasoning: Optional[str] = None
    tool_calls: Optional[list[ToolCallOut]] = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ToolCallDeltaFunction(BaseModel):
    name: Optional[str] = None
    arguments: Optional[str] = None


class ToolCallDelta(BaseModel):
    index: int
    id: Optional[str] = None
    type: Optional[Literal["function"]] = None
    function: ToolCallDeltaFunction


class ChunkDelta(BaseModel):
    role: Optional[Literal["assistant"]] = None
    content: Optional[str] = None
    reasoning_content: Optional[str] = None
    reasoning: Optional[str] = None
    tool_calls: Optional[list[ToolCallDelta]] = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    finish_reason: Optional[Literal["stop", "length", "tool_calls", "content_filter"]] = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One SSE event of a streamed chat completion. The usage event has ``choices: []``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Optional[Usage] = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Optional[Literal["stop", "length", "tool_calls", "content_filter"]] = None
    logprobs: None = None
    reasoning_content: Optional[str] = None
    reasoning: Optional[str] = None


class Completion(BaseModel):
    """A text completion; streamed events have the same shape with partial ``text``."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Optional[Usage] = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str
    max_model_len: Optional[int] = None
    context_length: Optional[int] = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorEnvelope(BaseModel):
    error: ErrorDetail


__all__ = [
    "EFFORT_VALUES",
    "INT64_MAX",
    "INT64_MIN",
    "LONE_SURROGATE_ERROR",
    "MAX_STOP_STRINGS",
    "TEXT_PART_TYPES",
    "AssistantMessage",
    "ChatChoice",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Completion",
    "CompletionChoice",
    "CompletionRequest",
    "ErrorEnvelope",
    "ModelCard",
    "ModelList",
    "ResponseFormat",
    "Tool",
    "ToolCallOut",
    "Usage",
]
