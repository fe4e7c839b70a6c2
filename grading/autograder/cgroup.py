"""One control group per submission: its memory and process count limited as a whole, and
every process it started killed when its grading ends.

``RLIMIT_AS`` and ``RLIMIT_NPROC`` hold per process and per uid: three forked children
each under the address-space limit add up, and a process that detaches itself (``setsid``
and a double fork) outlives its kernel. A control group holds every descendant of the
processes put in it, whatever they do (moving out needs write access to another group,
which an unprivileged kernel lacks), so its limits bound the submission and
:meth:`SubmissionGroup.kill` ends all of it.

cgroup v2 (``memory.max``, ``pids.max``, ``cgroup.kill``) is used when the unified
hierarchy is mounted with those controllers available, else cgroup v1 (``memory`` and
``pids`` hierarchies: ``memory.limit_in_bytes``, ``pids.max``). Creating groups needs root
(or a delegated subtree); where neither works, :func:`probe` says why and grading falls
back to per-process limits and a reaper (see ``reaper.py``).
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PREFIX = "tp3-grading"


def _own_paths() -> dict[str, str]:
    """controller (or "" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    paths = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return paths
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(","):
            paths[name] = path
    return paths


def _v2_base() -> Path | None:
    if not (ROOT / "cgroup.controllers").is_file():
        return None
    own = _own_paths().get("")
    if own is None:
        return None
    return ROOT / own.lstrip("/")


def _enable_v2(base: Path) -> None:
    """Enable the memory and pids controllers for children of ``base``; a group holding
    processes cannot (cgroup v2's no-internal-process rule), so this process moves into a
    leaf of its own first."""
    wanted = "+memory +pids"
    try:
        (base / "cgroup.subtree_control").write_text(wanted)
        return
    except OSError as err:
        if err.errno not in (errno.EBUSY, errno.EOPNOTSUPP):
            raise
    leaf = base / f"{PREFIX}-self"
    leaf.mkdir(exist_ok=True)
    for pid in (base / "cgroup.procs").read_text().split():
        try:
            (leaf / "cgroup.procs").write_text(pid)
        except OSError:
            pass
    (base / "cgroup.subtree_control").write_text(wanted)


class SubmissionGroup:
    """The control group(s) of one submission (one folder in v2, one per controller in v1)."""

    def __init__(self, version: int, folders: list[Path]):
        self.version = version
        self.folders = folders

    @property
    def procs_files(self) -> list[str]:
        """Where a process writes its pid to join (what the launcher does)."""
        return [str(f / "cgroup.procs") for f in self.folders]

    def join(self, pid: int | None = None) -> None:
        for path in self.procs_files:
            Path(path).write_text(str(pid or os.getpid()))

    def pids(self) -> set[int]:
        found: set[int] = set()
        for folder in self.folders:
            try:
                found |= {int(p) for p in (folder / "cgroup.procs").read_text().split()}
            except OSError:
                continue
        return found

    def kill(self, timeout: float = 10.0) -> int:
        """SIGKILL every process of the group; returns how many there were."""
        killed = self.pids()
        if self.version == 2 and (self.folders[0] / "cgroup.kill").exists():
            try:
                (self.folders[0] / "cgroup.kill").write_text("1")
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while True:
            left = self.pids()
            if not left or time.monotonic() > deadline:
                return len(killed | left)
            killed |= left
            for pid in left:  # v1 (or no cgroup.kill): until no new process appears (pids.max bounds forks)
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.05)

    def peak_memory_mb(self) -> float | None:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        for folder in self.folders:
            try:
                return int((folder / name).read_text().split()[0]) / (1 << 20)
            except (OSError, ValueError, IndexError):
                continue
        return None

    def oom_kills(self) -> int:
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        for folder in self.folders:
            try:
                for line in (folder / name).read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
            except (OSError, ValueError):
                continue
        return 0

    def remove(self) -> None:
        self.kill()
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def create(name: str, memory_mb: int, pids_max: int) -> SubmissionGroup:
    """A new control group ``tp3-grading/<name>`` with these limits (0: no limit).
    Raises OSError when this machine does not let us (see :func:`probe`)."""
    base = _v2_base()
    if base is not None:
        _enable_v2(base)
        folder = base / f"{PREFIX}-{name}"
        folder.mkdir()
        try:
            if memory_mb:
                (folder / "memory.max").write_text(str(memory_mb << 20))
                if (folder / "memory.swap.max").exists():
                    (folder / "memory.swap.max").write_text("0")
            if pids_max:
                (folder / "pids.max").write_text(str(pids_max))
        except OSError:
            folder.rmdir()
            raise
        return SubmissionGroup(2, [folder])
    own = _own_paths()
    folders = []
    try:
        for controller in ("memory", "pids"):
            if controller not in own or not (ROOT / controller).is_dir():
                raise OSError(errno.ENOENT, f"no cgroup v1 {controller} hierarchy")
            folder = ROOT / controller / own[controller].lstrip("/") / f"{PREFIX}-{name}"
            folder.mkdir()
            folders.append(folder)
            if controller == "memory" and memory_mb:
                (folder / "memory.limit_in_bytes").write_text(str(memory_mb << 20))
                try:
                    (folder / "memory.memsw.limit_in_bytes").write_text(str(memory_mb << 20))
                except OSError:
                    pass  # no swap accounting
            if controller == "pids" and pids_max:
                (folder / "pids.max").write_text(str(pids_max))
    except OSError:
        for folder in folders:
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return SubmissionGroup(1, folders)


def probe() -> tuple[bool, str]:
    """(True, "cgroup vN") when submission groups can be made here, else (False, why)."""
    try:
        group = create(f"probe-{os.getpid()}", 64, 8)
    except OSError as err:
        return False, f"cannot create a control group ({err.strerror or err}); root or a delegated cgroup is needed"
    version = group.version
    group.remove()
    return True, f"cgroup v{version}"
