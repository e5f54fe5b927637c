"""Every setting gptoss has, declared once: dotted key, type, default, environment variables, secret or not.

Read by ``config.py`` (the one place that resolves them against flags, the environment and config files) and by the
generated docs (``gptoss config show``, the README table). Pure data: nothing is read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldSpec:
    """One setting: dotted key, value type, default, environment variables that can set it, and whether secret."""

    key: str
    kind: str  # "str" | "int" | "float" | "bool" | "path" | "list"
    default: Any
    help: str
    env: tuple[str, ...] = ()
    secret: bool = False

    @property
    def env_names(self) -> tuple[str, ...]:
        own = "GPTOSS_" + self.key.replace(".", "_").upper()
        return (own, *[e for e in self.env if e != own])


def _f(key: str, kind: str, default: Any, help: str, *env: str, secret: bool = False) -> FieldSpec:
    return FieldSpec(key=key, kind=kind, default=default, help=help, env=tuple(env), secret=secret)


FIELDS: tuple[FieldSpec, ...] = (
    # -- the tool itself
    _f("home", "path", "~/.cache/gptoss", "the tool's own state"),
    _f("debug", "bool", False, "print full tracebacks on errors"),
    # -- fetch
    _f("fetch.dest", "path", "./gpt-oss", "destination folder (code/, model/, gptoss.lock.json)"),
    _f("fetch.repo_url", "str", "https://github.com/openai/gpt-oss", "git URL of the gpt-oss code"),
    _f("fetch.ref", "str", None, "branch, tag or commit of the code to check out"),
    _f("fetch.git_mirror", "str", None, "URL prefix that replaces https://github.com/ for git"),
    _f("fetch.ssh_key", "path", None, "private key for an SSH --repo-url (ssh -i FILE -o IdentitiesOnly=yes)"),
    _f("fetch.model", "str", "openai/gpt-oss-20b", "model repository id"),
    _f("fetch.revision", "str", "main", "model revision (branch, tag or commit)"),
    _f("fetch.endpoint", "str", "https://huggingface.co", "Hugging Face-compatible endpoint or mirror",
       "GPTOSS_HF_ENDPOINT", "HF_ENDPOINT"),
    _f("fetch.source", "str", "hf", "where weights come from: hf or modelscope"),
    _f("fetch.modelscope_endpoint", "str", "https://www.modelscope.cn", "ModelScope endpoint",
       "MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN"),
    _f("fetch.token", "str", None, "Hugging Face token (sent only to the endpoint's origin)",
       "GPTOSS_HF_TOKEN", "HF_TOKEN", secret=True),
    _f("fetch.jobs", "int", 8, "parallel file downloads"),
    _f("fetch.include", "list", [], "glob patterns to download (default: what transformers serving needs)"),
    _f("fetch.exclude", "list", [], "glob patterns to skip"),
    _f("fetch.allow_pickle", "bool", False, "allow pickle-based weights (.bin/.pt/.pth/.pkl): they can run code"),
    _f("fetch.lock", "path", None, "a pinned lock: expected hashes (and default pins) for fetch"),
    # -- verify
    _f("verify.jobs", "int", 0, "parallel hashing workers (0 = one per core)"),
    # -- audit
    _f("audit.service", "str", "osv", "vulnerability service: pypi or osv"),
    _f("audit.osv_url", "str", None, "OSV-compatible API base URL"),
    _f("audit.osv_db", "path", None, "local OSV export (all.zip or a folder of JSON) for air-gapped audits"),
    _f("audit.fail_on", "str", "any", "exit 1 on any vulnerability, or only when a fix exists (fixable)"),
    _f("audit.ignore_vulns", "list", [], "vulnerability ids (or aliases) to ignore"),
    _f("audit.resolve", "bool", False, "let pip resolve unpinned requirements (needs the package index)"),
    _f("audit.timeout", "int", 15, "seconds pip-audit waits for each vulnerability-service request"),
    # -- serve
    _f("serve.host", "str", "127.0.0.1", "address to listen on"),
    _f("serve.port", "int", 8000, "port to listen on"),
    _f("serve.served_model_name", "str", "gpt-oss-20b", "model id reported by /v1/models"),
    _f("serve.api_key", "str", None, "API key clients must send as Bearer token", "GPTOSS_API_KEY",
       secret=True),
    _f("serve.device", "str", "auto", "auto, cpu or cuda"),
    _f("serve.dtype", "str", "auto", "auto, bfloat16 or float32"),
    _f("serve.mxfp4", "str", "auto", "MXFP4 experts: auto, native, packed or dequantise"),
    _f("serve.decode_step", "str", "fast", "decode steps: fast (gpt-oss's short path where it applies) or "
       "transformers (its forward)"),
    _f("serve.max_model_len", "int", None, "context length limit (default: the model's)"),
    _f("serve.reasoning_effort", "str", "medium", "default reasoning effort: low, medium or high"),
    _f("serve.aliases", "list", [], "extra model names accepted in requests (comma-separated)"),
    _f("serve.current_date", "str", None, "date in the harmony system message, YYYY-MM-DD (default: today)"),
    _f("serve.knowledge_cutoff", "str", "2024-06", "knowledge cutoff in the harmony system message"),
    _f("serve.max_concurrency", "int", 4, "requests generating at once"),
    _f("serve.max_queue", "int", 32, "requests waiting for a slot before 429"),
    _f("serve.kv_cache_memory", "str", "1GiB", "memory budget for the KV cache"),
    _f("serve.request_timeout", "float", 600.0, "seconds before a request is cancelled (504)"),
    _f("serve.drain_timeout", "float", 30.0, "seconds to let in-flight requests finish on shutdown"),
    _f("serve.max_body_bytes", "int", 4 * 1024 * 1024, "largest accepted request body"),
    _f("serve.cache_url", "str", None, "redis://... for a shared response cache (default: in memory)"),
    _f("serve.cache", "bool", True, "cache deterministic responses"),
    _f("serve.log_format", "str", "text", "access log format: text or json"),
    _f("serve.log_prompts", "bool", False, "include prompt and completion text in the access log"),
    _f("serve.policy", "path", None, "policy file (TOML): input/output rules, detectors, glossary; SIGHUP reloads"),
    _f("serve.keys_file", "path", None, "named API keys (gptoss keys add; default: <home>/keys.json when it exists)"),
    _f("serve.journal", "path", None, "tamper-evident request journal (JSON Lines, hash-chained)"),
    _f("serve.journal_max_bytes", "str", None, "rotate the journal past this size, e.g. 100MiB (default: never)"),
    _f("serve.journal_on_error", "str", "refuse", "journal unwritable: refuse (503) or continue (serve unlogged)"),
    _f("serve.journal_prompts", "bool", False, "full prompt and completion text in the journal (else SHA-256 only)"),
    _f("serve.engine", "str", "transformers", "transformers, vllm or upstream"),
    _f("serve.upstream_url", "str", None, "OpenAI-compatible backend for --engine upstream"),
    _f("serve.upstream_api_key_env", "str", None, "name of the variable holding the upstream's API key"),
    _f("serve.upstream_model", "str", None, "model name sent upstream (default: served name, or its only model)"),
    _f("serve.tensor_parallel_size", "int", 1, "vLLM: GPUs per model replica (tensor parallel)"),
    _f("serve.pipeline_parallel_size", "int", 1, "vLLM: pipeline stages (e.g. one per node)"),
    _f("serve.distributed_executor_backend", "str", None, "vLLM: mp, ray, uni or external_launcher"),
    _f("serve.vllm_args", "list", [], "extra arguments for `vllm serve`"),
    # -- up
    _f("up.audit", "bool", True, "gptoss up: run the audit stage"),
    _f("up.audit_max_age", "float", 24.0, "gptoss up: hours a clean audit of the same inputs is trusted"),
    _f("up.register", "bool", True, "gptoss up: register in Dify when dify.url is set"),
    _f("up.detach", "bool", False, "gptoss up: run the server in the background (pid and log in DEST/.gptoss)"),
    _f("up.ready_timeout", "float", 900.0, "gptoss up: seconds to wait for the server to load"),
    # -- dify-register
    _f("dify.url", "str", None, "Dify base URL (console)"),
    _f("dify.endpoint_url", "str", None, "the gptoss endpoint as Dify will reach it (ends in /v1)"),
    _f("dify.model_name", "str", "gpt-oss-20b", "model name registered in Dify"),
    _f("dify.email", "str", None, "Dify admin/owner account email"),
    _f("dify.workspace_id", "str", None, "workspace id for admin-API-key mode"),
    _f("dify.context_size", "int", None, "context size to register (default: from /v1/models)"),
    _f("dify.max_tokens", "int", None, "max tokens to register"),
    _f("dify.password_env", "str", None, "name of the variable holding the Dify password"),
    _f("dify.admin_api_key_env", "str", None, "name of the variable holding Dify's ADMIN_API_KEY"),
    _f("dify.server_api_key_env", "str", None, "name of the variable holding the gptoss server API key"),
    _f("dify.show_reasoning", "bool", True, "register with reasoning shown (agent_thought_support)"),
    _f("dify.structured_output", "bool", None, "register structured output (default: when the endpoint passes a "
       "json_schema request)"),
    _f("dify.set_default", "bool", False, "make the model the workspace's default LLM"),
    _f("dify.install_plugin", "bool", False, "install the openai_api_compatible plugin when missing"),
    _f("dify.version", "str", None, "Dify version to assume when X-Version is missing"),
    _f("dify.preflight", "bool", True, "check the endpoint before touching Dify"),
    _f("dify.insecure", "bool", False, "skip TLS verification towards Dify (not recommended)"),
    _f("dify.timeout", "float", 30.0, "seconds per Dify request"),
)

FIELDS_BY_KEY: dict[str, FieldSpec] = {f.key: f for f in FIELDS}


__all__ = ["FIELDS", "FIELDS_BY_KEY", "FieldSpec"]
