"""Trusted re-verification of the test cells that scored, outside the student's kernel.

Hidden tests run inside the student's kernel, after the student's code: a student can make
a failing test pass there (monkeypatching ``lab_utils.grading.check``, builtins, IPython's
``run_cell``, swallowing exceptions, ...). So after nbgrader, every test cell that scored
is checked again here, in a fresh process that runs no student code:

1. the namespace is rebuilt by running, in order, the notebook's locked instructor cells
   (from the gradebook) in a copy of the student's own files (``tp3_run/``: safetensors and
   JSON, read by lab_utils, never unpickled);
2. before each test cell, the answers that test read in the student's kernel (recorded by
   ``execute.GraderExecute``; values only, see ``answers``) are put in the namespace;
3. the test cell's code, hidden tests included, runs as is (no copy of the test logic).

A test cell keeps its points only if it passes here too. Otherwise its points are
withdrawn (gradebook ``auto_score`` = 0) and the graded notebook says why (an error output
in the cell and a line in the note at the top), in French. If the check itself cannot run
(crash, time limit), the points it could not confirm are withdrawn too (fail closed) and
the instructor is warned.

    python -m autograder.verify --root COURSE STUDENT...     (what course.py autograde runs)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder import ASSIGNMENT

GRADING_DIR = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- replay (child)

def replay(spec: dict) -> dict:
    """Run the locked cells and the test cells of ``spec`` in order; verdict per test cell."""
    from autograder.answers import ClaimError, decode_answers

    os.environ["NBGRADER_EXECUTION"] = "autograde"
    os.environ["TP3_PROGRESS"] = "0"
    os.environ.setdefault("MPLBACKEND", "Agg")
    ns: dict = {"__name__": "__main__"}
    verdicts: dict = {}
    sink = io.StringIO()
    for cell in spec["cells"]:
        gid = cell["grade_id"]
        test = cell["kind"] == "test"
        if cell["names"]:
            if cell.get("answers") is None and test:
                verdicts[gid] = {"ok": False, "why": "unavailable",
                                 "message": "vos réponses n'ont pas pu être relevées juste avant ce test"}
                continue
            try:
                if cell.get("answers") is not None:
                    ns.update(decode_answers(cell["answers"]))
            except ClaimError as err:
                if test:
                    verdicts[gid] = {"ok": False, "why": "unreadable",
                                     "message": f"vos réponses relevées avant ce test sont illisibles ({err})"}
                    continue
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                exec(compile(_python(cell["source"]), f"<{gid}>", "exec"), ns)  # instructor code only
        except BaseException as err:  # noqa: BLE001 (SystemExit, KeyboardInterrupt included)
            if cell["kind"] == "test":
                verdicts[gid] = {"ok": False, "why": "failed", "message": f"{type(err).__name__} : {err}"[:500]}
            else:
                verdicts.setdefault("_instructor_errors", []).append(f"{gid}: {type(err).__name__}: {err}"[:300])
            continue
        if cell["kind"] == "test":
            verdicts[gid] = {"ok": True}
        sink.seek(0)
        sink.truncate()
    return verdicts


def _python(source: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001
        return source


# ----------------------------------------------------------------------------- grader (parent)

MAX_FILE = 256 << 20  # larger files are not copied for the replay (tp3_run/ holds a few MB)


def _submission_files(folder: Path, dest: Path) -> None:
    """Copy the student's own files (not notebooks, no symlinks) for the replay to read."""
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_symlink() or any(part.endswith(".ipynb") for part in rel.parts) or ".ipynb_checkpoints" in rel.parts:
            continue
        if path.is_file() and path.stat().st_size > MAX_FILE:
            continue
        if path.is_dir():
            (dest / rel).mkdir(parents=True, exist_ok=True)
        elif path.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest / rel)


def _spec(gb, root: Path, notebook: str, answers: dict) -> dict:
    from autograder.answers import answer_names
    from autograder.repair import Reference, source_order

    ref = Reference.from_gradebook(gb, notebook, ASSIGNMENT, source_order(root, ASSIGNMENT, notebook))
    cells, plain = [], []
    for r in ref.cells:
        meta = r["nbgrader"]
        if r["cell_type"] != "code" or not meta["locked"] or meta["solution"]:
            continue
        test = bool(meta["grade"])
        cells.append({"grade_id": r["grade_id"], "kind": "test" if test else "locked", "source": r["source"]})
        plain.append({"grade_id": r["grade_id"], "cell_type": "code", "source": r["source"], "locked": True})
    names = answer_names(plain)
    for cell in cells:
        cell["names"] = names.get(cell["grade_id"], [])
        cell["answers"] = answers.get(cell["grade_id"])
    return {"cells": cells}


