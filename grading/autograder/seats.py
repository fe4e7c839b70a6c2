"""Grading seats reserved machine-wide: each seat is one sandbox uid (``SANDBOX_UID + seat``).

RLIMIT_NPROC counts the processes of a uid across the whole machine, so two gradings that
run at once as the same uid would share one process limit (a fork bomb in one would starve
the other). Submissions graded at once by one ``course.py autograde`` already get distinct
seats; this module also keeps them apart between several ``autograde`` runs on one machine
(two courses, two instructors): a seat is an exclusive ``flock`` on a file, held until the
process ends, whatever way it ends.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
from pathlib import Path

MAX_SEATS = 1000
_HELD: list[int] = []  # descriptors of the seats this process holds (released at exit)


def folder() -> Path:
    """This user's seat folder (only the sandbox, run as root, needs seats apart; a folder per
    user keeps one user from holding or planting another's), checked to be ours."""
    base = Path("/run/lock") if os.access("/run/lock", os.W_OK) else Path(tempfile.gettempdir())
    path = base / f"tp3-grading-seats-{os.getuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"{path} is not a folder of this user's: remove it, then grade again")
    return path


def reserve(count: int) -> list[int]:
    """``count`` seat numbers that no other process on this machine holds."""
    where, seats = folder(), []
    for seat in range(MAX_SEATS):
        if len(seats) == count:
            break
        fd = os.open(where / f"{seat}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _HELD.append(fd)
        seats.append(seat)
    if len(seats) < count:
        raise RuntimeError(f"no free grading seat in {where} ({MAX_SEATS} held by other processes)")
    return seats
