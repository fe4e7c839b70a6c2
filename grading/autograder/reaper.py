"""Processes left behind by a student's kernel, where no control group holds them.

The grader marks itself a child subreaper (``PR_SET_CHILD_SUBREAPER``): a process whose
parent dies (a kernel's daemonised child, ``setsid`` and a double fork included) is then
re-parented to the grader instead of init. Any child of the grader that the grader did not
start itself is such a leftover; :func:`reap` kills it and everything under it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
_started: set[int] = set()  # the children the grader started itself (nbgrader, replays)
_lock = threading.Lock()


def become_subreaper() -> bool:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def popen(argv: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen``, the child marked as the grader's own (never reaped) until
    :func:`forget`; in a new session, so that its process group can be killed."""
    with _lock:
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        _started.add(proc.pid)
    return proc


def forget(proc: subprocess.Popen) -> None:
    with _lock:
        _started.discard(proc.pid)


def run(argv: list[str], timeout: float, stdin: bytes = b"", **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout)`` through
    :func:`popen`; on timeout the child's process group is killed."""
    proc = popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        proc.communicate()
        raise
    finally:
        forget(proc)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        proc.kill()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], _children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += _children(child)
    return found


def reap() -> list[int]:
    """Kill the grader's children it did not start (and their descendants, which come back
    to the grader as they are orphaned in turn); returns their pids."""
    me, victims = os.getpid(), []
    for _ in range(100):
        with _lock:
            strays = [pid for pid in _children(me) if pid not in _started]
        if not strays:
            break
        batch = [p for pid in strays for p in (pid, *descendants(pid))]
        for pid in batch:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in strays:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        victims += batch
    return victims
