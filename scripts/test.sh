#!/usr/bin/env bash
# Set up ./.venv with the serve and dev extras, then run the whole test suite. Extra args go to pytest.
# The suite runs on every core (pytest-xdist, one worker per core, whole files per worker: module fixtures such as
# a loaded model are built once); GPTOSS_TEST_WORKERS=0 runs it in this process only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh serve,dev
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "${GPTOSS_TEST_WORKERS:-auto}" --dist loadfile "$@"
