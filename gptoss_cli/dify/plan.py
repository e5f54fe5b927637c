"""The HTTP plan: every request ``dify-register`` sends (or, under ``--dry-run``, would send), secrets masked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

MASK = "********"
SECRET_KEYS = frozenset({"password", "api_key", "access_token", "refresh_token", "token"})


@dataclass(frozen=True)
class PlanStep:
    """One request: ``sent`` is False for a state-changing request skipped by ``--dry-run``."""

    method: str
    path: str
    body: Any
    sent: bool
    changes_state: bool
    status: int | None = None

    def line(self) -> str:
        """``POST /console/api/… {"model": …}`` plus a marker for what was not sent."""
        text = f"{self.method} {self.path}"
        if self.body is not None:
            text += " " + json.dumps(self.body, sort_keys=True, ensure_ascii=False)
        if not self.sent:
            text += "  [not sent: dry run]"
        elif self.status is not None:
            text += f"  -> {self.status}"
        return text


def mask_body(body: Any, secrets: Iterable[str] = ()) -> Any:
    """A copy of a JSON body with secret fields (and any known secret value) replaced by ``********``."""
    known = [s for s in secrets if s]
    return _mask(body, known)


def _mask(value: Any, known: list[str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in SECRET_KEYS and isinstance(v, str) and v and v != "[__HIDDEN__]":
                out[k] = MASK
            else:
                out[k] = _mask(v, known)
        return out
    if isinstance(value, list):
        return [_mask(v, known) for v in value]
    if isinstance(value, str):
        return scrub(value, known)
    return value


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a known secret value in ``text`` with ``********``."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


__all__ = ["MASK", "PlanStep", "mask_body", "scrub"]
