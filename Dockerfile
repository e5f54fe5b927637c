# gptoss: an OpenAI-compatible gpt-oss server for Dify, in one image.
#
#   docker build -t gptoss .                                   # CUDA torch from PyPI (GPU hosts, the default)
#   docker build -t gptoss:cpu \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .    # CPU-only torch (demo, tests)
#   docker build --build-arg PIP_INDEX_URL=https://<your PyPI mirror>/simple .   # behind a mirror
#
# Weights are NOT in the image: run `gptoss fetch` on the host and mount its destination folder read-only at
# /models (the model is /models/model, its lock file /models/gptoss.lock.json). The API key comes from the
# environment (GPTOSS_API_KEY), never from the image. See compose.yaml and docs/deploy-with-dify.md.
# TIKTOKEN_ENCODINGS_BASE points at the o200k_base.tiktoken shipped in the package, so vLLM's harmony tokenizer
# (and tiktoken) never download it.
# CI lints this file (hadolint), and scripts/image_test.sh builds it with buildah (CPU torch, no Docker) and runs it
# against the demo model; the CUDA build is not made in CI.
#
# BASE_IMAGE: any Debian/Ubuntu-like image with python3 (>= 3.11) and its venv module, e.g. a local base made from
# Debian packages where no registry is reachable (scripts/image_test.sh makes one with debootstrap).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE}

# torch is pinned and installed on its own: an unpinned torch would pull whatever CUDA build is newest.
# TORCH_INDEX_URL picks the build: unset = pip's index (PyPI's Linux x86_64 wheel is the CUDA build),
# https://download.pytorch.org/whl/cpu = CPU only, https://download.pytorch.org/whl/cu128 = a given CUDA version.
# PIP_INDEX_URL (unset = pip's default index; pip reads it itself) is used for everything else.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL
ARG PIP_INDEX_URL
# PIP_FIND_LINKS: a folder of wheels mounted into the build (buildah bud -v /opt/wheels:/opt/wheels:ro), e.g. a
# local torch build; unset = none. PIP_CERT: a CA bundle mounted into the build, for a TLS-inspecting proxy.
ARG PIP_FIND_LINKS
ARG PIP_CERT

# DL3064 reads "TOKEN" in TIKTOKEN_ENCODINGS_BASE as a secret; it is a folder name.
# hadolint ignore=DL3064
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    GPTOSS_HOME=/var/lib/gptoss \
    HF_HOME=/var/lib/gptoss/hf \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TIKTOKEN_ENCODINGS_BASE=/opt/venv/lib/python3.11/site-packages/gptoss_cli/vocab

RUN groupadd --system --gid 10001 gptoss \
    && useradd --system --uid 10001 --gid gptoss --home-dir /var/lib/gptoss --create-home \
       --shell /usr/sbin/nologin gptoss

WORKDIR /opt/gptoss

# A virtual environment: the same on python:*-slim and on a Debian base (whose system Python refuses pip, PEP 668).
RUN python3 -m venv /opt/venv

RUN if [ -z "${PIP_FIND_LINKS:-}" ]; then unset PIP_FIND_LINKS; fi \
    && if [ -z "${PIP_CERT:-}" ]; then unset PIP_CERT; fi \
    && if [ -n "${TORCH_INDEX_URL:-}" ]; then export PIP_INDEX_URL="$TORCH_INDEX_URL"; \
    elif [ -z "${PIP_INDEX_URL:-}" ]; then unset PIP_INDEX_URL; fi \
    && pip install --no-cache-dir "torch==${TORCH_VERSION}"

COPY pyproject.toml README.md LICENSE ./
COPY gptoss_cli ./gptoss_cli
# The package is installed from this folder; its dependencies carry version bounds in pyproject.toml.
# hadolint ignore=DL3013
RUN if [ -z "${PIP_INDEX_URL:-}" ]; then unset PIP_INDEX_URL; fi \
    && if [ -z "${PIP_FIND_LINKS:-}" ]; then unset PIP_FIND_LINKS; fi \
    && if [ -z "${PIP_CERT:-}" ]; then unset PIP_CERT; fi \
    && pip install --no-cache-dir ".[serve]" \
    && gptoss --version \
    && python -I -c "from gptoss_cli.vocab import encodings_base as e; import os; assert str(e()) == os.environ['TIKTOKEN_ENCODINGS_BASE'], e()"

USER 10001:10001
EXPOSE 8000

# /ready answers 200 only once the model is loaded (503 while loading): give a 20b model time to load.
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]

ENTRYPOINT ["gptoss"]
CMD ["serve", "/models/model", "--host", "0.0.0.0", "--port", "8000"]
