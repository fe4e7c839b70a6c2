"""Grade one submission end to end, whatever it does.

1. a private workspace (``workspace.py``): the expected files only, a gradebook of one;
2. a control group for the submission (``cgroup.py``: memory and processes of the whole
   submission; everything in it killed at the end);
3. ``nbgrader autograde`` in the workspace, under a wall-clock limit (``execute.py``,
   ``kernel.py``, ``launcher.py``, ``sandbox.py`` run the kernels);
4. zero, explained, for what did not finish (``unfinished.py``);
5. the trusted re-verification of what scored (``verify.py``), confined like the kernels;
6. the graded notebooks made inert for any HTML renderer (``sanitize.py``);
7. under the class's lock, the one write into the course: scores into its gradebook
   (``gradebook.transfer``) and graded notebooks into ``autograded/`` (``workspace.publish``).

``classroom.py`` runs this for every student, several at once with ``--jobs``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from autograder import ASSIGNMENT, cgroup, reaper
from autograder.gradebook import auto_score, test_scores, transfer, withdraw_all
from autograder.sandbox import SANDBOX_UID
from autograder.unfinished import set_aside_unreadable, what_happened, zero_unfinished
from autograder.workspace import Workspace, publish

LOG_BYTES = 2 << 20  # nbgrader's output kept per submission (reports/logs/<id>.log)


@dataclass
class Options:
    """How submissions are graded (``course.py autograde`` flags)."""

    sandbox: bool = False
    wall: float = 1800  # seconds for all notebooks of a submission
    cell_timeout: int | None = None  # default: Execute.timeout of nbgrader_config.py
    memory_mb: int = 8192  # the submission's processes together (control group); each one's address space
    nproc: int = 256  # processes + threads of the submission
    verify: bool = True
    threads: int | None = None  # torch / OpenMP threads of each kernel (parallel grading sets it)
    cgroups: bool = True
    env: dict = field(default_factory=dict)  # added to the kernels' and the replay's environment
    memo: bool | None = None  # evaluate the saved run once for kernel and replay (None: unless profile ci)

    def wants_memo(self) -> bool:
        """Whether to evaluate the saved run once before the kernels (``verify.precompute``).
        By default not in the ci profile: its 2-layer model evaluates the three splits in
        about 2.6 s, about what the extra confined process costs to start."""
        if not self.verify:
            return False
        if self.memo is not None:
            return self.memo
        return (self.env.get("TP3_PROFILE") or os.environ.get("TP3_PROFILE") or "full") != "ci"


@dataclass
class Result:
    student: str
    score: float = 0.0
    max: float = 0.0
    seconds: float = 0.0
    status: list = field(default_factory=list)
    failed: bool = False  # the grader itself failed for this student
    peak_memory_mb: float | None = None
    tests: dict = field(default_factory=dict)  # notebook -> test cell -> score
    evaluated_once: float | None = None  # seconds of ``verify.precompute`` when its results were used

    def to_dict(self) -> dict:
        return {"student": self.student, "score": self.score, "max": self.max, "seconds": round(self.seconds, 1),
                "failed": self.failed, "status": self.status, "peak_memory_mb": self.peak_memory_mb,
                "tests": self.tests, "evaluated_once_s": self.evaluated_once}


def workspace_settings(opts: Options, ws: Workspace, group, slot: int) -> str:
    """nbgrader settings of this grading, appended to the workspace's configuration."""
    lines = [f"c.GraderKernelManager.scratch_dir = {str(ws.runtime)!r}",
             f"c.GraderKernelManager.memory_mb = {int(opts.memory_mb)!r}",
             f"c.GraderKernelManager.cpu_seconds = {int(opts.wall)!r}",
             f"c.GraderKernelManager.nproc = {int(opts.nproc)!r}",
             f"c.GraderKernelManager.sandbox = {bool(opts.sandbox)!r}",
             f"c.GraderKernelManager.sandbox_uid = {SANDBOX_UID + slot!r}",
             f"c.GraderKernelManager.cgroup_procs = {group.procs_files if group else []!r}"]
    if opts.cell_timeout:
        lines.append(f"c.Execute.timeout = {int(opts.cell_timeout)!r}")
    return "\n".join(lines)


def replay_env(opts: Options) -> dict:
    """What the replay gets: the course's variables (thresholds) and the thread count."""
    env = dict(opts.env)
    if opts.threads:
        env.update(OMP_NUM_THREADS=str(opts.threads), MKL_NUM_THREADS=str(opts.threads))
    return env


def kernel_env(opts: Options) -> dict:
    """What the kernels get: the same and, when the replay will run, ``TP3_ORACLES=replay``:
    the hidden tests' recomputations from the adapter are left to the replay (the kernel's
    could not be trusted anyway), which spares the kernel the evaluations."""
    return {**replay_env(opts), **({"TP3_ORACLES": "replay"} if opts.verify else {})}


def run_nbgrader(ws: Workspace, opts: Options, env: dict, log: Path) -> tuple[int | None, str | None]:
    """``nbgrader autograde`` in the workspace, output capped into ``log``; (exit code or
    None when cut at the wall clock, French reason or None)."""
    from autograder.launcher import capped_copy

    args = ["autograde", ASSIGNMENT, "--student", ws.student, "--force"]
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"+ (cd {ws.folder} && nbgrader {' '.join(args)})\n")
    proc = reaper.popen([sys.executable, "-m", "nbgrader", *args], cwd=ws.folder, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        env={**env, **kernel_env(opts), "JUPYTER_RUNTIME_DIR": str(ws.runtime)})
    copier = capped_copy(proc.stdout, str(log), LOG_BYTES)
    try:
        rc = proc.wait(timeout=opts.wall)
        reason = None if rc == 0 else "une erreur de la correction automatique"
    except subprocess.TimeoutExpired:
        reaper.kill_group(proc)  # nbgrader; kernels die with it (parent-death signal) and with the group
        proc.wait()
        rc, reason = None, f"la limite de temps de {opts.wall:g} s pour tout le rendu a été atteinte"
    finally:
        reaper.forget(proc)
        copier.join(timeout=2)  # a process left behind may hold the pipe: it is killed next
    return rc, reason


