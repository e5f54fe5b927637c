"""Child process for the SIGTERM tests: the serving path of ``gptoss serve`` (``runtime.Runtime`` with the one
pipeline, draining uvicorn) over a slow scripted engine, so that requests are surely in flight when the signal comes.
Usage: python tests/load_serve_child.py PORT DELAY DRAIN_TIMEOUT
"""

from __future__ import annotations

import sys


def main() -> None:
    from gptoss_cli.serve.engines.scripted import ScriptedEngine
    from gptoss_cli.serve.runtime import Runtime, bind
    from gptoss_cli.serve.settings import ServeSettings

    port, delay, drain = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    answer = "<|channel|>final<|message|>" + "ok " * 40 + "<|return|>"
    engine = ScriptedEngine([answer], delay=delay)
    settings = ServeSettings(port=port, current_date="2025-06-01", drain_timeout=drain, max_concurrency=4,
                             max_queue=16)
    sock = bind("127.0.0.1", port)
    Runtime(settings, sock).run(engine, on_ready=lambda: print("READY", flush=True))
    print("EXITED CLEANLY", flush=True)


if __name__ == "__main__":
    main()
