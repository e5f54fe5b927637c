"""``PolicyHolder``: the policy in force, swapped whole on reload (SIGHUP). A request reads ``current`` once and
keeps that policy to its end; a reload that fails keeps the old policy and says why."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gptoss_cli.serve.policy.load import PolicyError, load_policy
from gptoss_cli.serve.policy.model import Policy

log = logging.getLogger("gptoss.serve")


@dataclass(frozen=True)
class Reload:
    ok: bool
    message: str


class PolicyHolder:
    def __init__(self, path: str | Path, policy: Policy | None = None,
                 on_reload: Callable[[bool], None] | None = None) -> None:
        self.path = str(path)
        self.current: Policy = policy if policy is not None else load_policy(path)
        self.on_reload = on_reload
        self._lock = threading.Lock()

    def reload(self) -> Reload:
        """Read the file again; install it only when all of it is valid."""
        with self._lock:
            try:
                policy = load_policy(self.path)
            except PolicyError as exc:
                result = Reload(False, f"policy reload failed, keeping the policy in force: {self.path}: {exc}")
                log.warning("%s", result.message)
            else:
                self.current = policy  # one assignment: a request sees the old policy or the new, never a mix
                result = Reload(True, f"policy reloaded from {self.path}: {policy.describe()}")
                log.warning("%s", result.message)
        if self.on_reload is not None:
            self.on_reload(result.ok)
        return result


class KeyPolicies:
    """The policy files named by API keys (``gptoss keys add --policy FILE``): one ``PolicyHolder`` per file, loaded
    on the first request of such a key and reloaded with the server's own policy on SIGHUP."""

    def __init__(self, on_reload: Callable[[bool], None] | None = None) -> None:
        self.on_reload = on_reload
        self._holders: dict[str, PolicyHolder] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> PolicyHolder:
        """The holder for ``path`` (raises ``PolicyError`` when the file is not a usable policy)."""
        holder = self._holders.get(path)
        if holder is None:
            with self._lock:
                holder = self._holders.get(path)
                if holder is None:
                    holder = self._holders[path] = PolicyHolder(path, on_reload=self.on_reload)
        return holder

    def reload(self) -> list[Reload]:
        return [holder.reload() for holder in list(self._holders.values())]


__all__ = ["KeyPolicies", "PolicyHolder", "Reload"]
