"""The gpt-oss code: a shallow, pinned git checkout in ``DEST/code`` through GitPython.

* Branch or tag: ``clone --depth 1 --branch REF --single-branch``. Commit: ``init`` + ``fetch <sha> --depth 1``
  (falls back to a full fetch when a server refuses fetch-by-sha), then HEAD is checked to equal the pin.
* A GitHub mirror is applied per process: ``url.<mirror>.insteadOf=https://github.com/`` through the
  ``GIT_CONFIG_COUNT``/``GIT_CONFIG_KEY_0``/``GIT_CONFIG_VALUE_0`` environment, never the user's git config.
  ``origin`` keeps the GitHub URL, and the commit pin is what proves the mirror served the right code.
* ``GIT_TERMINAL_PROMPT=0``: a private or missing repo fails instead of waiting for a password.
* SSH URLs (``ssh://``, ``git@host:org/repo``) get a ``GIT_SSH_COMMAND`` built by ``fetch/ssh.py``: the user's
  own ssh command plus ``-o BatchMode=yes`` (and ``-i KEY -o IdentitiesOnly=yes`` for ``--ssh-key``).
* A fresh clone goes to a temp folder next to ``DEST/code`` and is renamed into place only when complete.
"""

from __future__ import annotations

import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from gptoss_cli.errors import GitError, UsageError
from gptoss_cli.fetch.ssh import check_key, check_url, is_ssh_url, ssh_command, ssh_failure, user_ssh_command
from gptoss_cli.lockfile import GIT_COMMIT, scrub_userinfo
from gptoss_cli.redact import public_git_url

GITHUB = "https://github.com/"
_SHORT_SHA = re.compile(r"^[0-9a-f]{7,39}$")

GitProgressFn = Callable[[str, int, Optional[int]], None]
"""``progress(stage, current, maximum_or_None)`` with stage e.g. ``receiving``, ``resolving``, ``checking out``."""


@dataclass(frozen=True)
class SshOptions:
    """How git reaches an SSH remote: the user's ``GIT_SSH_COMMAND`` / ``GIT_SSH`` (from config.py) and a key."""

    key: Optional[Path] = None
    command: Optional[str] = None  # GIT_SSH_COMMAND
    program: Optional[str] = None  # GIT_SSH


@dataclass(frozen=True)
class CodeResult:
    url: str  # public (no credentials)
    ref: Optional[str]
    commit: str
    path: Path
    action: str  # cloned | updated | present
    mirror: Optional[str] = None


def is_full_sha(ref: Optional[str]) -> bool:
    return bool(ref and GIT_COMMIT.match(ref))


def mirror_base(mirror: str) -> str:
    return mirror if mirror.endswith("/") else mirror + "/"


def git_env(mirror: Optional[str] = None) -> dict[str, str]:
    """Environment for every git call: no prompts, and the mirror as a per-process insteadOf rule."""
    env = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"}
    if mirror:
        env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{mirror_base(mirror)}.insteadOf",
                    "GIT_CONFIG_VALUE_0": GITHUB})
    return env


def _configured_ssh_command(git: Any) -> Optional[str]:
    """``core.sshCommand`` from the user's and system git config (no repository's), or None."""
    try:
        out = git.Git().execute(["git", "config", "--get", "core.sshCommand"], env={"GIT_DIR": "/nonexistent"})
    except git.exc.GitError:
        return None  # unset (exit 1)
    return str(out).strip() or None


def ssh_env(git: Any, url: str, ssh: Optional[SshOptions]) -> dict[str, str]:
    """``GIT_SSH_COMMAND`` for git: the user's ssh command + BatchMode (+ the key).

    Set for every URL (a user's ``insteadOf`` may turn an https URL into SSH), but only an SSH ``url`` fails on a
    bad key or an ssh command gptoss cannot extend; for other URLs those leave git's ssh setup alone.
    """
    ssh = ssh or SshOptions()
    if is_ssh_url(url):
        check_url(url)
    try:
        key = check_key(ssh.key)
        configured = None if (ssh.command or ssh.program) else _configured_ssh_command(git)
        return {"GIT_SSH_COMMAND": ssh_command(user_ssh_command(ssh.command, ssh.program, configured), key)}
    except UsageError:
        if is_ssh_url(url):
            raise
        return {}


def mirrored_url(url: str, mirror: Optional[str]) -> str:
    """What git will really contact (for messages and --dry-run)."""
    if mirror and url.startswith(GITHUB):
        return mirror_base(mirror) + url[len(GITHUB):]
    return url


def _git_error(exc: BaseException, action: str, url: str, prog: Any = None, key: Optional[Path] = None) -> GitError:
    seen = list(getattr(prog, "error_lines", None) or [])  # with a progress handler, git's stderr lands here
    raw = scrub_userinfo("\n".join(seen) or str(getattr(exc, "stderr", "") or exc))
    lines = [ln.strip().strip("'").removeprefix("stderr: ").strip("'") for ln in raw.splitlines()]
    lines = [ln for ln in lines if ln]
    if is_ssh_url(url):  # ssh's own lines (not "fatal:") land in other_lines
        others = [scrub_userinfo(ln) for ln in getattr(prog, "other_lines", None) or []]
        found = ssh_failure([*others, *lines], action, url, key)
        if found is not None:
            return found
    detail = next((ln for ln in lines if ln.startswith("fatal:")), lines[-1] if lines else type(exc).__name__)
    return GitError(f"git {action} of {public_git_url(url)} failed: {detail}",
                    hint="check --repo-url, --ref, --git-mirror and your network")


def _import_git() -> Any:
    try:
        import git
    except ImportError as exc:  # GitPython refuses to import without a git binary
        raise GitError(f"git is not usable: {str(exc).splitlines()[0]}",
                       hint="install git, or pass --no-code") from None
    return git


