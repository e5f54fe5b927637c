"""Config precedence (flag > env > file > default), file errors, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from gptoss_cli.config import Secret, load_settings, mask
from gptoss_cli.errors import ConfigError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_default_when_nothing_set(tmp_path):
    s = load_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert s["serve.port"] == 8000
    assert s.source("serve.port") == "default"
    assert s["fetch.dest"] == Path("gpt-oss")


def test_precedence_flag_env_file_default(tmp_path):
    xdg = tmp_path / "xdg"
    _write(xdg / "gptoss" / "config.toml", "[serve]\nport = 7000\nhost = '0.0.0.0'\n[fetch]\njobs = 3\n")
    _write(tmp_path / "gptoss.toml", "[serve]\nport = 7100\n")
    env = {"XDG_CONFIG_HOME": str(xdg), "GPTOSS_SERVE_PORT": "7200", "GPTOSS_FETCH_JOBS": "5"}
    s = load_settings({"serve.port": 7300}, env=env, cwd=tmp_path)
    assert (s["serve.port"], s.source("serve.port")) == (7300, "flag")
    assert (s["fetch.jobs"], s.source("fetch.jobs")) == (5, "env:GPTOSS_FETCH_JOBS")
    assert s["serve.host"] == "0.0.0.0" and s.source("serve.host").startswith("file:")
    assert s.source("serve.host").endswith("config.toml")

    s = load_settings({}, env={"XDG_CONFIG_HOME": str(xdg)}, cwd=tmp_path)
    # ./gptoss.toml beats the XDG file
    assert s["serve.port"] == 7100 and s.source("serve.port") == f"file:{tmp_path / 'gptoss.toml'}"
    s = load_settings({}, env={"XDG_CONFIG_HOME": str(tmp_path / "none")}, cwd=tmp_path / "elsewhere")
    assert s["serve.port"] == 8000 and s.source("serve.port") == "default"


def test_alias_env_and_own_env_order(tmp_path):
    env = {"HF_ENDPOINT": "https://mirror.example", "HOME": str(tmp_path)}
    s = load_settings(env=env, cwd=tmp_path)
    assert s["fetch.endpoint"] == "https://mirror.example"
    assert s.source("fetch.endpoint") == "env:HF_ENDPOINT"
    env["GPTOSS_HF_ENDPOINT"] = "https://other.example"
    assert load_settings(env=env, cwd=tmp_path)["fetch.endpoint"] == "https://other.example"


def test_types_from_env(tmp_path):
    env = {"GPTOSS_SERVE_LOG_PROMPTS": "yes", "GPTOSS_FETCH_INCLUDE": "*.json, *.txt", "HOME": str(tmp_path)}
    s = load_settings(env=env, cwd=tmp_path)
    assert s["serve.log_prompts"] is True
    assert s["fetch.include"] == ["*.json", "*.txt"]


def test_bad_env_value_names_variable(tmp_path):
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"GPTOSS_SERVE_PORT": "eighty", "HOME": str(tmp_path)}, cwd=tmp_path)
    assert "GPTOSS_SERVE_PORT" in str(exc.value) and "serve.port" in str(exc.value)
    assert exc.value.exit_code == 2


def test_malformed_toml_names_file(tmp_path):
    path = _write(tmp_path / "gptoss.toml", "[serve\nport = 1\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert str(path) in exc.value.one_line()
    assert "\n" not in exc.value.one_line()


def test_wrong_type_in_file_names_file_and_key(tmp_path):
    path = _write(tmp_path / "gptoss.toml", "[serve]\nport = 'abc'\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert str(path) in str(exc.value) and "serve.port" in str(exc.value)


def test_unknown_key_in_file(tmp_path):
    _write(tmp_path / "gptoss.toml", "[serve]\nprot = 1\n")
    with pytest.raises(ConfigError, match="unknown key serve.prot"):
        load_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path)


def test_secret_never_shows(tmp_path):
    s = load_settings(env={"GPTOSS_API_KEY": "sk-topsecret-123", "HOME": str(tmp_path)}, cwd=tmp_path)
    value = s["serve.api_key"]
    assert isinstance(value, Secret)
    assert value.reveal() == "sk-topsecret-123"
    for shown in (str(value), repr(value), f"{value}", f"{value!r}", str(mask(value)), str([value])):
        assert "topsecret" not in shown


def test_secret_in_bad_file_value_is_masked(tmp_path):
    _write(tmp_path / "gptoss.toml", "[serve]\napi_key = ['sk-list-secret']\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert "sk-list-secret" not in str(exc.value)


def test_explicit_config_file(tmp_path):
    cfg = _write(tmp_path / "custom.toml", "home = '/tmp/gh'\n")
    s = load_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path, config_file=cfg)
    assert s["home"] == Path("/tmp/gh")
    with pytest.raises(ConfigError, match="not found"):
        load_settings(env={}, cwd=tmp_path, config_file=tmp_path / "missing.toml")


def test_only_the_searched_working_directory_file_is_a_project_file(tmp_path):
    _write(tmp_path / "gptoss.toml", "[fetch]\nendpoint = 'https://mirror.example'\n")
    s = load_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path)
    assert s.project_files == (tmp_path / "gptoss.toml",) and s.from_project_file("fetch.endpoint")
    assert not s.from_project_file("fetch.model")
    named = load_settings(env={"HOME": str(tmp_path), "GPTOSS_CONFIG": str(tmp_path / "gptoss.toml")}, cwd=tmp_path)
    assert named.project_files == () and not named.from_project_file("fetch.endpoint")
    flagged = load_settings(env={"HOME": str(tmp_path)}, cwd=tmp_path, config_file=tmp_path / "gptoss.toml")
    assert flagged.project_files == ()
