"""Register a gptoss endpoint in Dify through its console API (``gptoss dify-register``).

``register(DifyClient(httpx.Client(), url), RegisterOptions(...)) -> RegisterResult``. Version differences live in
``profiles.PROFILES`` (data), the HTTP conversation in ``client``, the composed console calls in ``console``, the
credential form in ``credentials``, the endpoint check in ``preflight`` and the masked request log in ``plan``.
Imports only httpx and packaging.
"""

from gptoss_cli.dify.client import DifyClient, normalize_dify_url
from gptoss_cli.dify.errors import (
    CredentialsRejectedError,
    DifyError,
    DifyLoginError,
    DifyPermissionError,
    DifySessionError,
    DifyUnreachableError,
    EndpointCheckFailed,
    PluginMissingError,
)
from gptoss_cli.dify.plan import PlanStep
from gptoss_cli.dify.preflight import PreflightResult, preflight
from gptoss_cli.dify.profiles import PROFILES, Profile, profile_for
from gptoss_cli.dify.register import RegisterOptions, RegisterResult, register

__all__ = [
    "PROFILES",
    "CredentialsRejectedError",
    "DifyClient",
    "DifyError",
    "DifyLoginError",
    "DifyPermissionError",
    "DifySessionError",
    "DifyUnreachableError",
    "EndpointCheckFailed",
    "PlanStep",
    "PluginMissingError",
    "PreflightResult",
    "Profile",
    "RegisterOptions",
    "RegisterResult",
    "normalize_dify_url",
    "preflight",
    "profile_for",
    "register",
]