def _run_replay(spec: dict, files: Path, timeout: float, memory_mb: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="tp3-verify-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        _submission_files(files, work)
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        out = Path(tmp) / "verdicts.json"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(GRADING_DIR), *filter(None, [env.get("PYTHONPATH")])])
        env["MPLBACKEND"] = "Agg"

        def limits():
            if memory_mb:
                resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        proc = subprocess.run([sys.executable, "-m", "autograder.verify", "--replay", str(Path(tmp) / "spec.json"),
                               str(out)], cwd=work, env=env, preexec_fn=limits, timeout=timeout,
                              capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"replay failed ({proc.returncode}): {proc.stderr[-1500:]}")
        return json.loads(out.read_text())


def verify_student(root: Path, student: str, timeout: float = 1800, memory_mb: int = 8192) -> dict:
    """Check every test cell of ``student`` that scored; withdraw what does not hold.

    Returns {notebook: {"checked": n, "withdrawn": {grade_id: message}, "error": str|None}}.
    """
    import nbformat
    from nbgrader.api import Gradebook, MissingEntry

    from autograder.notes import META_KEY, add_note, cell_id, error_output

    report: dict = {}
    db_url = f"sqlite:///{root / 'gradebook.db'}"
    with Gradebook(db_url) as gb:
        try:
            submission = gb.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            return report
        for sub_nb in submission.notebooks:
            path = root / "autograded" / student / ASSIGNMENT / f"{sub_nb.name}.ipynb"
            if not path.exists():
                continue
            nb = nbformat.read(str(path), as_version=4)
            meta = nb.metadata.get(META_KEY, {})
            if not meta.get("complete"):
                continue  # not graded to the end: course.py gives its tests zero anyway
            scored = {g.name: g for g in sub_nb.grades if g.cell_type == "code" and (g.auto_score or 0) > 0}
            entry = {"checked": len(scored), "withdrawn": {}, "error": None}
            report[sub_nb.name] = entry
            if not scored:
                continue
            spec = _spec(gb, root, sub_nb.name, meta.get("answers", {}))
            started = time.monotonic()
            try:
                verdicts = _run_replay(spec, root / "submitted" / student / ASSIGNMENT, timeout, memory_mb)
            except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as err:
                entry["error"] = str(err)[-800:]
                verdicts = {gid: {"ok": False, "why": "error", "message": "la vérification indépendante n'a pas pu "
                                  "être faite (erreur de la correction ; votre enseignant est prévenu)"}
                            for gid in scored}
            for gid, grade in scored.items():
                verdict = verdicts.get(gid, {"ok": False, "message": "ce test n'a pas pu être rejoué"})
                if verdict.get("ok"):
                    continue
                message = (f"Points retirés : ce test passait dans votre noyau, mais la vérification indépendante "
                           f"(hors de votre noyau, sur vos réponses) échoue : {verdict['message'].rstrip('. ')}.")
                grade.auto_score = 0.0
                grade.needs_manual_grade = False
                entry["withdrawn"][gid] = verdict["message"]
                for cell in nb.cells:
                    if cell_id(cell) == gid and cell.cell_type == "code":
                        cell.outputs.append(error_output("VerificationEchouee", message))
                add_note(nb, f"La cellule de test « {gid} » : {message}")
            gb.db.commit()
            meta["verification"] = {"seconds": round(time.monotonic() - started, 1), "checked": sorted(scored),
                                    "withdrawn": entry["withdrawn"], "error": entry["error"],
                                    "instructor_errors": verdicts.get("_instructor_errors", [])}
            nb.metadata[META_KEY] = meta
            nbformat.write(nb, str(path))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replay", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=GRADING_DIR)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per notebook")
    parser.add_argument("--memory-mb", type=int, default=8192)
    parser.add_argument("students", nargs="*")
    args = parser.parse_args(argv)
    if args.replay:
        spec = json.loads(Path(args.replay[0]).read_text())
        Path(args.replay[1]).write_text(json.dumps(replay(spec)))
        return 0
    status = 0
    for student in args.students:
        report = verify_student(args.root.resolve(), student, args.timeout, args.memory_mb)
        for notebook, entry in report.items():
            print(f"verify {student}/{notebook}: {entry['checked']} test(s) checked, "
                  f"{len(entry['withdrawn'])} withdrawn" + (f", ERROR: {entry['error']}" if entry["error"] else ""),
                  flush=True)
            for gid, message in entry["withdrawn"].items():
                print(f"    {gid}: {message}", flush=True)
            status = status or (3 if entry["error"] else 0)
    return status


if __name__ == "__main__":
    if str(GRADING_DIR) not in sys.path:
        sys.path.insert(0, str(GRADING_DIR))
    sys.exit(main())
