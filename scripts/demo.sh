#!/usr/bin/env bash
# Set up ./.venv, start `gptoss serve --demo` (the embedded tiny gpt-oss model: no downloads), ask it one question
# through the OpenAI-compatible API, print the answer, and keep serving on http://127.0.0.1:${PORT:-8000}/v1
# until Ctrl-C.  `scripts/demo.sh --once` stops the server after the answer.
set -euo pipefail
cd "$(dirname "$0")/.."
PORT="${PORT:-8000}"
bash scripts/setup.sh serve
.venv/bin/gptoss doctor >&2 || true
.venv/bin/gptoss serve --demo --port "$PORT" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null' EXIT INT TERM
.venv/bin/python - "$PORT" <<'PY'
import json, sys, time, urllib.request, urllib.error
base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.monotonic() + 600
while True:
    try:
        urllib.request.urlopen(base + "/ready", timeout=5).read()
        break
    except (urllib.error.URLError, OSError):
        if time.monotonic() > deadline:
            sys.exit("demo: server did not become ready in 600 s")
        time.sleep(1)
body = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 128, "temperature": 0}
print("$ curl " + base + "/v1/chat/completions -H 'Content-Type: application/json' -d '" + json.dumps(body) + "'")
req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
reply = json.load(urllib.request.urlopen(req, timeout=120))
msg = reply["choices"][0]["message"]
print("reasoning:", msg.get("reasoning_content"))
print("answer:   ", msg.get("content"))
print("finish:   ", reply["choices"][0]["finish_reason"], "| usage:", reply["usage"])
PY
if [ "${1:-}" = "--once" ]; then exit 0; fi
echo "demo: serving on http://127.0.0.1:$PORT/v1 (Ctrl-C to stop)" >&2
wait $server
