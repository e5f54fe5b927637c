"""The embedded demo model: real architecture, harmony-shaped greedy output, tool calls, caching, determinism."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gptoss_cli.serve import demo
from gptoss_cli.serve.demo import DEMO_CURRENT_DATE, MARKER, ensure_demo_model
from gptoss_cli.serve.engine import SamplingParams
from gptoss_cli.serve.harmony import RenderOptions, parse_completion, render_chat
from gptoss_cli.serve.memory import read_safetensors_header
from gptoss_cli.serve.transformers_engine import TransformersEngine
from tests.model_fixtures import demo_model_dir, load_engine  # noqa: F401 - fixture

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                   "required": ["city"]}}}
ANSWER = re.compile(r"^<\|channel\|>analysis<\|message\|>[^<]+<\|end\|>"
                    r"<\|start\|>assistant<\|channel\|>final<\|message\|>[^<]+<\|return\|>$")
CALL = re.compile(r"^<\|channel\|>analysis<\|message\|>[^<]+<\|end\|><\|start\|>assistant to=functions\.(\w+)"
                  r"<\|channel\|>commentary json<\|message\|>([^<]+)<\|call\|>$")


@pytest.fixture(scope="module")
def engine(demo_model_dir: Path) -> Any:  # noqa: F811
    eng = TransformersEngine(demo_model_dir, device="cpu")
    load_engine(eng)
    yield eng
    eng.close()


def run(engine: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
        **params: Any) -> tuple[list[int], str]:
    prompt = render_chat(messages, tools=tools, options=RenderOptions(current_date=DEMO_CURRENT_DATE))
    tok = engine.tokenizer
    values = {"max_tokens": 120, "temperature": 0.0,
              "stop_token_ids": (tok.token_id("<|return|>"), tok.token_id("<|call|>")), **params}

    async def go() -> list[int]:
        return [t async for t in engine.generate(tok.encode(prompt), SamplingParams(**values))]

    ids = asyncio.run(asyncio.wait_for(go(), 120))
    return ids, tok.decode(ids)


def test_demo_folder_has_the_real_architecture(demo_model_dir: Path) -> None:  # noqa: F811
    names = {p.name for p in demo_model_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json", MARKER} <= names
    config = json.loads((demo_model_dir / "config.json").read_text())
    assert config["architectures"] == ["GptOssForCausalLM"] and config["model_type"] == "gpt_oss"
    assert config["num_local_experts"] > config["num_experts_per_tok"] >= 2
    assert config["layer_types"] == ["sliding_attention", "full_attention"] * (config["num_hidden_layers"] // 2)
    assert config["rope_parameters"]["rope_type"] == "yarn"
    tensors = read_safetensors_header(demo_model_dir / "model.safetensors")
    for part in ("self_attn.sinks", "mlp.router.weight", "mlp.experts.gate_up_proj", "mlp.experts.down_proj"):
        assert f"model.layers.0.{part}" in tensors
    tokenizer = json.loads((demo_model_dir / "tokenizer.json").read_text())
    specials = {t["content"]: t["id"] for t in tokenizer["added_tokens"] if t["special"]}
    assert {"<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|return|>", "<|call|>", "<|constrain|>"} <= set(
        specials)
    generation = json.loads((demo_model_dir / "generation_config.json").read_text())
    assert {specials["<|return|>"], specials["<|call|>"]} <= set(generation["eos_token_id"])


@pytest.mark.parametrize("question", ["What is the capital of France?", "Hello!", "Tell me about cats."])
def test_greedy_output_is_analysis_then_final(engine: Any, question: str) -> None:
    ids, text = run(engine, [{"role": "user", "content": question}])
    assert ANSWER.match(text), text
    parsed = parse_completion(engine.tokenizer, ids)
    assert parsed.finish_reason == "stop" and parsed.reasoning and parsed.content and not parsed.tool_calls
    assert "<|" not in parsed.content and "final" not in parsed.content.split()[0]


def test_greedy_output_calls_the_offered_tool(engine: Any) -> None:
    ids, text = run(engine, [{"role": "user", "content": "What's the weather in Paris?"}], tools=[WEATHER])
    match = CALL.match(text)
    assert match, text
    assert match.group(1) == "get_weather" and isinstance(json.loads(match.group(2))["city"], str)
    parsed = parse_completion(engine.tokenizer, ids)
    assert parsed.finish_reason == "tool_calls" and [c.name for c in parsed.tool_calls] == ["get_weather"]
    json.loads(parsed.tool_calls[0].arguments)


def test_answers_after_a_tool_result(engine: Any) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    messages = [{"role": "user", "content": "What's the weather in Oslo?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature":12}'}]
    _, text = run(engine, messages, tools=[WEATHER])
    assert ANSWER.match(text), text


def test_max_tokens_and_seeded_sampling(engine: Any) -> None:
    messages = [{"role": "user", "content": "Hi"}]
    ids, _ = run(engine, messages, max_tokens=3)
    assert len(ids) == 3 and parse_completion(engine.tokenizer, ids).finish_reason is None
    first, _ = run(engine, messages, temperature=1.0, seed=11)
    second, _ = run(engine, messages, temperature=1.0, seed=11)
    assert first == second


def test_cached_demo_is_reused(demo_model_dir: Path) -> None:  # noqa: F811
    said: list[str] = []
    again = ensure_demo_model(demo_model_dir.parent.parent, seed=0, progress=said.append)
    assert again == demo_model_dir and said == []  # nothing rebuilt
    assert not [p for p in demo_model_dir.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_another_home_gets_a_copy_of_this_process_build(demo_model_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    said: list[str] = []
    copy = ensure_demo_model(tmp_path, seed=0, progress=said.append)
    assert copy != demo_model_dir and _hashes(copy) == _hashes(demo_model_dir)
    assert not any("building" in line for line in said)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    """A short build (same code path, 3 steps) here and in a fresh interpreter with another hash seed."""
    demo.build_demo_model(tmp_path / "here", seed=5, steps=3)
    code = ("import sys; from pathlib import Path; from gptoss_cli.serve.demo import build_demo_model; "
            "build_demo_model(Path(sys.argv[1]), seed=5, steps=3)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True, env=env, timeout=240)
    assert _hashes(tmp_path / "here") == _hashes(tmp_path / "there")
    demo.build_demo_model(tmp_path / "other", seed=6, steps=3)
    assert _hashes(tmp_path / "other")["model.safetensors"] != _hashes(tmp_path / "here")["model.safetensors"]


def test_build_is_atomic_and_stale_builds_are_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[Path] = []

    def fake_build(out: Path, *, seed: int = 0, progress: Any = None, **_: Any) -> None:
        builds.append(out)
        (out / "model.safetensors").write_text(f"build {len(builds)}")
        (out / MARKER).write_text(json.dumps({"version": demo.DEMO_VERSION, "seed": seed,
                                              "prompt_fingerprint": demo.prompt_fingerprint()}))

    monkeypatch.setattr(demo, "build_demo_model", fake_build)
    monkeypatch.setattr(demo, "_BUILT_IN_PROCESS", {})
    said: list[str] = []
    first = ensure_demo_model(tmp_path, seed=3, progress=said.append)
    assert first == tmp_path / "demo" / f"{demo.DEMO_VERSION}-seed3" and len(builds) == 1
    assert builds[0] != first and not builds[0].exists()  # built elsewhere, then renamed into place
    assert said and "building the demo model" in said[0]
    assert ensure_demo_model(tmp_path, seed=3) == first and len(builds) == 1
    marker = json.loads((first / MARKER).read_text())
    (first / MARKER).write_text(json.dumps({**marker, "prompt_fingerprint": "renderer-changed"}))
    assert ensure_demo_model(tmp_path, seed=3) == first and len(builds) == 2
    assert (first / "model.safetensors").read_text() == "build 2"
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == [first.name]
