"""Start a student's kernel for grading: its submission's control group, resource limits,
and optionally the sandbox.

    python launcher.py [--cgroup PROCS_FILE ...] [--memory-mb N] [--cpu-seconds N] [--nproc N]
                       [--fsize-mb N] [--sandbox --private-dir DIR --etc-dir DIR [--uid N]]
                       -- KERNEL COMMAND...

The grader's kernel manager (``kernel.GraderKernelManager``) puts this in front of the
kernel's command line. It runs with the grader's rights, in the folder nbgrader grades in.
First it joins the submission's control group(s) (``--cgroup``: everything it starts stays
there, and the grader kills the group when the submission is graded).

- Plain mode with a control group: sets the limits and becomes the kernel (exec).
- Plain mode without one: stays as the kernel's parent and a child subreaper, so that what
  the kernel detaches comes back to it, and kills all of it when the kernel ends.
- Sandbox mode: starts the kernel inside bubblewrap (``sandbox.bwrap_argv``) under the
  limits, stays as its parent to relay interrupts (SIGINT) to it, and takes the sandbox
  down with it. The kernel's own stdout/stderr (not the notebook's outputs) are kept, at
  most ``LOG_BYTES`` of them, in ``kernel.log`` beside the private folder.

Limits: ``RLIMIT_AS`` (memory of one process: an allocation past it fails with
MemoryError; the control group bounds the whole submission), ``RLIMIT_CPU`` (CPU seconds of
each process), ``RLIMIT_NPROC`` (processes and threads of the sandbox uid; root ignores
it), ``RLIMIT_FSIZE`` (largest file written), no core dumps.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import threading

PR_SET_PDEATHSIG = 1
LOG_BYTES = 64 << 10


def die_with_parent() -> None:
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request
        os._exit(1)


def join_cgroups(procs_files: list[str]) -> None:
    for path in procs_files:
        with open(path, "w") as f:
            f.write(str(os.getpid()))


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


def descendants(pid: int | None) -> list[int]:
    """Host pids of every process under ``pid`` (breadth first)."""
    if not pid:
        return []
    found, todo = [], [pid]
    while todo:
        parent = todo.pop(0)
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
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


def capped_copy(source, path: str, limit: int = LOG_BYTES) -> threading.Thread:
    """Copy ``source`` (a pipe) into ``path``, keeping its first ``limit`` bytes; the rest is
    read and dropped (a kernel printing without end must not fill the grader's disk)."""
    def run():
        kept = 0
        with open(path, "ab") as out:
            while True:
                chunk = source.read(1 << 16)
                if not chunk:
                    return
                if kept < limit:
                    out.write(chunk[: limit - kept])
                    kept += len(chunk[: limit - kept])
                    if kept >= limit:
                        out.write(b"\n[... kernel output cut ...]\n")
                        out.flush()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait(proc: subprocess.Popen) -> int:
    while True:
        try:
            return proc.wait()
        except InterruptedError:
            continue


def run_reaping(args, cmd: list[str]) -> int:
    """Plain mode without a control group: the kernel as a child; what it leaves is killed."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER

    def child_setup():
        set_limits(args.memory_mb, args.cpu_seconds, 0, args.fsize_mb)

    proc = subprocess.Popen(cmd, preexec_fn=child_setup, close_fds=False)  # keep what the grader passed
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the kernel, in our process group, gets it itself

    def stop(signum, frame):
        for pid in [proc.pid, *descendants(os.getpid())]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    code = wait(proc)
    for pid in descendants(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    while True:  # reap them (they are our children now)
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return code


def run_sandboxed(args, cmd: list[str]) -> int:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from autograder.sandbox import bwrap_argv, submission_entries

    conn = connection_file(cmd)
    if not conn or os.path.dirname(os.path.realpath(conn)) != os.path.realpath(args.private_dir):
        print("launcher: the connection file must be in the private folder", file=sys.stderr)
        return 2
    os.chown(conn, args.uid, args.uid)  # written 0600 by the grader: readable by the kernel only
    for name in submission_entries(os.getcwd()):
        readable_by_all(os.path.join(os.getcwd(), name))  # nbgrader's working copies (it makes them 0444 later)
    state = {"child": None, "proc": None}

    def relay(signum, frame):
        for pid in descendants(state["child"]):
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
    argv = bwrap_argv(cmd, submission=os.getcwd(), private_dir=args.private_dir, etc_dir=args.etc_dir, uid=args.uid)
    argv = [argv[0], "--info-fd", str(write_info), *argv[1:]]

    def child_setup():
        die_with_parent()
        set_limits(args.memory_mb, args.cpu_seconds, args.nproc, args.fsize_mb)

    proc = subprocess.Popen(argv, preexec_fn=child_setup, pass_fds=(write_info,), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    state["proc"] = proc
    os.close(write_info)
    copier = capped_copy(proc.stdout, os.path.join(os.path.dirname(args.private_dir), "kernel.log"))
    with os.fdopen(read_info) as info:  # bwrap writes {"child-pid": N} (several lines)
        text = ""
        for line in info:
            text += line
            try:
                state["child"] = json.loads(text).get("child-pid")
                break
            except ValueError:
                continue
    code = wait(proc)
    copier.join(timeout=5)  # the kernel's last words (a daemon thread would be cut at exit)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--cgroup", action="append", default=[], help="cgroup.procs file to join")
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
    join_cgroups(args.cgroup)
    if args.sandbox:
        return run_sandboxed(args, cmd)
    if not args.cgroup:
        return run_reaping(args, cmd)
    set_limits(args.memory_mb, args.cpu_seconds, 0, args.fsize_mb)
    os.execv(cmd[0], cmd)
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
