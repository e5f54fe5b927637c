"""gptoss: a private, verified, monitored gpt-oss endpoint for Dify.

The package is a small core library (config, errors, fetch, verify, audit, serve, dify) with a thin Typer CLI in
``gptoss_cli.cli``. Importing it is cheap: nothing heavy (torch, transformers, fastapi, huggingface_hub, git) is
imported until a command needs it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
