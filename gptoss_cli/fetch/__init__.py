"""``gptoss fetch``: the gpt-oss code (git) and weights (Hub, mirror, ModelScope or an offline copy) plus a lock.

Modules, by concept:

    run.py         fetch(): the end-to-end flow (re-exports the types below)
    types.py       FetchOptions / Hooks / FetchResult and the other option/result dataclasses
    lockwrite.py   the shared end of a run: merge with DEST's existing lock, write it, return the result
    git.py         shallow, pinned GitPython checkout; per-process mirror (insteadOf via GIT_CONFIG_*)
    ssh.py         SSH remotes: URL forms, GIT_SSH_COMMAND (BatchMode, --ssh-key), one-line SSH errors
    hub.py         Hugging Face metadata through huggingface_hub.HfApi(endpoint=...)
    modelscope.py  ModelScope metadata through a small httpx client
    plan.py        file selection + expected hashes (lock or endpoint) + free-disk check
    select.py      include/exclude globs, path safety, pickle refusal
    download.py    resumable, hash-while-streaming, parallel downloads (.part files + HTTP Range)
    http.py        httpx client; redirects by hand so the token never leaves the endpoint's origin
    offline.py     --from-dir: import a copy by hard link or copy, checked against a lock
    remote.py      RemoteSnapshot / RemoteFile: what an endpoint lists

Nothing heavy is imported here: huggingface_hub and GitPython load inside the functions that use them.
"""

from gptoss_cli.fetch.run import (CodeSpec, FetchOptions, FetchResult, Hooks, ModelResult, WeightsSpec,
                                  apply_lock_defaults, fetch)

__all__ = ["CodeSpec", "FetchOptions", "FetchResult", "Hooks", "ModelResult", "WeightsSpec", "apply_lock_defaults",
           "fetch"]
