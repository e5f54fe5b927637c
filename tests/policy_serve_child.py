"""Child process for the SIGHUP test: the serving path of ``gptoss serve`` (``runtime.Runtime``, real signal
handlers) over the scripted engine with ``--policy FILE``. Usage: python tests/policy_serve_child.py PORT POLICY"""

from __future__ import annotations

import sys


def main() -> None:
    from gptoss_cli.serve.engines.scripted import ScriptedEngine
    from gptoss_cli.serve.runtime import Runtime, bind
    from gptoss_cli.serve.settings import ServeSettings

    port, policy = int(sys.argv[1]), sys.argv[2]
    engine = ScriptedEngine(["<|channel|>final<|message|>The code word is alpha, then beta.<|return|>"])
    settings = ServeSettings(port=port, current_date="2025-06-01", policy=policy, cache=False)
    sock = bind("127.0.0.1", port)
    Runtime(settings, sock, emit_access_log=lambda line: None).run(engine, on_ready=lambda: print("READY", flush=True))
    print("EXITED CLEANLY", flush=True)


if __name__ == "__main__":
    main()
