"""The shipped demo model: real architecture, verified files, harmony-shaped greedy output that holds on any CPU,
tool calls, and a reproducible (developer-only) build."""

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

import gptoss_cli
from gptoss_cli.demo import DEMO_CURRENT_DATE, DEMO_VERSION, MARKER, demo_info, demo_lock_path, demo_root, train
from gptoss_cli.demo.corpus import prompt_fingerprint
from gptoss_cli.serve.engines.interface import SamplingParams
from gptoss_cli.serve.harmony import RenderOptions, parse_completion, render_chat
from gptoss_cli.serve.engines.transformers.memory import read_safetensors_header
from gptoss_cli.serve.engines.transformers.engine import TransformersEngine
from gptoss_cli.verify import verify_lock
from tests.model_fixtures import demo_model_dir, load_engine  # noqa: F401 - fixture

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "description": "City name"}},
                   "required": ["city"]}}}
ANSWER = re.compile(r"^<\|channel\|>analysis<\|message\|>[^<]+<\|end\|>"
                    r"<\|start\|>assistant<\|channel\|>final<\|message\|>[^<]+<\|return\|>$")
MARGIN = 0.05  # logit lead of every greedy choice over the runner-up (CPU rounding differences are < 1e-3)
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


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_shipped_files_match_their_lock(demo_model_dir: Path) -> None:  # noqa: F811
    result = verify_lock(demo_lock_path(), strict=True)
    assert result.ok and not result.extra, result.summary()
    assert {f.path for f in result.files} == {p.name for p in demo_model_dir.iterdir()}
    assert demo_model_dir == demo_root() / "model" and demo_root().parent == Path(gptoss_cli.__file__).parent


def test_shipped_model_was_trained_on_the_current_rendering() -> None:
    """Fails when the harmony renderer changed: the shipped model was trained on prompts rendered the old way."""
    info = demo_info()
    assert info["version"] == DEMO_VERSION and info["current_date"] == DEMO_CURRENT_DATE
    assert info["prompt_fingerprint"] == prompt_fingerprint(DEMO_CURRENT_DATE), (
        "the server's harmony rendering changed since the demo model was built: run "
        "`.venv/bin/python scripts/build_demo_model.py` and commit gptoss_cli/demo/")


@pytest.mark.parametrize("messages,tools", [
    ([{"role": "user", "content": "What is the capital of France?"}], None),
    ([{"role": "user", "content": "Hello!"}], None),
    ([{"role": "user", "content": "What's the weather in Paris?"}], [WEATHER]),
])
def test_greedy_choices_are_clear_enough_to_hold_on_any_cpu(engine: Any, messages: list, tools: Any) -> None:
    """Float rounding differs between CPUs by far less than 1e-3: with every greedy choice ahead of the runner-up
    by at least ``MARGIN``, the greedy tests above give the same tokens on any machine."""
    import torch

    ids, _ = run(engine, messages, tools=tools)
    prompt = engine.tokenizer.encode(
        render_chat(messages, tools=tools, options=RenderOptions(current_date=DEMO_CURRENT_DATE)))
    with torch.no_grad():
        logits = engine.model(torch.tensor([prompt + ids])).logits[0, len(prompt) - 1: len(prompt) + len(ids) - 1]
    top = torch.topk(logits.float(), 2, dim=-1)
    assert top.indices[:, 0].tolist() == ids  # the full forward pass agrees with the decode loop
    assert float((top.values[:, 0] - top.values[:, 1]).min()) > MARGIN


def test_serve_demo_refuses_a_damaged_demo_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from typer.testing import CliRunner

    import gptoss_cli.demo as demo
    from gptoss_cli.cli import app

    shutil.copytree(demo_root() / "model", tmp_path / "model")
    shutil.copy(demo_lock_path(), tmp_path / "gptoss.lock.json")
    weights = tmp_path / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    monkeypatch.setattr(demo, "demo_root", lambda: tmp_path)
    result = CliRunner().invoke(app, ["serve", "--demo", "--port", "0"])
    assert result.exit_code == 1, result.output
    assert "does not match" in result.output and "gptoss verify" in result.output


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    """A short build (same code path, 3 steps) here and in a fresh interpreter with another hash seed."""
    train.build_demo_model(tmp_path / "here", seed=5, steps=3)
    code = ("import sys; from pathlib import Path; from gptoss_cli.demo.train import build_demo_model; "
            "build_demo_model(Path(sys.argv[1]), seed=5, steps=3)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True, env=env, timeout=240)
    assert _hashes(tmp_path / "here") == _hashes(tmp_path / "there")
    train.build_demo_model(tmp_path / "other", seed=6, steps=3)
    assert _hashes(tmp_path / "other")["model.safetensors"] != _hashes(tmp_path / "here")["model.safetensors"]


def test_build_shipped_replaces_the_folder_and_writes_a_valid_lock(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_build(out: Path, *, seed: int = 0, steps: int = 0, progress: Any = None) -> None:
        (out / "model.safetensors").write_text(f"seed {seed}")
        (out / MARKER).write_text("{}")

    monkeypatch.setattr(train, "build_demo_model", fake_build)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stale.bin").write_text("old")
    lock = train.build_shipped(tmp_path, seed=3)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [MARKER, "model.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gptoss.lock.json", "model"]  # no temp folders left
    result = verify_lock(lock, strict=True)
    assert result.ok and {f.path for f in result.files} == {MARKER, "model.safetensors"}
    assert all(entry["hash_source"] == "local" for entry in json.loads(lock.read_text())["files"])
