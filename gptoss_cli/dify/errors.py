"""Errors of ``dify-register``; all are ``CouldNotRun`` (exit 3) except bad input (exit 2).

    RemoteServiceError
    └── DifyError                      Dify answered with an error we could not act on
        ├── DifyLoginError             wrong password, locked account, no workspace (never retried)
        ├── DifyPermissionError        the account is not admin/owner of the workspace
        ├── DifySessionError           session cookies / CSRF token not accepted
        ├── PluginMissingError         openai_api_compatible plugin not installed (message says how)
        └── CredentialsRejectedError   Dify's live check of the endpoint failed (Dify's reason + what to do)
    NetworkError
    └── DifyUnreachableError           connect errors / 5xx after bounded retries
    CouldNotRun
    └── EndpointCheckFailed            preflight: the endpoint fails the check Dify will run
"""

from __future__ import annotations

from gptoss_cli.errors import CouldNotRun, NetworkError, RemoteServiceError


class DifyError(RemoteServiceError):
    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.code = code


class DifyLoginError(DifyError):
    pass


class DifyPermissionError(DifyError):
    pass


class DifySessionError(DifyError):
    pass


class PluginMissingError(DifyError):
    pass


class CredentialsRejectedError(DifyError):
    pass


class DifyUnreachableError(NetworkError):
    pass


class EndpointCheckFailed(CouldNotRun):
    pass


__all__ = [
    "CredentialsRejectedError",
    "DifyError",
    "DifyLoginError",
    "DifyPermissionError",
    "DifySessionError",
    "DifyUnreachableError",
    "EndpointCheckFailed",
    "PluginMissingError",
]
