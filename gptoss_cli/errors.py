"""One exception tree for the whole tool; each class carries the exit code the CLI uses for it.

    GptossError                      exit 3 unless a subclass says otherwise
    ├── UsageError                   exit 2  bad flags, bad values, conflicting options
    │   └── ConfigError              exit 2  malformed config file or invalid config value
    ├── CheckFailed                  exit 1  the check ran and found problems (verify mismatch, audit vulns)
    └── CouldNotRun                  exit 3  the tool could not do its job
        ├── NetworkError             exit 3  endpoint/mirror/service unreachable or failing
        ├── IntegrityError           exit 3  downloaded bytes do not match the expected hash / lock
        ├── GitError                 exit 3  clone/fetch/checkout failed
        ├── DiskSpaceError           exit 3  not enough free space (needed vs free in the message)
        └── RemoteServiceError       exit 3  a remote API answered with an error (Dify, OSV, ...)
    Interrupted                      exit 130  Ctrl-C / SIGINT

Messages are one line, say what failed and what to do next, and never contain secrets.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_COULD_NOT_RUN = 3
EXIT_INTERRUPTED = 130


class GptossError(Exception):
    """Base of every error the tool raises on purpose."""

    exit_code: int = EXIT_COULD_NOT_RUN

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message (plus hint) flattened to one line for stderr."""
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return " ".join(text.split())


class UsageError(GptossError):
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A config file or config value is malformed; the message names the file and key."""


class CheckFailed(GptossError):
    """The check ran to the end and found problems; the result object carries the details."""

    exit_code = EXIT_PROBLEMS


class CouldNotRun(GptossError):
    exit_code = EXIT_COULD_NOT_RUN


class NetworkError(CouldNotRun):
    pass


class IntegrityError(CouldNotRun):
    pass


class GitError(CouldNotRun):
    pass


class DiskSpaceError(CouldNotRun):
    def __init__(self, path: str, needed: int, free: int) -> None:
        super().__init__(
            f"not enough free disk at {path}: need {needed} bytes, {free} free",
            hint="free some space or choose another --dest",
        )
        self.needed = needed
        self.free = free


class RemoteServiceError(CouldNotRun):
    pass


class Interrupted(GptossError):
    exit_code = EXIT_INTERRUPTED


__all__ = [
    "EXIT_COULD_NOT_RUN",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PROBLEMS",
    "EXIT_USAGE",
    "CheckFailed",
    "ConfigError",
    "CouldNotRun",
    "DiskSpaceError",
    "GitError",
    "GptossError",
    "IntegrityError",
    "Interrupted",
    "NetworkError",
    "RemoteServiceError",
    "UsageError",
]
