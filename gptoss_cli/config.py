"""The one place that reads environment variables and config files.

Every setting is declared once in ``FIELDS`` (dotted key, type, default, environment variables, secret or not).
``load_settings()`` resolves each one with the precedence

    command-line flag  >  environment (GPTOSS_*, then documented aliases such as HF_ENDPOINT)
                       >  config file (./gptoss.toml, then $XDG_CONFIG_HOME/gptoss/config.toml)
                       >  default

and records where every value came from, so ``gptoss config show`` can explain it. The rest of the package only
ever sees explicit values taken from the resolved ``Settings`` object.

Config files are TOML; a dotted key ``serve.port`` is written as ``[serve]`` / ``port = 8000``. Top-level keys
(``home``) sit outside any table.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from gptoss_cli.errors import ConfigError
from gptoss_cli.redact import Secret, mask


def _toml() -> Any:
    """The TOML parser, imported only when a config file is read (start-up of every command pays otherwise)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
    return tomllib


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


@dataclass(frozen=True)
class Resolved:
    """A value and where it came from: ``flag``, ``env:NAME``, ``file:PATH`` or ``default``."""

    value: Any
    source: str


@dataclass(frozen=True)
class Settings:
    """The effective configuration: every declared key resolved once, with its source."""

    values: Mapping[str, Resolved]
    files: tuple[Path, ...] = field(default=())
    project_files: tuple[Path, ...] = field(default=())  # found in the working directory, not chosen by the user

    def from_project_file(self, key: str) -> bool:
        """Whether ``key`` came from a project file (``./gptoss.toml`` found by the search, not ``--config``)."""
        source = self.values[key].source
        return source.startswith("file:") and Path(source[len("file:"):]) in self.project_files

    def __getitem__(self, key: str) -> Any:
        return self.values[key].value

    def get(self, key: str, default: Any = None) -> Any:
        r = self.values.get(key)
        return default if r is None or r.value is None else r.value

    def source(self, key: str) -> str:
        return self.values[key].source

    def section(self, name: str) -> dict[str, Any]:
        """All values of one section, keyed without the section prefix (``section("serve")["port"]``)."""
        prefix = name + "."
        return {k[len(prefix):]: r.value for k, r in self.values.items() if k.startswith(prefix)}

    @property
    def home(self) -> Path:
        return Path(self["home"])


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _coerce(spec: FieldSpec, raw: Any, where: str) -> Any:
    """Turn a raw value (string from env, TOML value, flag value) into the field's type, or raise ConfigError."""
    if raw is None:
        return None
    try:
        value = _coerce_kind(spec.kind, raw)
    except (TypeError, ValueError) as exc:
        shown = "********" if spec.secret else repr(raw)
        raise ConfigError(f"{where}: key {spec.key}: expected {spec.kind}, got {shown}") from None
    if spec.secret and isinstance(value, str):
        return Secret(value) if value else None
    return value


def _coerce_kind(kind: str, raw: Any) -> Any:
    if kind == "str":
        if isinstance(raw, (dict, list, bool)):
            raise TypeError
        return str(raw)
    if kind == "path":
        if not isinstance(raw, (str, Path)):
            raise TypeError
        return Path(os.path.expanduser(str(raw)))
    if kind == "int":
        if isinstance(raw, bool) or isinstance(raw, float):
            raise TypeError
        return int(raw)
    if kind == "float":
        if isinstance(raw, bool):
            raise TypeError
        return float(raw)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError
    if kind == "list":
        if isinstance(raw, str):
            return [p.strip() for p in raw.split(",") if p.strip()]
        if isinstance(raw, (list, tuple)) and all(isinstance(x, str) for x in raw):
            return list(raw)
        raise TypeError
    raise ValueError(f"unknown kind {kind}")  # pragma: no cover - programming error


def config_files(env: Mapping[str, str], cwd: Path) -> list[Path]:
    """Config files in precedence order (first wins): $GPTOSS_CONFIG, ./gptoss.toml, XDG config."""
    explicit = env.get("GPTOSS_CONFIG")
    if explicit:
        return [Path(os.path.expanduser(explicit))]
    xdg = env.get("XDG_CONFIG_HOME") or os.path.join(env.get("HOME", os.path.expanduser("~")), ".config")
    return [cwd / "gptoss.toml", Path(xdg) / "gptoss" / "config.toml"]


