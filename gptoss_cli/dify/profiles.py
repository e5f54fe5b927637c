"""Dify console protocol profiles, as data: one row per range of Dify versions (see reference/dify-api.md §0).

``profile_for("1.13.3")`` picks the last row whose ``since`` is <= the version. Code elsewhere asks the profile
("does this version use cookies?") instead of comparing version numbers itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from gptoss_cli.errors import UsageError

PLUGIN_ID = "langgenius/openai_api_compatible"
PROVIDER_FULL = "langgenius/openai_api_compatible/openai_api_compatible"
PROVIDER_BUILTIN = "openai_api_compatible"


@dataclass(frozen=True)
class Profile:
    """How one range of Dify versions speaks.

    ``model_api``: ``"upsert"`` (``POST …/models`` with credentials, 0.15 and 1.0–1.7) or ``"credentials"``
    (``…/models/credentials`` POST/PUT/DELETE, 1.8+). ``session``: ``"bearer"`` (JSON tokens) or ``"cookie"``
    (cookie jar + ``X-CSRF-Token``, 1.9.2+). ``password_encodings``: tried in order, one attempt each; only the
    1.11.0/1.11.1 row has two. ``admin_key``: whether ADMIN_API_KEY + X-WORKSPACE-ID can reach the console.
    ``workspace_method``: how ``/workspaces/current`` (the account's role) is read; the other method is tried on 405.
    """

    name: str
    since: str
    provider: str
    plugin_id: str | None
    model_api: str
    session: str
    password_encodings: tuple[str, ...]
    admin_key: bool
    logout_method: str
    workspace_method: str = "POST"  # /workspaces/current (the role check): GET only in 0.15, POST in 1.x

    @property
    def uses_plugins(self) -> bool:
        return self.plugin_id is not None


PROFILES: tuple[Profile, ...] = (
    Profile("0.15", "0.0", PROVIDER_BUILTIN, None, "upsert", "bearer", ("plain",), True, "GET", "GET"),
    Profile("1.0-1.7", "1.0.0", PROVIDER_FULL, PLUGIN_ID, "upsert", "bearer", ("plain",), True, "GET"),
    Profile("1.8-1.9.1", "1.8.0", PROVIDER_FULL, PLUGIN_ID, "credentials", "bearer", ("plain",), True, "GET"),
    Profile("1.9.2-1.10", "1.9.2", PROVIDER_FULL, PLUGIN_ID, "credentials", "cookie", ("plain",), False, "POST"),
    Profile("1.11.0-1.11.1", "1.11.0", PROVIDER_FULL, PLUGIN_ID, "credentials", "cookie", ("base64", "plain"),
            True, "POST"),
    Profile("1.11.2+", "1.11.2", PROVIDER_FULL, PLUGIN_ID, "credentials", "cookie", ("base64",), True, "POST"),
)


def parse_version(text: str) -> Version:
    """Parse a Dify version string (``1.13.3``, ``v1.9.2``, ``2.0.0-beta.2``); bad input is a UsageError."""
    cleaned = text.strip().lstrip("vV")
    try:
        return Version(cleaned)
    except InvalidVersion:
        leading = re.match(r"\d+(\.\d+){1,2}", cleaned)  # "1.11.1-fix.1" → 1.11.1
        if leading:
            return Version(leading.group(0))
        raise UsageError(f"cannot read Dify version {text!r}", hint="pass --dify-version X.Y.Z") from None


def profile_for(version: str) -> Profile:
    """The protocol profile for a Dify version string."""
    v = parse_version(version)
    chosen = PROFILES[0]
    for profile in PROFILES:
        # a pre-release of X (2.0.0b2) speaks like X itself, so compare release numbers only
        if Version(".".join(str(p) for p in v.release)) >= Version(profile.since):
            chosen = profile
    return chosen


__all__ = ["PLUGIN_ID", "PROFILES", "PROVIDER_BUILTIN", "PROVIDER_FULL", "Profile", "parse_version", "profile_for"]
