"""``gptoss keys add|list|revoke``: named API keys for ``gptoss serve`` (the keys file; ``gptoss_cli/keys.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import output_for, settings_for
from gptoss_cli.cli._plain import PlainCommand, PlainGroup

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(help="Named API keys for gptoss serve: add (shown once), list, revoke.", no_args_is_help=True,
                  rich_markup_mode=None, cls=PlainGroup)

KeysFileOpt = Annotated[Optional[Path], typer.Option(
    "--keys-file", help="The keys file. (default: serve.keys_file, else <home>/keys.json)")]
NameArg = Annotated[str, typer.Argument(help="The key's name: what logs, metrics and the journal show.")]


def _path(ctx: typer.Context, keys_file: Optional[Path]) -> Path:
    from gptoss_cli.keys import default_keys_path

    settings = settings_for(ctx, {"serve.keys_file": keys_file})
    return Path(settings.get("serve.keys_file") or default_keys_path(settings.home))


@app.command("add", cls=PlainCommand)
@boundary
def add(
    ctx: typer.Context,
    name: NameArg,
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", "--models", help="Model names this key may use (repeatable or comma-separated). "
        "(default: every served model)")] = None,
    rpm: Annotated[Optional[int], typer.Option("--rpm", "--requests-per-minute", min=1,
                                               help="Requests per minute (sliding window).")] = None,
    tpm: Annotated[Optional[int], typer.Option("--tpm", "--tokens-per-minute", min=1,
                                               help="Tokens per minute (prompt + completion).")] = None,
    policy: Annotated[Optional[str], typer.Option(
        help="Policy file (TOML, as for serve --policy) applied to this key's requests instead of the server's.")
    ] = None,
    keys_file: KeysFileOpt = None,
) -> None:
    """Create a key and print it once (stdout); only its SHA-256 is stored. A running server picks it up."""
    from gptoss_cli.keys import add_key

    out = output_for(ctx)
    path = _path(ctx, keys_file)
    models = [m for given in model or () for m in given.split(",")]
    policy = _policy_file(policy)
    entry, key = add_key(path, name, models=models, rpm=rpm, tpm=tpm, policy=policy)
    data = {**entry.public(), "key": key, "keys_file": str(path)}

    def human(console: Console) -> None:
        sys.stdout.write(key + "\n")  # alone on stdout: KEY=$(gptoss keys add NAME)
        sys.stdout.flush()
        out.info(f"gptoss: key {name!r} added to {path}; it is shown only now — store it safely")

    out.result(data, human)


@app.command("list", cls=PlainCommand)
@boundary
def list_keys(
    ctx: typer.Context,
    keys_file: KeysFileOpt = None,
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
) -> None:
    """List the keys (name, id, limits, models, policy; never the key or its hash)."""
    from gptoss_cli.keys import read_keys

    out = output_for(ctx)
    path = _path(ctx, keys_file)
    keys = read_keys(path)
    rows = [e.public() for e in keys.entries if all_keys or e.active]
    data = {"keys_file": str(path), "keys": rows}

    def human(console: Console) -> None:
        if not rows:
            out.info(f"gptoss: no keys in {path} (add one: gptoss keys add NAME)")
            return
        table = out.table("name", "id", "created", "models", "rpm", "tpm", "policy", "revoked", title=str(path))
        for r in rows:
            table.add_row(r["name"], r["id"], r["created"], ", ".join(r["models"]) or "all",
                          *(("-" if r[k] is None else str(r[k])) for k in ("rpm", "tpm", "policy", "revoked")))
        console.print(table)

    out.result(data, human)


@app.command("revoke", cls=PlainCommand)
@boundary
def revoke(ctx: typer.Context, name: NameArg, keys_file: KeysFileOpt = None) -> None:
    """Revoke the key NAME: a running server refuses it (401) from its next request on, no restart needed."""
    from gptoss_cli.keys import revoke_key

    out = output_for(ctx)
    path = _path(ctx, keys_file)
    entry = revoke_key(path, name)
    out.result({**entry.public(), "keys_file": str(path)},
               lambda console: out.info(f"gptoss: key {name!r} revoked in {path}"))


def _policy_file(policy: Optional[str]) -> Optional[str]:
    """A key's policy is a policy file, checked now (exit 2 with the line) and stored as an absolute path."""
    if policy is None:
        return None
    from pathlib import Path

    from gptoss_cli.errors import UsageError
    from gptoss_cli.serve.policy.load import PolicyError, load_policy

    path = Path(policy).expanduser().resolve()
    try:
        load_policy(str(path))
    except PolicyError as exc:
        raise UsageError(f"--policy {policy}: {exc}") from None
    return str(path)
