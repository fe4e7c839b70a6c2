"""The kernel manager nbgrader uses while grading: every kernel starts through
``launcher.py`` (the submission's control group, resource limits, the sandbox).

In sandbox mode the kernel's connection folder (its ZeroMQ sockets, the only host folder
the sandboxed kernel may write to) is a tmpfs of 1 MB mounted by the grader, so a kernel
cannot fill the grader's disk through it either; where mounting is not permitted it stays a
plain folder, bounded only by ``RLIMIT_FSIZE`` per file.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
import tempfile

from jupyter_client.manager import AsyncKernelManager
from traitlets import Bool, Integer, List, Unicode

from . import sandbox as sandboxing

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher.py")
CONN_TMPFS = "size=1m,nr_inodes=64,mode=0700"
MNT_DETACH = 2


def mount_tmpfs(path: str, options: str) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.mount(b"tp3-conn", path.encode(), b"tmpfs", 0, options.encode()) == 0


def unmount(path: str) -> None:
    ctypes.CDLL(None, use_errno=True).umount2(path.encode(), MNT_DETACH)


class GraderKernelManager(AsyncKernelManager):
    """Starts the kernel through ``launcher.py`` (limits; sandbox when ``sandbox`` is set)."""

    sandbox = Bool(False, help="run the kernel inside the bubblewrap sandbox").tag(config=True)
    memory_mb = Integer(8192, help="address-space limit of each kernel process (MB, 0: none)").tag(config=True)
    cpu_seconds = Integer(3600, help="CPU time limit of each kernel process (s, 0: none)").tag(config=True)
    nproc = Integer(256, help="processes + threads of the sandbox uid (sandbox only)").tag(config=True)
    fsize_mb = Integer(512, help="largest file the kernel may write (MB)").tag(config=True)
    sandbox_uid = Integer(sandboxing.SANDBOX_UID, help="unprivileged uid of the sandboxed kernel").tag(config=True)
    scratch_dir = Unicode("", help="where the sandbox's private folders go (default: the temp dir)").tag(config=True)
    cgroup_procs = List(Unicode(), help="cgroup.procs files of the submission's control group(s)").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._base = None
        self._mounted = False
        if self.sandbox:
            self._base = tempfile.mkdtemp(prefix="tp3-kernel-", dir=self.scratch_dir or None)
            private = os.path.join(self._base, "conn")
            os.mkdir(private, 0o700)
            opts = f"{CONN_TMPFS},uid={self.sandbox_uid},gid={self.sandbox_uid}"
            self._mounted = os.geteuid() == 0 and mount_tmpfs(private, opts)
            if not self._mounted:
                self.log.warning("the kernel's connection folder is not a tmpfs (mount refused)")
            os.chown(private, self.sandbox_uid, self.sandbox_uid)
            sandboxing.write_etc(os.path.join(self._base, "etc"), self.sandbox_uid)
            self.transport = "ipc"  # ZeroMQ over unix sockets: TCP cannot cross the network namespace
            self.connection_file = os.path.join(private, "kernel.json")
            self.ip = os.path.join(private, "kernel-ipc")

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = super().format_kernel_cmd(extra_arguments)
        launcher = [sys.executable, "-I", LAUNCHER, f"--memory-mb={self.memory_mb}",
                    f"--cpu-seconds={self.cpu_seconds}", f"--nproc={self.nproc}", f"--fsize-mb={self.fsize_mb}"]
        launcher += [f"--cgroup={path}" for path in self.cgroup_procs]
        if self.sandbox:
            launcher += ["--sandbox", f"--private-dir={os.path.join(self._base, 'conn')}",
                         f"--etc-dir={os.path.join(self._base, 'etc')}", f"--uid={self.sandbox_uid}"]
        return [*launcher, "--", *cmd]

    async def cleanup_resources(self, restart: bool = False) -> None:
        await super().cleanup_resources(restart=restart)
        if self._base and not restart:
            if self._mounted:
                unmount(os.path.join(self._base, "conn"))
            shutil.rmtree(self._base, ignore_errors=True)
