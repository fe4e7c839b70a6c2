"""The bubblewrap sandbox a student's kernel runs in (``course.py autograde --sandbox``).

The kernel sees a minimal, mostly read-only file system:

- ``/usr`` (and the ``/bin``, ``/lib*`` links), a few files of ``/etc`` (the dynamic linker's
  cache, a passwd naming the sandbox user), fresh ``/proc`` and ``/dev``;
- the Python installation and the virtual environment, read-only; ``lab_utils`` alone,
  read-only, at ``/opt/tp3/lab_utils``; the shared data, tokenizer and weights caches,
  read-only;
- its working folder ``/home/etudiant/tp3``: a small tmpfs in which the submission's own
  files (``tp3_run/``...; never the notebooks, which hold the hidden tests while grading)
  are mounted read-only;
- ``/tmp`` and ``$HOME`` on small tmpfs; the kernel's connection folder (its ZeroMQ sockets).

Nothing else exists in it: not the course folder, not the gradebook, not the instructor's
notebooks, not other submissions. It has its own network namespace (no interface but
``lo``), its own PID namespace (it sees only its own processes; when the kernel exits
every process it started is killed), IPC and UTS namespaces, no capabilities, runs as an
unprivileged uid with ``no_new_privs``, and dies with the grader. Resource limits (address
space, CPU time, processes, file size) are set by the launcher.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BWRAP = "bwrap"
SETPRIV = "setpriv"
SANDBOX_UID = 61_000  # an unused uid: RLIMIT_NPROC counts the processes of this uid only
HOME = "/home/etudiant"
WORKDIR = f"{HOME}/tp3"
LAB_ROOT = "/opt/tp3"
MPL_DIR = "/tmp/matplotlib"  # matplotlib's cache folder, inside the /tmp tmpfs

# Environment passed into the sandbox (everything else is cleared).
PASS_ENV = ("TP3_PROFILE", "TP3_DATA_DIR", "TP3_CACHE_DIR", "TIKTOKEN_CACHE_DIR", "HF_HUB_CACHE",
            "TP3_GPT2_WEIGHTS", "TP3_PROGRESS", "NBGRADER_EXECUTION", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "TZ", "LANG", "LC_ALL", "TP3_THRESHOLDS", "TP3_ORACLES",
            "TP3_EVAL_MEMO")
# Paths (from those variables) mounted read-only when they exist.
DATA_ENV = ("TP3_DATA_DIR", "TP3_CACHE_DIR", "TIKTOKEN_CACHE_DIR", "HF_HUB_CACHE", "TP3_GPT2_WEIGHTS")


def tool(name: str) -> str | None:
    for folder in ("/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin"):
        path = Path(folder) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


def default_cache_dir() -> str:
    """lab_utils' default cache folder (lab_utils.paths.cache_dir), without importing it."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(xdg, "tp3")


def lab_utils_dir() -> str:
    """The lab_utils package the grader itself would import (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("lab_utils")
    if spec is None or not spec.origin:
        raise RuntimeError("lab_utils is not importable from the grader's environment")
    return os.path.dirname(os.path.realpath(spec.origin))


def _with_parents(args: list[str]) -> list[str]:
    """``args`` with ``--perms 0755 --dir`` for the parent folders of every mount point: left to
    itself bwrap copies the parents' modes from the host (``/root`` is 0700: unusable)."""
    out: list[str] = []
    made = {"/", "/usr", "/etc", "/tmp", "/proc", "/dev"}
    i = 0
    while i < len(args):
        if args[i] in ("--ro-bind", "--bind", "--symlink"):
            dest = args[i + 2]
            parents = []
            parent = os.path.dirname(dest)
            while parent not in made and parent != "/":
                parents.append(parent)
                parent = os.path.dirname(parent)
            for folder in reversed(parents):
                out += ["--perms", "0755", "--dir", folder]
                made.add(folder)
            out += args[i:i + 3]
            made.add(dest)
            i += 3
        elif args[i] == "--size":
            out += args[i:i + 4]  # --size N --tmpfs PATH
            made.add(args[i + 3])
            i += 4
        elif args[i] in ("--tmpfs", "--proc", "--dev", "--dir", "--chdir", "--hostname"):
            out += args[i:i + 2]
            made.add(args[i + 1])
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf", "fonts"):
        if os.path.exists(f"/etc/{name}"):
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return args