def _progress_adapter(progress: Optional[GitProgressFn]) -> Any:
    """A RemoteProgress forwarding to ``progress`` (if any); it also keeps git's error lines for messages."""
    git = _import_git()
    base = git.RemoteProgress
    stages = {base.COUNTING: "counting", base.COMPRESSING: "compressing", base.RECEIVING: "receiving",
              base.RESOLVING: "resolving", base.WRITING: "writing", base.FINDING_SOURCES: "finding sources",
              base.CHECKING_OUT: "checking out"}

    class _Adapter(base):  # type: ignore[misc, valid-type]
        def update(self, op_code: int, cur_count: Any, max_count: Any = None, message: str = "") -> None:
            if progress is not None:
                stage = stages.get(op_code & base.OP_MASK, "working")
                progress(stage, int(cur_count or 0), int(max_count) if max_count else None)

    return _Adapter()


def fetch_code(
    url: str,
    code_dir: Path,
    *,
    ref: Optional[str] = None,
    mirror: Optional[str] = None,
    progress: Optional[GitProgressFn] = None,
    ssh: Optional[SshOptions] = None,
) -> CodeResult:
    """Clone (or update) ``url`` at ``ref`` into ``code_dir``; a full-SHA ``ref`` is verified against HEAD."""
    git = _import_git()
    code_dir = Path(code_dir)
    env = {**git_env(mirror), **ssh_env(git, url, ssh)}
    key = ssh.key if ssh else None
    if code_dir.exists():
        return _update(git, url, code_dir, ref, env, mirror, key)
    code_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = code_dir.parent / f".{code_dir.name}-{secrets.token_hex(6)}"
    tmp.mkdir()  # not mkdtemp: its 0700 would stay on code/ after the rename; this follows the umask
    prog = _progress_adapter(progress)
    try:
        try:
            if is_full_sha(ref):
                repo = _clone_commit(git, url, tmp, ref or "", env, prog)
            else:
                repo = _clone_ref(git, url, tmp, ref, env, prog)
            commit = repo.head.commit.hexsha
            repo.close()
        except git.exc.GitError as exc:
            raise _git_error(exc, "clone", url, prog, key) from None
        except ValueError as exc:  # GitPython: unknown object
            raise GitError(f"git clone of {public_git_url(url)} failed: {exc}") from None
        _check_pin(ref, commit, url)
        tmp.rename(code_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return CodeResult(public_git_url(url), ref, commit, code_dir, "cloned", mirror)


def _clone_ref(git: Any, url: str, tmp: Path, ref: Optional[str], env: dict, prog: Any) -> Any:
    kwargs: dict[str, Any] = {"depth": 1, "single_branch": True}
    if ref:
        kwargs["branch"] = ref
    try:
        return git.Repo.clone_from(url, str(tmp), progress=prog, env=env, **kwargs)
    except git.exc.GitCommandError:
        if not (ref and _SHORT_SHA.match(ref)):
            raise
    # an abbreviated commit: only a full clone can resolve it
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    repo = git.Repo.clone_from(url, str(tmp), progress=prog, env=env, no_checkout=True)
    with repo.git.custom_environment(**env):
        repo.git.checkout("--detach", ref)
    return repo


def _clone_commit(git: Any, url: str, tmp: Path, sha: str, env: dict, prog: Any) -> Any:
    repo = git.Repo.init(str(tmp))
    with repo.git.custom_environment(**env):
        origin = repo.create_remote("origin", url)
        try:
            origin.fetch(sha, depth=1, progress=prog)
        except git.exc.GitCommandError:
            origin.fetch(progress=prog)  # server refuses fetch-by-sha: take everything, then check out the pin
        repo.git.checkout("--detach", sha)
    return repo


def _check_pin(ref: Optional[str], commit: str, url: str) -> None:
    if is_full_sha(ref) and commit != ref:
        raise GitError(f"HEAD of {public_git_url(url)} is {commit}, not the pinned commit {ref}",
                       hint="the mirror may serve different code; check --git-mirror")


def _update(git: Any, url: str, code_dir: Path, ref: Optional[str], env: dict, mirror: Optional[str],
            key: Optional[Path] = None) -> CodeResult:
    """Move an existing clean checkout to ``ref`` (fetch + detached checkout); refuse a dirty or foreign folder."""
    try:
        repo = git.Repo(str(code_dir))
    except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError):
        raise GitError(f"{code_dir} exists and is not a git checkout",
                       hint="move it away or pass --no-code") from None
    try:
        if repo.is_dirty(untracked_files=True):
            raise GitError(f"{code_dir} has local changes", hint="commit or move them, or pass --no-code")
        head = repo.head.commit.hexsha if repo.head.is_valid() else None
        if is_full_sha(ref) and head == ref:
            return CodeResult(public_git_url(url), ref, head, code_dir, "present", mirror)
        with repo.git.custom_environment(**env):
            try:
                repo.git.fetch(url, ref or "HEAD", "--depth=1")
            except git.exc.GitCommandError:
                if not is_full_sha(ref):
                    raise
                repo.git.fetch(url)
                repo.git.checkout("--detach", ref)
            else:
                repo.git.checkout("--detach", "FETCH_HEAD")
        commit = repo.head.commit.hexsha
    except git.exc.GitError as exc:
        raise _git_error(exc, "fetch", url, key=key) from None
    finally:
        repo.close()
    _check_pin(ref, commit, url)
    return CodeResult(public_git_url(url), ref, commit, code_dir, "present" if commit == head else "updated", mirror)


__all__ = ["GITHUB", "CodeResult", "GitProgressFn", "SshOptions", "fetch_code", "git_env", "is_full_sha",
           "mirrored_url", "ssh_env"]
