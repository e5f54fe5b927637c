"""Which endpoint may receive which credential: the rule that keeps a cloned repository from redirecting tokens.

The rule (README, "Configuration"): a credential (the Hub token) is sent only to an endpoint named at a *trusted*
level: a command-line flag, the environment, the user's own config file (``$XDG_CONFIG_HOME/gptoss/config.toml``,
``--config FILE`` or ``GPTOSS_CONFIG``), or the built-in default. A *project file* (``./gptoss.toml``, read because
it is in the working directory, so possibly from a repository just cloned) may change endpoints, but such a change
is announced, and the endpoint gets a credential only if that same file supplies the credential too. Wherever the
credential is sent, it still goes to the endpoint's own origin only (``fetch/http.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from gptoss_cli.config import Secret, Settings
from gptoss_cli.redact import mask_url


@dataclass(frozen=True)
class Credential:
    """The credential to send (or None) and the lines to show the user about the decision."""

    token: Optional[Secret]
    source: str  # "flag", "env:HF_TOKEN", "file:PATH", "hf login", or "none"
    notes: tuple[str, ...] = ()


def _where(settings: Settings, key: str) -> str:
    return settings.source(key).removeprefix("file:")


def announce(settings: Settings, keys: tuple[str, ...]) -> tuple[str, ...]:
    """One line for each of ``keys`` (URL settings) that a project file sets."""
    return tuple(f"{key} = {mask_url(str(settings[key]))} comes from the project file {_where(settings, key)}"
                 for key in keys if settings.get(key) is not None and settings.from_project_file(key))


def endpoint_credential(settings: Settings, *, endpoint_key: str, token_key: str,
                        fallback: Optional[Callable[[], Optional[Secret]]] = None) -> Credential:
    """The credential for the endpoint in ``endpoint_key`` under the rule above.

    ``token_key`` is the setting holding the credential; ``fallback`` (e.g. the saved ``hf auth login`` token, a
    user-level credential) is asked only when that setting is empty.
    """
    token, source = settings.get(token_key), settings.source(token_key)
    if token is None and fallback is not None:
        token, source = fallback(), "hf login"
    if token is None:
        return Credential(None, "none")
    if not settings.from_project_file(endpoint_key) or source == settings.source(endpoint_key):
        return Credential(token, source)
    shown = "the saved `hf auth login` token" if source == "hf login" else f"the token from {source}"
    note = (f"not sending {shown} to {mask_url(str(settings[endpoint_key]))}: that endpoint comes from the project "
            f"file {_where(settings, endpoint_key)}, and a project file may not redirect your credentials "
            f"(name the endpoint with a flag, the environment or your own config to trust it)")
    return Credential(None, "withheld", (note,))


__all__ = ["Credential", "announce", "endpoint_credential"]
