"""Per-submission control groups and the reaper, against the Linux kernel itself.

A group's memory limit holds for its processes together, its process limit for forks,
and ``kill`` ends every process in it, a detached one included. Skipped where control
groups cannot be created (not root, no delegated cgroup); the v2 file layout is also
checked on a fake hierarchy, since the test machines expose cgroup v1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import grading_course as gc
from autograder import cgroup, reaper

ALLOC = "import sys\nb = bytearray(int(sys.argv[1]) << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('ok')"


@pytest.fixture
def group():
    ok, why = cgroup.probe()
    if not ok:
        pytest.skip(f"no control groups here: {why}")
    g = cgroup.create(f"test-{uuid.uuid4().hex[:8]}", memory_mb=300, pids_max=20)
    yield g
    g.remove()


def _in_group(group, argv: list[str], quiet: bool = False) -> subprocess.CompletedProcess:
    launcher = str(gc.GRADING / "autograder" / "launcher.py")
    cgroups = [f"--cgroup={p}" for p in group.procs_files]
    output = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL} if quiet else {"capture_output": True}
    return subprocess.run([sys.executable, "-I", launcher, *cgroups, "--", *argv], text=True, timeout=120, **output)


def test_memory_limit_holds_for_the_group(group):
    assert _in_group(group, [sys.executable, "-c", ALLOC, "100"]).stdout.strip() == "ok"
    out = _in_group(group, [sys.executable, "-c", ALLOC, "600"])
    assert out.returncode == -9 and group.oom_kills() >= 1  # the group's OOM killer, not RLIMIT_AS
    assert (group.peak_memory_mb() or 0) <= 301


def test_forked_children_share_the_limit(group):
    code = ("import os, sys\npids = []\nfor _ in range(3):\n    pid = os.fork()\n    if pid == 0:\n"
            "        b = bytearray(150 << 20)\n        for i in range(0, len(b), 4096): b[i] = 1\n"
            "        import time; time.sleep(1); os._exit(0)\n    pids.append(pid)\n"
            "print([os.waitpid(p, 0)[1] for p in pids])")
    codes = eval(_in_group(group, [sys.executable, "-c", code]).stdout)
    assert 9 in codes  # 3 x 150 MB exceed the group's 300 MB although each child is far below it


def test_process_limit_holds(group):
    code = ("import os, time\nn = 0\nfor _ in range(100):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(2); os._exit(0)\n    n += 1\nprint(n)")
    assert int(_in_group(group, [sys.executable, "-c", code]).stdout) < 20


def test_kill_ends_detached_processes(group):
    token = f"TP3CG{uuid.uuid4().hex[:8]}"
    code = (f"import os, sys\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{token}'])\n"
            f"    os._exit(0)\nos.wait()")
    _in_group(group, [sys.executable, "-c", code], quiet=True)  # (a pipe would wait for the detached one)
    time.sleep(0.5)
    assert gc.processes_with(token), "the detached process should still run before the kill"
    assert group.kill() >= 1
    time.sleep(0.2)
    assert gc.processes_with(token) == []


def test_cgroup_v2_layout(tmp_path, monkeypatch):
    """What ``create`` writes on a cgroup v2 hierarchy (a fake one: files only)."""
    root = tmp_path / "cgroup"
    base = root / "user.slice" / "grader"
    base.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids")
    (base / "cgroup.procs").write_text(f"{os.getpid()}\n")
    (base / "cgroup.subtree_control").write_text("")
    monkeypatch.setattr(cgroup, "ROOT", root)
    monkeypatch.setattr(cgroup, "_own_paths", lambda: {"": "/user.slice/grader"})
    group = cgroup.create("x", memory_mb=512, pids_max=64)
    folder = base / "tp3-grading-x"
    assert group.version == 2 and group.procs_files == [str(folder / "cgroup.procs")]
    assert (folder / "memory.max").read_text() == str(512 << 20) and (folder / "pids.max").read_text() == "64"
    assert (base / "cgroup.subtree_control").read_text() == "+memory +pids"


def test_reaper_kills_orphans_of_the_grader():
    """A grandchild detached from its parent comes back to the grader (child subreaper)."""
    token = f"TP3RP{uuid.uuid4().hex[:8]}"
    code = (f"import os, sys\nif os.fork() == 0:\n    os.setsid()\n"
            f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{token}'])\n")
    driver = (f"import subprocess, sys, time\nsys.path.insert(0, {str(gc.GRADING)!r})\n"
              f"from autograder import reaper\nassert reaper.become_subreaper()\n"
              f"subprocess.run([sys.executable, '-c', {code!r}], stdout=subprocess.DEVNULL)\ntime.sleep(0.5)\n"
              f"print(len(reaper.reap()))")
    out = subprocess.run([sys.executable, "-c", driver], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "1", out.stdout + out.stderr
    assert gc.processes_with(token) == []
