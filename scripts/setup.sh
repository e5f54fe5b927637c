#!/usr/bin/env bash
# Create ./.venv (Python >= 3.11) and install gptoss from this checkout with the given extras.
#   scripts/setup.sh serve        -> runtime + serving
#   scripts/setup.sh serve,dev    -> everything the test suite needs
# torch is pinned and installed first: an unpinned torch would pull a multi-GB CUDA build. GPTOSS_TORCH_INDEX_URL picks
# where it comes from (e.g. https://download.pytorch.org/whl/cpu for the CPU-only build; unset: pip's own index).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-serve}"
TORCH_VERSION="${GPTOSS_TORCH_VERSION:-2.13.0}"

pick_python() {
  for py in "${PYTHON:-}" python3.11 python3.12 python3.13 python3 python; do
    [ -n "$py" ] || continue
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
      echo "$py"; return 0
    fi
  done
  echo "gptoss: error: need Python >= 3.11 (the serve extra's transformers needs it)" >&2; return 1
}

if [ ! -x .venv/bin/python ]; then
  py="$(pick_python)"
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  .venv/bin/python -m pip install --quiet "torch==$TORCH_VERSION" \
    ${GPTOSS_TORCH_INDEX_URL:+--index-url "$GPTOSS_TORCH_INDEX_URL"}
fi
.venv/bin/python -m pip install --quiet -e ".[$extras]"