def sanitize_graded(folder: Path, student: str) -> list[str]:
    """Every graded notebook of ``folder`` made inert for HTML renderers (``sanitize.py``), in
    place; a notebook that cannot be sanitised is set aside (``.non-assaini``), never shown.
    Returns summary lines."""
    import nbformat

    from autograder.sanitize import sanitize_notebook

    status = []
    for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
        try:
            nb = nbformat.read(str(path), as_version=4)
            said = sanitize_notebook(nb)
            nbformat.write(nb, str(path))
        except Exception as err:  # noqa: BLE001 (fail closed: nothing unsanitised is left to render)
            path.rename(path.with_name(path.name + ".non-assaini"))
            status.append(f"{path.stem}: could not be sanitised ({type(err).__name__}), set aside")
            continue
        active = [line for line in said if not line.startswith(("cell metadata removed", "notebook metadata removed"))]
        if active:
            status.append(f"{path.stem}: {len(active)} active or invalid item(s) made inert")
    return status


def grade_submission(course: Path, student: str, opts: Options, template_db: Path, env: dict,
                     lock: threading.Lock, slot: int = 0) -> Result:
    """Grade ``student`` (see the module's docstring); the course is written under ``lock``."""
    from autograder import verify

    start = time.perf_counter()
    result = Result(student)
    group = None
    if opts.cgroups:
        try:
            group = cgroup.create(f"{os.getpid()}-{slot}", opts.memory_mb, opts.nproc)
        except OSError as err:
            result.status.append(f"no control group ({err.strerror or err})")
    ws = Workspace(course, student, template_db)
    try:
        ws_config = ws.folder / "nbgrader_config.py"
        ws_config.write_text(ws_config.read_text() + workspace_settings(opts, ws, group, slot) + "\n")
        if ws.intake.ignored or ws.intake.refused:
            result.status.append(f"files left out: {ws.intake.summary()}")
        unreadable = set_aside_unreadable(ws.submitted)
        if unreadable:
            result.status.append(f"unreadable: {', '.join(unreadable)}")
        iso = verify.Isolation(memory_mb=opts.memory_mb, timeout=opts.wall, sandbox=opts.sandbox,
                               uid=SANDBOX_UID + slot, procs_files=group.procs_files if group else [],
                               env=replay_env(opts))
        started = time.perf_counter()
        memo, why_not = verify.precompute(ws.submitted, iso) if opts.wants_memo() else (None, None)
        if why_not:
            result.status.append(f"saved run not evaluated beforehand ({why_not}): kernel and replay evaluated it")
        if memo:
            result.evaluated_once = round(time.perf_counter() - started, 1)
            env, iso.env = {**env, verify.MEMO_ENV: memo}, {**iso.env, verify.MEMO_ENV: memo}
        rc, reason = run_nbgrader(ws, opts, env, course / "reports" / "logs" / f"{student}.log")
        if reason and rc is None:
            result.status.append(f"cut at {opts.wall:g} s")
        if rc not in (0, None):
            result.failed = True
            result.status.append(f"nbgrader failed (exit {rc}, see reports/logs/{student}.log)")
        left = group.kill() if group else len(reaper.reap())
        if left:
            result.status.append(f"{left} process(es) left by the kernels killed")
        cut = zero_unfinished(ws.db, ws.folder, ws.submitted, ws.autograded, course / "release" / ASSIGNMENT,
                              student, reason or "une erreur de la correction automatique")
        if cut:
            result.status.append(f"not graded to the end: {', '.join(cut)}")
        if opts.verify:
            try:
                report = verify.verify_submission(ws.folder, student, iso)
            except Exception as err:  # noqa: BLE001 (fail closed: nothing unconfirmed keeps its points)
                report = {"*": verify.Outcome(error=repr(err))}
                withdraw_all(ws.db, student)
            for notebook, outcome in report.items():
                if outcome.withdrawn:
                    result.status.append(f"{notebook}: verification withdrew {sorted(outcome.withdrawn)}")
                if outcome.error:
                    result.failed = True
                    result.status.append(f"{notebook}: VERIFICATION ERROR {outcome.error[-300:]}")
            left = group.kill() if group else len(reaper.reap())
            if left:
                result.status.append(f"{left} process(es) left by the verification killed")
        if group:
            result.peak_memory_mb = group.peak_memory_mb()
        result.status += what_happened(ws.autograded)
        result.status += sanitize_graded(ws.autograded, student)
        with lock:
            transfer(ws.db, course / "gradebook.db", student)
            publish(ws, course)
            result.score, result.max = auto_score(course / "gradebook.db", student)
            result.tests = test_scores(course / "gradebook.db", student)
    finally:
        if group:
            group.remove()
        ws.remove()
    result.seconds = time.perf_counter() - start
    return result


def kill_everything(signum=signal.SIGKILL) -> None:
    """Used on Ctrl+C of the whole run: no kernel survives the grader."""
    for pid in reaper.descendants(os.getpid()):
        try:
            os.kill(pid, signum)
        except OSError:
            pass
