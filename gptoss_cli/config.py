"""The one place that reads environment variables and config files.

Every setting is declared once in ``FIELDS`` (``config_fields.py``: dotted key, type, default, environment variables,
secret or not).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from gptoss_cli.config_fields import FIELDS, FIELDS_BY_KEY, FieldSpec
from gptoss_cli.errors import ConfigError
from gptoss_cli.redact import Secret, mask


def _toml() -> Any:
    """The TOML parser, imported only when a config file is read (start-up of every command pays otherwise)."""
    import tomllib

    return tomllib


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
    except (TypeError, ValueError):
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


def hf_hub_cache(env: Mapping[str, str] | None = None) -> Path:
    """The Hub cache huggingface_hub and ``kernels`` use: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
    ``~/.cache/huggingface/hub``."""
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def local_kernels(env: Mapping[str, str] | None = None) -> str | None:
    """``LOCAL_KERNELS`` (``repo=path:repo=path``), which ``kernels`` reads to load kernels from folders."""
    env = os.environ if env is None else env
    return env.get("LOCAL_KERNELS") or None


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


def git_ssh_environment(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """``(GIT_SSH_COMMAND, GIT_SSH)`` as git itself reads them (empty counts as unset); fetch builds on them.

    Environment only, never a config file: the command runs through a shell, and a project file must not choose it.
    """
    env = os.environ if env is None else env
    return env.get("GIT_SSH_COMMAND") or None, env.get("GIT_SSH") or None


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
    "git_ssh_environment",
    "hf_hub_cache",
    "hf_login_token",
    "local_kernels",
    "load_settings",
    "mask",
    "network_environment",
    "no_color",
    "progress_bars_disabled",
    "read_config_file",
    "read_env",
]
