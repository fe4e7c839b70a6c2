"""Start a student's kernel for grading: resource limits, and optionally the sandbox.

    python launcher.py [--memory-mb N] [--cpu-seconds N] [--nproc N] [--fsize-mb N]
                       [--sandbox --private-dir DIR --etc-dir DIR [--uid N]] -- KERNEL COMMAND...

The grader's kernel manager (``execute.GraderKernelManager``) puts this in front of the
kernel's command line. It runs with the grader's rights, in the folder nbgrader grades in.

- Plain mode: sets the limits, asks to be killed with the grader (``PR_SET_PDEATHSIG``),
  and becomes the kernel (exec).
- Sandbox mode: starts the kernel inside bubblewrap (``sandbox.bwrap_argv``) under the
  limits, stays as its parent to relay interrupts (SIGINT) to it, and takes the sandbox
  down with it. The kernel's own stdout/stderr (not the notebook's outputs) go to
  ``kernel.log`` beside the private folder.

Limits: ``RLIMIT_AS`` (memory: an allocation past it fails with MemoryError), ``RLIMIT_CPU``
(CPU seconds of each process: past it the process is killed), ``RLIMIT_NPROC`` (processes
and threads of the sandbox uid: bounds fork bombs; root ignores it, so it only bites in
the sandbox), ``RLIMIT_FSIZE`` (largest file written), no core dumps.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request
        os._exit(1)


def set_limits(memory_mb: int, cpu_seconds: int, nproc: int, fsize_mb: int) -> None:
    def cap(kind, value):
        if value and value > 0:
            soft, hard = resource.getrlimit(kind)
            new = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(kind, (new, new))

    cap(resource.RLIMIT_AS, memory_mb << 20)
    if cpu_seconds and cpu_seconds > 0:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))  # SIGXCPU, then SIGKILL
    cap(resource.RLIMIT_NPROC, nproc)
    cap(resource.RLIMIT_FSIZE, fsize_mb << 20)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def connection_file(cmd: list[str]) -> str | None:
    for i, arg in enumerate(cmd):
        if arg == "-f" and i + 1 < len(cmd):
            return cmd[i + 1]
        if arg.startswith("--f="):
            return arg[4:]
    return None


def sandbox_processes(init: int | None) -> list[int]:
    """Host pids of the processes under the sandbox's init (the kernel first)."""
    if not init:
        return []
    found, todo = [], [init]
    while todo:
        pid = todo.pop(0)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            children = []
        found += children
        todo += children
    return found


def readable_by_all(path: str) -> None:
    """Add read (and traverse) permission for others: the kernel runs as another uid."""
    if not os.path.isdir(path):
        os.chmod(path, os.stat(path).st_mode | 0o444)
        return
    for folder, dirs, files in os.walk(path):
        os.chmod(folder, os.stat(folder).st_mode | 0o555)
        for name in files:
            file = os.path.join(folder, name)
            if not os.path.islink(file):
                os.chmod(file, os.stat(file).st_mode | 0o444)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]


def seed_matplotlib_cache(dest: str) -> None:
    """A copy of the grader's matplotlib font list, so the kernel does not rebuild it (which
    runs fc-list, whose complaints would land on stderr, in a cell)."""
    os.makedirs(dest, exist_ok=True)
    for folder in filter(None, [os.environ.get("MPLCONFIGDIR"),
                                os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                             "matplotlib")]):
        try:
            names = [n for n in os.listdir(folder) if n.startswith("fontlist-") and n.endswith(".json")]
        except OSError:
            continue
        for name in names:
            shutil.copyfile(os.path.join(folder, name), os.path.join(dest, name))
        if names:
            return


def run_sandboxed(args, cmd: list[str]) -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from autograder.sandbox import bwrap_argv, submission_entries

    conn = connection_file(cmd)
    if not conn or os.path.dirname(os.path.realpath(conn)) != os.path.realpath(args.private_dir):
        print("launcher: the connection file must be in the private folder", file=sys.stderr)
        return 2
    os.chown(conn, args.uid, args.uid)  # written 0600 by the grader: readable by the kernel only
    base = os.path.dirname(args.private_dir)
    for name in submission_entries(os.getcwd()):
        readable_by_all(os.path.join(os.getcwd(), name))  # nbgrader's working copies (it makes them 0444 later)
    mpl = os.path.join(base, "matplotlib")
    seed_matplotlib_cache(mpl)
    os.chown(mpl, args.uid, args.uid)
    state = {"child": None, "proc": None}

    def relay(signum, frame):
        for pid in sandbox_processes(state["child"]):
            try:
                os.kill(pid, signum)  # the kernel and what it started (bwrap's init ignores it)
            except OSError:
                pass

    def stop(signum, frame):
        if state["proc"] is not None:
            state["proc"].kill()
        os._exit(1)

    signal.signal(signal.SIGINT, relay)
    signal.signal(signal.SIGTERM, stop)
    read_info, write_info = os.pipe()
    argv = bwrap_argv(cmd, submission=os.getcwd(), private_dir=args.private_dir, etc_dir=args.etc_dir,
                      uid=args.uid, mpl_dir=mpl)
    argv = [argv[0], "--info-fd", str(write_info), *argv[1:]]

    def child_setup():
        die_with_parent()
        set_limits(args.memory_mb, args.cpu_seconds, args.nproc, args.fsize_mb)

    log = open(os.path.join(os.path.dirname(args.private_dir), "kernel.log"), "ab")
    proc = subprocess.Popen(argv, preexec_fn=child_setup, pass_fds=(write_info,), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    state["proc"] = proc
    os.close(write_info)
    with os.fdopen(read_info) as info:  # bwrap writes {"child-pid": N} (several lines)
        text = ""
        for line in info:
            text += line
            try:
                state["child"] = json.loads(text).get("child-pid")
                break
            except ValueError:
                continue
    while True:
        try:
            return proc.wait()
        except InterruptedError:
            continue


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--cpu-seconds", type=int, default=0)
    parser.add_argument("--nproc", type=int, default=0)
    parser.add_argument("--fsize-mb", type=int, default=0)
    parser.add_argument("--sandbox", action="store_true")
    parser.add_argument("--private-dir")
    parser.add_argument("--etc-dir")
    parser.add_argument("--uid", type=int, default=61_000)
    args = parser.parse_args(argv[:split])
    cmd = argv[split + 1:]
    die_with_parent()
    if args.sandbox:
        return run_sandboxed(args, cmd)
    set_limits(args.memory_mb, args.cpu_seconds, 0, args.fsize_mb)
    os.execv(cmd[0], cmd)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
