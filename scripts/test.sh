#!/usr/bin/env bash
# Set up ./.venv with the serve and dev extras, then run the whole test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve,dev
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
