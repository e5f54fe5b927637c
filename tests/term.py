"""Run a command on a real pseudo-terminal and read back what its screen shows at the end.

``screen()`` is a small terminal model: enough of the VT100 control sequences rich writes (carriage return, line
feed, cursor up/down, erase line, colours and cursor visibility ignored) to tell what stays visible after a
transient status line or progress bar was erased.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time
from typing import Optional

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(\x07|\x1b\\)")


def screen(raw: str) -> list[str]:
    """The visible lines after writing ``raw`` to an empty terminal (no auto-wrap: lines just grow)."""
    raw = _OSC.sub("", raw)
    lines: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(raw):
        m = _CSI.match(raw, i) if raw[i] == "\x1b" else None
        if m:
            arg, op = m.group(1), m.group(2)
            n = int(arg) if arg.isdigit() else 1
            if op == "A":
                row = max(0, row - n)
            elif op == "B":
                row += n
            elif op == "K":
                line = lines[row] if row < len(lines) else []
                if arg == "2":
                    line.clear()
                else:
                    del line[col:]
            elif op == "G":
                col = max(0, n - 1)
            i = m.end()
            continue
        ch = raw[i]
        i += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row += 1
        elif ch == "\x1b" or ch < " ":
            continue
        else:
            while len(lines) <= row:
                lines.append([])
            line = lines[row]
            while len(line) < col:
                line.append(" ")
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
        while len(lines) <= row:
            lines.append([])
    text = ["".join(line).rstrip() for line in lines]
    while text and not text[-1]:
        text.pop()
    return text


def run_in_terminal(argv: list[str], env: dict[str, str], *, cols: int = 200, rows: int = 50,
                    timeout: float = 120, cwd: Optional[str] = None) -> tuple[int, list[str]]:
    """Run ``argv`` with stdin, stdout and stderr on one pseudo-terminal; return (exit code, screen lines)."""
    code, raw = run_raw_in_terminal(argv, env, cols=cols, rows=rows, timeout=timeout, cwd=cwd)
    return code, screen(raw)


def run_raw_in_terminal(argv: list[str], env: dict[str, str], *, cols: int = 200, rows: int = 50,
                        timeout: float = 120, cwd: Optional[str] = None) -> tuple[int, str]:
    """Like :func:`run_in_terminal`, but return everything written to the terminal, control sequences included."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {**env, "COLUMNS": str(cols), "LINES": str(rows), "TERM": "xterm-256color"}
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True, cwd=cwd)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{argv} did not finish in {timeout} s")
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        os.close(master)
    return proc.returncode, b"".join(chunks).decode("utf-8", "replace")
