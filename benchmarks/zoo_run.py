"""Run one child process under a wall-clock timeout and a memory watchdog, and measure its peak RSS.

The zoo runs every model in a child process so that a crash, a hang or a runaway allocation costs one
row of the scoreboard, not the run. The child's resident set is polled from ``/proc`` and the child is
killed (with its process group) when it passes the budget; its peak comes from ``wait4``'s rusage.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass

MEMORY_LIMIT = 10 << 30  # bytes: the machine is shared, no child may go above this
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class ChildResult:
    """What became of one child: its exit code (None when killed by the watchdog), why it was
    killed, its wall time, its peak resident set and its captured output."""

    returncode: int | None
    killed: str | None  # "timeout" / "memory" / None
    seconds: float
    peak_rss: int  # bytes
    stdout: str
    stderr: str


def _rss(pid: int) -> int:
    """Resident set of a process and its children (the CLI may spawn none, but a worker might)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


def run_child(
    argv: list[str],
    *,
    timeout: float,
    memory_limit: int = MEMORY_LIMIT,
    env=None,
    cwd=None,
    stdout_path: str | None = None,
) -> ChildResult:
    """Run ``argv`` (niced) and return its ChildResult; never raises for the child's failures.

    Args:
        stdout_path: write the child's stdout to this file instead of capturing it (a worker streams
            its rows there, so they survive the worker being killed).
    """
    import tempfile

    start = time.perf_counter()
    with (
        tempfile.TemporaryFile("w+") as err,
        open(stdout_path, "a") if stdout_path else tempfile.TemporaryFile("w+") as out,
    ):
        proc = subprocess.Popen(
            ["nice", "-n", "10", *argv], stdout=out, stderr=err, env=env, cwd=cwd, start_new_session=True
        )
        killed, peak, status, usage = None, 0, None, None
        while status is None:
            pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, usage = st, ru
                break
            rss = _rss(proc.pid)
            peak = max(peak, rss)
            elapsed = time.perf_counter() - start
            if killed is None and (rss > memory_limit or elapsed > timeout):
                killed = "memory" if rss > memory_limit else "timeout"
                os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(POLL_SECONDS)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        peak = max(peak, usage.ru_maxrss * 1024)
        err.seek(0)
        stderr = err.read()
        stdout = ""
        if not stdout_path:
            out.seek(0)
            stdout = out.read()
    return ChildResult(None if killed else proc.returncode, killed, seconds, peak, stdout, stderr)
