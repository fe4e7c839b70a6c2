"""Trusted re-verification of the test cells that scored, outside the student's kernel.

Hidden tests run inside the student's kernel, after the student's code: a student can make
a failing test pass there (monkeypatching ``lab_utils.grading``, builtins, IPython, shadowing
names...). So every test cell that scored is checked again by the replay (``replay.py``), a
process that runs no student code:

1. the locked instructor cells (from the gradebook, in the order of the instructor's
   source notebook) rebuild the namespace, reading only the run files (``tp3_run/``: the
   three expected files, copied by name and size-checked into a folder of the replay's own);
2. before each test cell, the answers that this cell reads (declared by the reference
   notebook, never a name an instructor cell binds) are taken from what the student's
   kernel claimed (``answers``: values only, never pickle);
3. the test cell runs as is, hidden tests included.

The replay runs as ``python -I`` in its own empty working folder, in the submission's
control group, and, in sandbox mode, inside the same sandbox as the kernels (unprivileged
uid, no network, read-only files). Only this parent writes the verdicts into the
submission's gradebook. A test cell keeps its points only if it passes in the replay;
otherwise they are withdrawn with the reason written, in French, in the graded notebook.
If the replay cannot run, or an instructor cell fails there for a reason that is not the
student's run folder, the unconfirmed points are withdrawn too (fail closed) and the
grading of that submission is reported as a grader failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from autograder import ASSIGNMENT, reaper
from autograder.intake import RUN_FILES, Limits, Refused, copy_submission

GRADER_DIR = Path(__file__).resolve().parents[1]  # holds the autograder package
BOOT = ("import sys; fd = int(sys.argv[1]); sys.path[:0] = sys.argv[2:]; "
        "from autograder.replay import main; sys.exit(main(fd))")
LAUNCHER = Path(__file__).resolve().parent / "launcher.py"
MAX_VERDICTS = 1 << 20
MEMO_ENV, MEMO_ENTRIES = "TP3_EVAL_MEMO", 16  # lab_utils.eval_memo's (not imported: no torch in the grader)
PRECOMPUTE_S = 900  # the evaluation step before the kernels: 90 s at GPT-2 small's size on a slow VM


@dataclass
class Isolation:
    """How the replay process is confined (the same as the submission's kernels)."""

    memory_mb: int = 8192
    timeout: float = 1800
    sandbox: bool = False
    uid: int = 61_000
    procs_files: list[str] = field(default_factory=list)  # the submission's control group
    env: dict = field(default_factory=dict)  # TP3_THRESHOLDS, thread counts...


@dataclass
class Outcome:
    checked: int = 0
    withdrawn: dict = field(default_factory=dict)  # grade id -> French reason
    error: str | None = None  # the grader's own failure, for the instructor
    instructor_errors: list = field(default_factory=list)


def replay_spec(gb, source_root: Path, notebook: str, claims: dict) -> dict:
    """The cells the replay runs (locked instructor cells and test cells, reference order),
    each with the answers it may read and the student's claim reduced to them."""
    from autograder.answers import answer_names, restrict_claim
    from autograder.repair import Reference, source_order

    ref = Reference.from_gradebook(gb, notebook, ASSIGNMENT, source_order(source_root, ASSIGNMENT, notebook))
    cells, plain = [], []
    for r in ref.cells:
        meta = r["nbgrader"]
        if r["cell_type"] != "code" or not meta["locked"] or meta["solution"]:
            continue
        cells.append({"grade_id": r["grade_id"], "kind": "test" if meta["grade"] else "locked", "source": r["source"]})
        plain.append({"grade_id": r["grade_id"], "cell_type": "code", "source": r["source"], "locked": True})
    declared = answer_names(plain)
    for cell in cells:
        cell["names"] = declared.get(cell["grade_id"], [])
        cell["answers"] = restrict_claim(claims.get(cell["grade_id"]), cell["names"]) if cell["names"] else None
    return {"cells": cells}


def _replay_env(iso: Isolation, home: str) -> dict:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8",
           "MPLBACKEND": "Agg", "MPLCONFIGDIR": os.path.join(home, "matplotlib"), "HF_HUB_OFFLINE": "1"}
    for name in ("TP3_PROFILE", "TP3_DATA_DIR", "TP3_CACHE_DIR", "TIKTOKEN_CACHE_DIR", "HF_HUB_CACHE",
                 "TP3_GPT2_WEIGHTS", "XDG_CACHE_HOME", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TZ"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    env.update(iso.env)
    return env


def run_replay(spec: dict, run_source: Path, iso: Isolation) -> dict:
    """Run the replay on ``spec`` with the run files of ``run_source`` (a submission folder);
    returns its verdicts. Raises RuntimeError when it does not complete."""
    from autograder import sandbox

    with tempfile.TemporaryDirectory(prefix="tp3-verify-") as tmp:
        work, home = Path(tmp) / "work", Path(tmp) / "home"
        home.mkdir()
        work.mkdir()
        try:
            copy_submission(run_source, work, Limits(), names=RUN_FILES)
        except Refused:
            pass  # no run folder: the instructor cells say so, as in the kernel
        read, write = os.pipe()
        confine = [sys.executable, "-I", str(LAUNCHER), f"--memory-mb={iso.memory_mb}", "--fsize-mb=64",
                   *[f"--cgroup={path}" for path in iso.procs_files]]
        if iso.sandbox:
            sandbox.write_etc(str(Path(tmp) / "etc"), iso.uid)
            os.chmod(tmp, 0o755)
            for path in [work, *work.rglob("*")]:
                os.chmod(path, 0o755 if path.is_dir() else 0o444)
            run_dir = {"tp3_run": str(work / "tp3_run")} if (work / "tp3_run").is_dir() else {}
            grader = f"{sandbox.LAB_ROOT}/grader"
            argv = sandbox.bwrap_argv([sys.executable, "-I", "-c", BOOT, str(write), grader, sandbox.LAB_ROOT],
                                      etc_dir=str(Path(tmp) / "etc"), workdir=run_dir, uid=iso.uid,
                                      read_only=[(str(GRADER_DIR / "autograder"), f"{grader}/autograder")],
                                      env={**iso.env, "MPLBACKEND": "Agg"})
            argv = [*confine, "--nproc=64", "--", *argv]
            cwd, env = None, {**os.environ}
        else:
            argv = [*confine, "--", sys.executable, "-I", "-c", BOOT, str(write), str(GRADER_DIR)]
            cwd, env = work, _replay_env(iso, str(home))
        chunks: list[bytes] = []

        def drain():
            size = 0
            with os.fdopen(read, "rb") as f:
                while chunk := f.read(1 << 16):
                    size += len(chunk)
                    if size <= MAX_VERDICTS:
                        chunks.append(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            proc = reaper.run(argv, iso.timeout, json.dumps(spec).encode(), cwd=cwd, env=env, pass_fds=(write,))
        finally:
            os.close(write)
            reader.join(timeout=30)
        text = b"".join(chunks)
        if proc.returncode != 0 or not text:
            raise RuntimeError(f"replay failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-1500:]}")
        if len(text) >= MAX_VERDICTS:
            raise RuntimeError("replay verdicts too large")
        return json.loads(text)


def precompute(submission: Path, iso: Isolation) -> tuple[str | None, str | None]:
    """The saved run of ``submission`` evaluated once on the three splits, by instructor code
    confined as the replay is (``lab_utils.eval_memo``): (the JSON that the kernels and the
    replay get in ``TP3_EVAL_MEMO``, None), or (None, why not) when it cannot be evaluated
    (no training notebook or run: (None, None)); the kernel and the replay then evaluate it
    themselves, as without it. At most ``PRECOMPUTE_S`` seconds."""
    if not (submission / "tp3_run").is_dir() or not (submission / "tp3_partie2.ipynb").is_file():
        return None, None
    try:
        out = run_replay({"precompute": True}, submission, replace(iso, timeout=min(iso.timeout, PRECOMPUTE_S)))
        memo = out.get("memo")
    except Exception as err:  # noqa: BLE001 (never worse than not evaluating beforehand)
        return None, f"{type(err).__name__}: {str(err)[-200:]}"
    if not isinstance(memo, dict) or not memo or len(memo) > MEMO_ENTRIES:
        return None, str(out.get("error") or "no result")[:300]
    text = json.dumps(memo)
    return (text, None) if len(text) <= 4096 else (None, "result too large")


def _message(verdicts: dict, gid: str) -> str | None:
    """None if ``gid`` passed in the replay, else the French reason."""
    verdict = verdicts.get(gid)
    if not isinstance(verdict, dict):
        return "ce test n'a pas pu être rejoué"
    if verdict.get("ok") is True:
        return None
    return str(verdict.get("message") or "échec")[:500]


def verify_notebook(gb, source_root: Path, submission: Path, sub_nb, nb, iso: Isolation) -> Outcome:
    """Check every test cell of one graded notebook that scored; withdraw in ``gb`` (and
    explain in ``nb``) what does not hold."""
    from autograder.notes import META_KEY, WITHDRAWN, add_note, cell_id, error_output

    meta = nb.metadata.get(META_KEY, {})
    scored = {g.name: g for g in sub_nb.grades if g.cell_type == "code" and (g.auto_score or 0) > 0}
    outcome = Outcome(checked=len(scored))
    if not scored:
        return outcome
    spec = replay_spec(gb, source_root, sub_nb.name, meta.get("answers", {}))
    started = time.monotonic()
    try:
        verdicts = run_replay(spec, submission, iso)
        outcome.instructor_errors = [e for e in verdicts.get("_instructor_errors", []) if isinstance(e, dict)]
        # the first failing instructor cell tells whose fault it is: the student's run folder
        # (missing, mismatched: the cells after it fail in turn) or the grader's environment
        errors = outcome.instructor_errors
        broken = errors if errors and not errors[0].get("lab_error") else []
        if broken:
            outcome.error = "instructor cells failed in the replay (grader environment?): " + "; ".join(
                f"{e.get('cell')}: {e.get('type')}: {str(e.get('message'))[:200]}" for e in broken[:3])
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as err:
        outcome.error = str(err)[-800:]
        verdicts = {}
    for gid, grade in scored.items():
        reason = _message(verdicts, gid)
        if outcome.error:
            reason = ("la vérification indépendante n'a pas pu être faite (erreur de la correction ; votre "
                      "enseignant est prévenu)")
        if reason is None:
            continue
        message = (f"Points retirés par la vérification indépendante (faite hors de votre noyau, à partir de vos "
                   f"réponses et de votre dossier tp3_run/) : {reason.rstrip('. ')}.")
        grade.auto_score, grade.needs_manual_grade = 0.0, False
        outcome.withdrawn[gid] = reason
        for cell in nb.cells:
            if cell_id(cell) == gid and cell.cell_type == "code":
                cell.outputs.append(error_output(WITHDRAWN, message))
        add_note(nb, f"La cellule de test « {gid} » : {message}")
    gb.db.commit()
    meta["verification"] = {"seconds": round(time.monotonic() - started, 1), "checked": sorted(scored),
                            "withdrawn": outcome.withdrawn, "error": outcome.error,
                            "instructor_errors": outcome.instructor_errors}
    nb.metadata[META_KEY] = meta
    return outcome


def verify_submission(course: Path, student: str, iso: Isolation, source_root: Path | None = None) -> dict:
    """Verify every graded notebook of ``student`` in the course folder ``course`` (the
    submission's private workspace while grading). Returns {notebook: Outcome}."""
    import nbformat
    from nbgrader.api import MissingEntry

    from autograder.gradebook import open_gradebook
    from autograder.notes import META_KEY

    report: dict = {}
    with open_gradebook(course / "gradebook.db") as gb:
        try:
            submission = gb.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            return report
        for sub_nb in submission.notebooks:
            path = course / "autograded" / student / ASSIGNMENT / f"{sub_nb.name}.ipynb"
            if not path.exists():
                continue
            nb = nbformat.read(str(path), as_version=4)
            if not nb.metadata.get(META_KEY, {}).get("complete"):
                continue  # not graded to the end: its tests are zero anyway
            report[sub_nb.name] = verify_notebook(gb, source_root or course, course / "submitted" / student /
                                                  ASSIGNMENT, sub_nb, nb, iso)
            nbformat.write(nb, str(path))
    return report
