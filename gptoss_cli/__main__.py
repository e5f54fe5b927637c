"""``python -m gptoss_cli``: same as the ``gptoss`` console script."""

from gptoss_cli.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised by a subprocess test
    main()
