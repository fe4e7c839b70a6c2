"""Grading seats: two autograde processes on one machine never get the same sandbox uid
(RLIMIT_NPROC is per uid, machine-wide). Oracle: seats reserved by separate processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GRADING = Path(__file__).resolve().parents[1] / "grading"
HOLD = ("import sys, time; sys.path.insert(0, {g!r}); from autograder import seats; "
        "print(*seats.reserve({n}), flush=True); time.sleep(30)")


def _holder(n: int) -> tuple[subprocess.Popen, set[int]]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD.format(g=str(GRADING), n=n)], stdout=subprocess.PIPE, text=True)
    return proc, {int(s) for s in proc.stdout.readline().split()}


def test_seats_held_by_one_process_are_not_given_to_another():
    first, a = _holder(2)
    second, b = _holder(3)
    try:
        assert len(a) == 2 and len(b) == 3 and not a & b
    finally:
        first.kill()
        second.kill()
        first.wait()
        second.wait()
    third, c = _holder(2)  # released when their holders ended
    third.kill()
    third.wait()
    assert c & (a | b)
