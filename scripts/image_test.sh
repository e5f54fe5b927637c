#!/usr/bin/env bash
# Build the project's Dockerfile with buildah (CPU torch) and run the image's command against the demo model:
# checks /ready, a chat completion with the API key, the non-root user and the read-only weights mount.
#
#   bash scripts/image_test.sh                  # base made here from Debian packages (debootstrap bookworm)
#   GPTOSS_BASE_IMAGE=python:3.11-slim-bookworm bash scripts/image_test.sh   # where a registry is reachable
#
# Needs root, buildah and (without GPTOSS_BASE_IMAGE) debootstrap: Debian packages. Exits 0 after the checks, 77
# with "skip: <reason>" on stderr when buildah cannot run here, 1 when a check fails. Docker is not needed:
# `buildah bud` builds and `buildah run --isolation chroot` runs (host network, so the server is on 127.0.0.1).
# The CPU torch comes from GPTOSS_WHEELS (a folder of wheels mounted into the build; default /opt/wheels, where
# this machine keeps torch-2.13.0+cpu) — never an unpinned torch; everything else from pip's index as configured.
set -euo pipefail
cd "$(dirname "$0")/.."
skip() { echo "skip: $*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (buildah with chroot isolation)"
command -v buildah >/dev/null || skip "buildah not installed (apt-get install buildah)"

work="${GPTOSS_IMAGE_WORK:-$(mktemp -d /tmp/gptoss-image.XXXXXX)}"
mkdir -p "$work"
tag="localhost/gptoss:image-test"
base="${GPTOSS_BASE_IMAGE:-}"
wheels="${GPTOSS_WHEELS:-/opt/wheels}"
port="${GPTOSS_IMAGE_PORT:-18431}"
key="image-test-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
ctr=""
cleanup() {
  [ -n "$ctr" ] && buildah rm "$ctr" >/dev/null 2>&1 || true
  [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
}
trap cleanup EXIT
export BUILDAH_ISOLATION=chroot STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}"

if [ -z "$base" ]; then
  base="localhost/gptoss-base:bookworm"
  if ! buildah inspect --type image "$base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || skip "debootstrap not installed (apt-get install debootstrap)"
    echo "image: debootstrap bookworm (python3, python3-venv) into $work/rootfs" >&2
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$work/rootfs" \
      "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$work/debootstrap.log" 2>&1 \
      || { tail -5 "$work/debootstrap.log" >&2; skip "debootstrap failed (no Debian mirror?)"; }
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
    b=$(buildah from scratch)
    buildah add "$b" "$work/rootfs.tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$b"
    buildah commit --rm "$b" "$base" >/dev/null
    rm -rf "$work/rootfs" "$work/rootfs.tar"
  fi
fi

probe="$work/probe"  # the build installs from the package index: without one there is nothing to test
PIP_CERT="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}" timeout 120 python3 -m pip download --quiet --no-deps \
  --only-binary=:all: -d "$probe" fastapi >/dev/null 2>&1 || skip "the package index is not reachable (the build needs it)"
rm -rf "$probe"
echo "image: buildah bud (BASE_IMAGE=$base, torch from $wheels)" >&2
mounts=()
[ -d "$wheels" ] && mounts=(-v "$wheels:/wheels:ro" --build-arg PIP_FIND_LINKS=/wheels)
ca="${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}"  # this host's CA bundle (a TLS-inspecting proxy's CA too)
[ -f "$ca" ] && mounts+=(-v "$ca:/host-ca.crt:ro" --build-arg PIP_CERT=/host-ca.crt)
buildah bud --isolation chroot --layers=false -f Dockerfile -t "$tag" --build-arg BASE_IMAGE="$base" \
  "${mounts[@]}" ${PIP_INDEX_URL:+--build-arg PIP_INDEX_URL="$PIP_INDEX_URL"} . >"$work/build.log" 2>&1 \
  || { tail -20 "$work/build.log" >&2; echo "image: FAIL: the build failed (log: $work/build.log)" >&2; exit 1; }

# The image's command (ENTRYPOINT + CMD), on our port: the demo model's DEST mounted read-only at /models.
read -r -a cmd < <(buildah inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}{{range .OCIv1.Config.Cmd}}{{.}} {{end}}' "$tag"; echo)
cmd=("${cmd[@]/8000/$port}")
ctr=$(buildah from "$tag")
buildah config --env GPTOSS_API_KEY="$key" "$ctr"
fail() { echo "image: FAIL: $*" >&2; exit 1; }
uid=$(buildah run --isolation chroot "$ctr" -- id -u)
[ "$uid" != 0 ] || fail "the image runs as root"
echo "image: runs as uid $uid; command: ${cmd[*]}" >&2
buildah run --isolation chroot -v "$PWD/gptoss_cli/demo:/models:ro" "$ctr" -- sh -c 'touch /models/x' 2>/dev/null \
  && fail "the weights mount is writable"
buildah run --isolation chroot -v "$PWD/gptoss_cli/demo:/models:ro" "$ctr" -- "${cmd[@]}" >"$work/serve.log" 2>&1 &
server=$!
python3 - "$port" "$key" <<'EOF' || { tail -20 "$work/serve.log" >&2; fail "the server did not answer"; }
import json, sys, time, urllib.error, urllib.request
port, key = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 300
while True:
    try:
        with urllib.request.urlopen(base + "/ready", timeout=5) as r:
            if r.status == 200:
                break
    except (urllib.error.URLError, OSError):
        pass
    if time.monotonic() > deadline:
        sys.exit("no 200 from /ready within 300 s")
    time.sleep(2)
body = json.dumps({"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hello"}],
                   "max_tokens": 16}).encode()
req = urllib.request.Request(base + "/v1/chat/completions", body, {"Content-Type": "application/json",
                                                                     "Authorization": f"Bearer {key}"})
with urllib.request.urlopen(req, timeout=120) as r:
    doc = json.load(r)
assert doc["object"] == "chat.completion" and doc["choices"], doc
try:
    urllib.request.urlopen(urllib.request.Request(base + "/v1/chat/completions", body,
                                                  {"Content-Type": "application/json"}), timeout=30)
    sys.exit("a request without the key was answered")
except urllib.error.HTTPError as exc:
    assert exc.code == 401, exc.code
print("image: /ready 200, chat completion", json.dumps(doc["choices"][0]["message"])[:120], file=sys.stderr)
EOF
echo "image: ok ($tag: non-root uid $uid, read-only /models, /ready, chat completion, 401 without the key)" >&2
[ -n "${GPTOSS_IMAGE_WORK:-}" ] || rm -rf "$work"  # logs are kept only when the run failed or you named the folder