def _python_binds() -> list[str]:
    """The interpreter, its standard library and the environment's packages, read-only."""
    args: list[str] = []
    prefixes = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix),
                os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))}
    for prefix in sorted(prefixes):
        if prefix in ("/", "/usr") or prefix.startswith("/usr/"):
            continue  # already there
        args += ["--ro-bind", prefix, prefix]
    if os.path.realpath(sys.prefix) != sys.prefix and not sys.prefix.startswith("/usr"):
        args += ["--ro-bind", sys.prefix, sys.prefix]  # a venv reached through a symlink
    return args


def submission_entries(folder: str) -> list[str]:
    """What of the submission's folder the kernel may read: its own files and folders, not
    the notebooks (the copies being graded hold the hidden tests), never a symlink."""
    entries = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.endswith(".ipynb") or os.path.islink(path):
            continue
        if os.path.isdir(path) or os.path.isfile(path):
            entries.append(name)
    return entries


def matplotlib_fontlist() -> str | None:
    """The grader's matplotlib font list (``fontlist-v*.json``), shown read-only in the
    sandbox so that the kernel does not rebuild it (fc-list's complaints would land on
    stderr, in a cell). None if the grader has none yet."""
    for folder in filter(None, [os.environ.get("MPLCONFIGDIR"),
                                os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                             "matplotlib")]):
        try:
            names = sorted(n for n in os.listdir(folder) if n.startswith("fontlist-") and n.endswith(".json"))
        except OSError:
            continue
        if names:
            return os.path.join(folder, names[-1])
    return None


def sandbox_env(extra: dict | None = None) -> dict:
    """The environment inside the sandbox: the lab's variables, nothing of the grader's."""
    env = {
        "PATH": f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": HOME, "USER": "etudiant", "LOGNAME": "etudiant", "LANG": "C.UTF-8",
        "PYTHONPATH": LAB_ROOT, "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "MPLCONFIGDIR": MPL_DIR, "IPYTHONDIR": "/tmp/ipython", "XDG_CACHE_HOME": "/tmp/cache",
        "XDG_CONFIG_HOME": "/tmp/config", "JUPYTER_CONFIG_DIR": "/tmp/jupyter",
        "JUPYTER_DATA_DIR": "/tmp/jupyter-data", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
        "HF_HUB_OFFLINE": "1",
    }
    for name in PASS_ENV:
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.setdefault("TP3_CACHE_DIR", default_cache_dir())
    env.update(extra or {})
    return env