def _flatten(table: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and key not in FIELDS_BY_KEY:
            yield from _flatten(v, key + ".")
        else:
            yield key, v


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse one TOML config file into ``{dotted key: raw value}``; a malformed file is a one-line ConfigError."""
    tomllib = _toml()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    out: dict[str, Any] = {}
    for key, value in _flatten(data):
        if key not in FIELDS_BY_KEY:
            raise ConfigError(f"{path}: unknown key {key}", hint="see `gptoss config show` for valid keys")
        out[key] = value
    return out


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    config_file: Path | None = None,
) -> Settings:
    """Resolve every declared setting: flag > env > config file > default.

    ``flags`` maps dotted keys to values given on the command line; ``None`` means "not given".
    ``config_file`` (the global ``--config`` flag) replaces the config file search; it must exist.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    flags = flags or {}
    unknown = set(flags) - set(FIELDS_BY_KEY)
    if unknown:  # pragma: no cover - programming error in a command module
        raise KeyError(f"undeclared settings: {sorted(unknown)}")

    file_layers: list[tuple[Path, dict[str, Any]]] = []
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError(f"{config_file}: config file not found")
    for path in [Path(config_file)] if config_file is not None else config_files(env, cwd):
        if path.is_file():
            file_layers.append((path, read_config_file(path)))

    values: dict[str, Resolved] = {}
    for spec in FIELDS:
        values[spec.key] = _resolve_one(spec, flags, env, file_layers)
    searched = config_file is None and not env.get("GPTOSS_CONFIG")
    project = tuple(p for p, _ in file_layers if searched and p == cwd / "gptoss.toml")
    return Settings(values=values, files=tuple(p for p, _ in file_layers), project_files=project)


def _resolve_one(
    spec: FieldSpec,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    file_layers: list[tuple[Path, dict[str, Any]]],
) -> Resolved:
    flag = flags.get(spec.key)
    if flag is not None and flag != [] and flag != ():
        return Resolved(_coerce(spec, flag, "command line"), "flag")
    for name in spec.env_names:
        raw = env.get(name)
        if raw is not None and raw != "":
            return Resolved(_coerce(spec, raw, f"environment variable {name}"), f"env:{name}")
    for path, table in file_layers:
        if spec.key in table:
            return Resolved(_coerce(spec, table[spec.key], str(path)), f"file:{path}")
    default = spec.default
    if isinstance(default, list):
        default = list(default)
    return Resolved(_coerce(spec, default, "default") if default is not None else None, "default")


def hf_login_token(env: Mapping[str, str] | None = None) -> Secret | None:
    """The token huggingface_hub itself finds: ``HF_TOKEN``, then the file ``hf auth login`` wrote
    (``HF_TOKEN_PATH``, default ``$HF_HOME/token``), through ``huggingface_hub.get_token()``.

    ``HF_HUB_DISABLE_IMPLICIT_TOKEN`` turns it off, as it does for huggingface_hub. huggingface_hub is imported
    here, so call this only when a token is needed.
    """
    env = os.environ if env is None else env
    if env.get("HF_HUB_DISABLE_IMPLICIT_TOKEN", "").strip().lower() in _TRUE:
        return None
    from huggingface_hub import get_token

    try:
        token = get_token()
    except Exception:  # noqa: BLE001 - e.g. an OIDC exchange that failed: no token, the server will say 401
        return None
    return Secret(token) if token else None


def debug_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether GPTOSS_DEBUG asks for full tracebacks (read without loading config files)."""
    env = os.environ if env is None else env
    return env.get("GPTOSS_DEBUG", "").strip().lower() in _TRUE


def no_color(env: Mapping[str, str] | None = None) -> bool:
    """NO_COLOR convention (https://no-color.org): any non-empty value disables colour."""
    env = os.environ if env is None else env
    return bool(env.get("NO_COLOR"))


def progress_bars_disabled(env: Mapping[str, str] | None = None) -> bool:
    """``HF_HUB_DISABLE_PROGRESS_BARS`` (huggingface_hub's switch, truthy 1/true/yes/on): no animated bars."""
    env = os.environ if env is None else env
    return env.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() in _TRUE


PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "all_proxy",
              "no_proxy")


def network_environment(env: Mapping[str, str] | None = None) -> dict[str, bool]:
    """Which network-related variables are set (names only: values may hold credentials)."""
    env = os.environ if env is None else env
    names = ("HF_ENDPOINT", "HF_HUB_OFFLINE", "HF_TOKEN", *PROXY_VARS)
    return {name: bool(env.get(name)) for name in names}


def read_env(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """Read one variable the user named explicitly (``--password-env VAR``); empty counts as unset."""
    env = os.environ if env is None else env
    value = env.get(name)
    return value if value else None


__all__ = [
    "FIELDS",
    "FIELDS_BY_KEY",
    "FieldSpec",
    "Resolved",
    "Secret",
    "Settings",
    "config_files",
    "debug_enabled",
    "hf_login_token",
    "load_settings",
    "mask",
    "network_environment",
    "no_color",
    "progress_bars_disabled",
    "read_config_file",
    "read_env",
]
