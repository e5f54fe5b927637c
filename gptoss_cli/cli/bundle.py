"""``gptoss bundle create OUT`` / ``gptoss bundle install BUNDLE``: carry gptoss and its model to an air-gapped host."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer
from rich.console import Console

from gptoss_cli.cli._errors import boundary
from gptoss_cli.cli._options import DestOpt, output_for, settings_for
from gptoss_cli.cli._plain import PlainCommand, PlainGroup
from gptoss_cli.cli._progress import human_size

_Opt = typer.Option

app = typer.Typer(help="Bundles for air-gapped machines: create one here, install it there with no network.",
                  no_args_is_help=True, rich_markup_mode=None, cls=PlainGroup)


@app.command("create", cls=PlainCommand)
@boundary
def create(
    ctx: typer.Context,
    out_path: Annotated[Path, typer.Argument(metavar="OUT", help="New folder, or OUT.tar / OUT.tar.gz for a tar.")],
    dest: DestOpt = None,
    python: Annotated[Optional[str], _Opt("--python", help="Target Python version of the wheels, e.g. 3.11 "
                                          "(default: this interpreter's).", show_default=False)] = None,
    platform: Annotated[Optional[List[str]], _Opt("--platform", help="Target platform tag, e.g. "
                                                  "manylinux_2_28_x86_64 (repeatable; default: this machine's).",
                                                  show_default=False)] = None,
    vocab: Annotated[Optional[Path], _Opt("--vocab", help="o200k_base.tiktoken (default: the copy shipped with "
                                          "gptoss, if any).", show_default=False)] = None,
    torch: Annotated[str, _Opt("--torch", help="The pinned torch to bundle with the serve extra.")
                     ] = "torch==2.13.0",
    no_serve: Annotated[bool, _Opt("--no-serve", help="Bundle the base install only (fetch, verify, audit; no "
                                   "server, no torch).")] = False,
    wheels: Annotated[Optional[Path], _Opt("--wheels", help="Take the wheels from this folder (your own pip "
                                           "download) instead of downloading them.")] = None,
    gptoss_wheel: Annotated[Optional[Path], _Opt("--gptoss-wheel", help="gptoss's own wheel (default: built from "
                                                 "this checkout, or downloaded).")] = None,
    index_url: Annotated[Optional[str], _Opt("--index-url", help="Package index for pip download (default: pip's "
                                             "own configuration).")] = None,
    find_links: Annotated[Optional[List[str]], _Opt("--find-links", help="Extra folder or URL of wheels for pip "
                                                    "download (repeatable).")] = None,
    kernels: Annotated[Optional[Path], _Opt("--kernels", help="Folder with the MXFP4 kernels (an HF cache holding "
                                            "kernels-community/gpt-oss-triton-kernels).")] = None,
    osv_db: Annotated[Optional[Path], _Opt("--osv-db", help="OSV database snapshot for offline audits (all.zip, a "
                                           "folder of OSV JSON, or one JSON file).")] = None,
) -> None:
    """Bundle DEST (verified first), the wheels, the vocabulary, kernels and OSV data, with a SHA-256 manifest."""
    from gptoss_cli.bundle.create import BundleOptions, create_bundle

    out = output_for(ctx)
    settings = settings_for(ctx, {"fetch.dest": dest})
    options = BundleOptions(out=out_path, dest=Path(settings["fetch.dest"]), vocab=vocab, python_version=python,
                            platforms=tuple(platform or ()), serve=not no_serve, torch=torch, wheels_dir=wheels,
                            gptoss_wheel=gptoss_wheel, find_links=tuple(find_links or ()), index_url=index_url,
                            kernels=kernels, osv_db=osv_db)
    result = create_bundle(options, log=lambda m: out.info(f"gptoss: {m}"))

    def human(console: Console) -> None:
        console.print(f"bundle: {result.path} ({result.format}, {result.files} files, "
                      f"{human_size(result.total_bytes)}, {len(result.wheels)} wheels)")
        console.print(f"manifest sha256: {result.manifest_sha256}")
        console.print(f"install there: gptoss bundle install {result.path} --dest DEST, or sh install.sh --dest "
                      f"DEST --venv VENV inside the unpacked bundle")

    out.result(result, human)


@app.command("install", cls=PlainCommand)
@boundary
def install(
    ctx: typer.Context,
    bundle: Annotated[Path, typer.Argument(help="The bundle folder or tar made by `gptoss bundle create`.")],
    dest: DestOpt = None,
    venv: Annotated[Optional[Path], _Opt("--venv", help="Virtual environment to install into (created when "
                                         "missing; default: the one gptoss runs in).")] = None,
    manifest_sha256: Annotated[Optional[str], _Opt("--manifest-sha256", help="Refuse unless manifest.json has "
                                                   "this SHA-256 (printed by bundle create).")] = None,
    no_pip: Annotated[bool, _Opt("--no-pip", help="Check and import the model only; install no wheels.")] = False,
) -> None:
    """Check every file against the manifest (exit 1 on any change), pip install --no-index, import DEST, verify."""
    from gptoss_cli.bundle.install import install_bundle

    out = output_for(ctx)
    settings = settings_for(ctx, {"fetch.dest": dest})
    result = install_bundle(bundle, Path(settings["fetch.dest"]), venv=venv, skip_pip=no_pip,
                            manifest_sha256=manifest_sha256, log=lambda m: out.info(f"gptoss: {m}"))

    def human(console: Console) -> None:
        console.print(f"installed: {result.files_checked} files matched the manifest; gptoss "
                      f"{result.gptoss_version} in {result.python}; model in {result.dest}, verified")
        if result.extras:
            console.print(f"vocabulary, kernels, OSV data under {result.dest} (TIKTOKEN_ENCODINGS_BASE="
                          f"{result.dest / 'vocab'})")

    out.result(result, human)