def bwrap_argv(cmd: list[str], *, etc_dir: str, workdir: dict[str, str] | None = None,
               submission: str | None = None, private_dir: str | None = None,
               read_only: list[tuple[str, str]] | None = None, uid: int = SANDBOX_UID,
               env: dict | None = None, tmp_mb: int = 256, work_mb: int = 256) -> list[str]:
    """The command that runs ``cmd`` inside the sandbox.

    ``workdir``: name -> host path, each shown read-only in the working folder ``WORKDIR``
    (``submission``, the folder nbgrader grades in, adds its entries but not the
    notebooks); ``private_dir``: the kernel's connection folder, the only host folder it may
    write (mounted at the same path); ``read_only``: more (host path, sandbox path) binds;
    ``etc_dir``: holds the ``passwd`` and ``group`` files shown in the sandbox; ``env``:
    variables added to :func:`sandbox_env`. Every other writable place is a tmpfs of a
    fixed size: ``/tmp`` (``tmp_mb``, matplotlib's cache folder inside it), ``/dev/shm``,
    ``$HOME`` and the working folder (``work_mb``).
    """
    bwrap, setpriv = tool(BWRAP), tool(SETPRIV)
    if not bwrap or not setpriv:
        raise RuntimeError("bubblewrap (bwrap) and setpriv are needed: apt-get install bubblewrap util-linux")
    env = sandbox_env(env)
    files = dict(workdir or {})
    if submission:
        files.update({name: os.path.join(submission, name) for name in submission_entries(submission)})

    args = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "tp3-sandbox", "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    args += _system_binds()
    args += ["--ro-bind", os.path.join(etc_dir, "passwd"), "/etc/passwd",
             "--ro-bind", os.path.join(etc_dir, "group"), "/etc/group"]
    args += ["--proc", "/proc", "--dev", "/dev",
             "--perms", "1777", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp",
             "--perms", "1777", "--size", str(16 << 20), "--tmpfs", "/dev/shm",
             "--perms", "0777", "--size", str(16 << 20), "--tmpfs", HOME,
             "--perms", "0777", "--dir", MPL_DIR]
    fontlist = matplotlib_fontlist()
    if fontlist:
        args += ["--ro-bind", fontlist, f"{MPL_DIR}/{os.path.basename(fontlist)}"]
    args += _python_binds()
    args += ["--ro-bind", lab_utils_dir(), f"{LAB_ROOT}/lab_utils"]
    for name in DATA_ENV:
        path = env.get(name)
        if path and os.path.exists(path):
            real = os.path.realpath(path)
            args += ["--ro-bind", real, real]
            if real != path:
                args += ["--ro-bind", real, path]
    for host, dest in read_only or []:
        args += ["--ro-bind", host, dest]
    args += ["--perms", "0777", "--size", str(work_mb << 20), "--tmpfs", WORKDIR]
    for name, host in sorted(files.items()):
        args += ["--ro-bind", host, f"{WORKDIR}/{name}"]
    if private_dir:
        args += ["--bind", private_dir, private_dir]
    args += ["--chdir", WORKDIR]
    args = _with_parents(args)
    args += ["--", setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
             "--bounding-set=-all", "--no-new-privs", "--pdeathsig=SIGKILL", "--"]
    return args + list(cmd)


def write_etc(etc_dir: str, uid: int = SANDBOX_UID) -> None:
    os.makedirs(etc_dir, exist_ok=True)
    Path(etc_dir, "passwd").write_text(f"root:x:0:0:root:/root:/bin/false\n"
                                       f"etudiant:x:{uid}:{uid}:etudiant:{HOME}:/bin/false\n")
    Path(etc_dir, "group").write_text(f"root:x:0:\netudiant:x:{uid}:\n")


def probe(timeout: float = 20.0) -> tuple[bool, str]:
    """Whether the sandbox can run here: (True, "") or (False, why)."""
    if os.geteuid() != 0:
        return False, "the sandbox is set up by root (it drops to an unprivileged uid itself); run as root"
    if not tool(BWRAP):
        return False, "bubblewrap is not installed (apt-get install bubblewrap)"
    if not tool(SETPRIV):
        return False, "setpriv (util-linux) is not installed"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tp3-probe-") as tmp:
        etc = os.path.join(tmp, "etc")
        write_etc(etc)
        sub = os.path.join(tmp, "sub")
        os.makedirs(os.path.join(sub, "tp3_run"))
        priv = os.path.join(tmp, "priv")
        os.makedirs(priv)
        code = ("import os, socket; assert os.getuid() == %d; assert os.getpid() == 2; "
                "assert os.listdir('/proc/self') is not None; "
                "assert [n for i, n in socket.if_nameindex()] == ['lo'], socket.if_nameindex(); "
                "assert os.path.isdir('tp3_run'); print('ok')" % SANDBOX_UID)
        try:
            argv = bwrap_argv([sys.executable, "-I", "-c", code], submission=sub, private_dir=priv, etc_dir=etc)
            out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except (OSError, RuntimeError, subprocess.TimeoutExpired) as err:
            return False, f"bubblewrap could not start: {err}"
        if out.returncode != 0 or out.stdout.strip() != "ok":
            why = (out.stderr or out.stdout).strip()[-500:]
            return False, f"bubblewrap failed here (namespaces not permitted?): {why}"
    return True, ""
