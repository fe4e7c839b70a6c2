"""Autograde one submission, whatever it does: nbgrader under a wall-clock limit, zero
(explained) for every notebook not graded to the end, then the trusted re-verification of what
scored. ``course.py autograde`` loops over the class with :func:`grade_submission`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from autograder import ASSIGNMENT


def _limits_args(args, scratch: str) -> list[str]:
    config = [f"--GraderKernelManager.scratch_dir={scratch}"]
    if args.cell_timeout:
        config.append(f"--Execute.timeout={args.cell_timeout}")
    if args.memory_mb is not None:
        config.append(f"--GraderKernelManager.memory_mb={args.memory_mb}")
    config.append(f"--GraderKernelManager.cpu_seconds={int(args.wall)}")
    if args.sandbox:
        config.append("--GraderKernelManager.sandbox=True")
    return config


def grade_submission(root: Path, student: str, args, env: dict) -> dict:
    """nbgrader autograde for one student under a wall-clock limit, then: zero (explained) for
    every notebook not graded to the end, and the trusted re-verification of what scored."""
    from autograder import verify

    start = time.perf_counter()
    status: list[str] = []
    folder = root / "submitted" / student / ASSIGNMENT
    removed = remove_symlinks(folder)
    if removed:
        status.append(f"{len(removed)} symlink(s) removed")
    unreadable = set_aside_unreadable(folder)
    if unreadable:
        status.append(f"unreadable: {', '.join(unreadable)}")
    shutil.rmtree(root / "autograded" / student / ASSIGNMENT, ignore_errors=True)  # no stale result
    with tempfile.TemporaryDirectory(prefix="tp3-grade-") as runtime:
        nb_args = ["autograde", ASSIGNMENT, "--student", student, "--force", *_limits_args(args, runtime)]
        print(f"+ (cd {root} && nbgrader {' '.join(nb_args)})", flush=True)
        proc = subprocess.Popen([sys.executable, "-m", "nbgrader", *nb_args], cwd=root, start_new_session=True,
                                env={**env, "JUPYTER_RUNTIME_DIR": runtime})
        try:
            rc = proc.wait(timeout=args.wall)
            reason = None if rc == 0 else "une erreur de la correction automatique"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # kernels follow (they die with their parent)
            proc.wait()
            rc, reason = None, f"la limite de temps de {args.wall:g} s pour tout le rendu a été atteinte"
            status.append(f"cut at {args.wall:g} s")
    failed = rc not in (0, None)
    if failed:
        status.append(f"nbgrader failed (exit {rc})")
    cut = zero_unfinished(root, student, reason or "une erreur de la correction automatique", removed)
    if cut:
        status.append(f"not graded to the end: {', '.join(cut)}")
    if not args.no_verify:
        try:
            report = verify.verify_student(root, student, timeout=args.wall,
                                           memory_mb=8192 if args.memory_mb is None else args.memory_mb)
        except Exception as err:  # noqa: BLE001 (fail closed: nothing unconfirmed keeps its points)
            report = {"*": {"checked": 0, "withdrawn": {}, "error": repr(err)}}
            withdraw_all(root, student, f"la vérification indépendante a échoué ({type(err).__name__})")
        for notebook, entry in report.items():
            if entry["withdrawn"]:
                status.append(f"{notebook}: verification withdrew {sorted(entry['withdrawn'])}")
            if entry["error"]:
                failed = True
                status.append(f"{notebook}: VERIFICATION ERROR {entry['error'][-300:]}")
    status += sanitize_graded(root, student)  # last step: what formgrader and the feedback render
    status += what_happened(root, student)
    score, maximum = auto_score(root, student)
    seconds = time.perf_counter() - start
    print(f"autograded {student} in {seconds:.1f} s: {score:g} / {maximum:g} automatic points"
          + (f" ({'; '.join(status)})" if status else ""), flush=True)
    return {"student": student, "score": score, "max": maximum, "seconds": seconds, "status": status,
            "failed": failed}


def sanitize_graded(root: Path, student: str) -> list[str]:
    """Every graded notebook of ``student`` made inert for HTML renderers (autograder/sanitize.py),
    in place; each change is logged, the summary counts the active content removed."""
    import nbformat

    from autograder.sanitize import sanitize_notebook

    status = []
    for path in sorted((root / "autograded" / student / ASSIGNMENT).glob("*.ipynb")):
        try:
            nb = nbformat.read(str(path), as_version=4)
            said = sanitize_notebook(nb)
            nbformat.write(nb, str(path))
        except Exception as err:  # noqa: BLE001 (fail closed: nothing unsanitised is left to render)
            path.rename(path.with_name(path.name + ".non-assaini"))
            status.append(f"{path.stem}: could not be sanitised ({type(err).__name__}), set aside")
            continue
        for line in said:
            print(f"  sanitize {student}/{path.name}: {line}", flush=True)
        active = [line for line in said if not line.startswith(("cell metadata removed", "notebook metadata removed"))]
        if active:
            status.append(f"{path.stem}: {len(active)} active or invalid item(s) made inert")
    return status


def what_happened(root: Path, student: str) -> list[str]:
    """Repairs and incidents recorded in the graded notebooks, for the summary."""
    said = []
    for path in sorted((root / "autograded" / student / ASSIGNMENT).glob("*.ipynb")):
        try:
            meta = json.loads(path.read_text()).get("metadata", {}).get("tp3_grading", {})
        except (OSError, ValueError):
            continue
        counts = [f"{len(meta[key])} {label}" for key, label in (("repairs", "repair(s)"), ("incidents", "incident(s)"))
                  if meta.get(key)]
        if counts:
            said.append(f"{path.stem}: {', '.join(counts)}")
    return said


def remove_symlinks(folder: Path) -> list[str]:
    """Symbolic links in a submission point outside it: nbgrader would copy their targets.
    They are deleted (the archives students hand in hold none)."""
    removed = []
    for path in sorted(folder.rglob("*"), reverse=True) if folder.is_dir() else []:
        if path.is_symlink():
            removed.append(str(path.relative_to(folder)))
            path.unlink()
    return removed


def set_aside_unreadable(folder: Path) -> list[str]:
    """A notebook that is not valid JSON / nbformat would make nbgrader reject the whole
    submission: it is renamed ``<name>.ipynb.illisible`` (kept for the record), so that
    nbgrader grades the other notebooks and gives this one zero (as a missing notebook)."""
    import nbformat

    names = []
    for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
        try:
            nb = nbformat.read(str(path), as_version=4)  # schema problems only warn: repair handles them
            if not isinstance(nb.get("cells"), list):
                raise ValueError("no list of cells")
        except Exception:  # noqa: BLE001 (any reason: JSON, nbformat version, encoding)
            path.rename(path.with_name(path.name + ".illisible"))
            names.append(path.stem)
    return names


def gradebook(root: Path):
    """The course's nbgrader gradebook (a context manager)."""
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{root / 'gradebook.db'}")


def _test_grades(gb, notebook) -> list:
    solutions = {c.name for c in notebook.notebook.solution_cells}
    return [g for g in notebook.grades if g.cell_type == "code" and g.name not in solutions]


def zero_unfinished(root: Path, student: str, reason: str, removed: list[str]) -> list[str]:
    """Every notebook nbgrader did not grade to the end (killed, failed) gets zero for its
    tests, with a graded notebook saying why (for the feedback). Returns their names."""
    import nbformat

    from autograder.notes import META_KEY, add_note, error_output, is_test_cell
    from autograder.repair import Reference, repair_notebook, source_order

    cut = []
    with gradebook(root) as gb:
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(ASSIGNMENT, student)
        for sub_nb in submission.notebooks:
            out = root / "autograded" / student / ASSIGNMENT / f"{sub_nb.name}.ipynb"
            nb = None
            if out.exists():
                try:
                    nb = nbformat.read(str(out), as_version=4)
                except Exception:  # noqa: BLE001
                    nb = None
            if nb is not None and nb.metadata.get(META_KEY, {}).get("complete"):
                if removed:
                    add_note(nb, f"Liens symboliques ignorés dans votre rendu : {', '.join(removed)}.")
                    nbformat.write(nb, str(out))
                continue
            submitted = root / "submitted" / student / ASSIGNMENT / f"{sub_nb.name}.ipynb"
            if not submitted.exists():
                for grade in sub_nb.grades:  # nbgrader's rule for a missing notebook
                    grade.auto_score, grade.needs_manual_grade = 0.0, False
                if submitted.with_name(submitted.name + ".illisible").exists():  # explain it in the feedback
                    nb = nbformat.read(str(root / "release" / ASSIGNMENT / f"{sub_nb.name}.ipynb"), as_version=4)
                    for cell in nb.cells:
                        if is_test_cell(cell):
                            cell.outputs = [error_output("NotebookIllisible", "ce test n'a pas été exécuté : "
                                                         "votre notebook est illisible.")]
                    add_note(nb, "Votre notebook est illisible (ce n'est pas un notebook Jupyter valide, "
                                 "fichier abîmé ?) : il n'a pas pu être corrigé et vaut 0. La version distribuée "
                                 "est montrée ici à sa place.")
                    nb.metadata.setdefault(META_KEY, {})["complete"] = False
                    out.parent.mkdir(parents=True, exist_ok=True)
                    nbformat.write(nb, str(out))
                continue
            cut.append(sub_nb.name)
            for grade in _test_grades(gb, sub_nb):
                grade.auto_score, grade.needs_manual_grade = 0.0, False
            ref = Reference.from_gradebook(gb, sub_nb.name, ASSIGNMENT, source_order(root, ASSIGNMENT, sub_nb.name))
            said = []
            if nb is None:
                try:
                    nb = nbformat.read(str(submitted), as_version=4)
                    said = repair_notebook(nb, ref)
                except Exception:  # noqa: BLE001 (unreadable: show the release instead)
                    nb = nbformat.read(str(root / "release" / ASSIGNMENT / f"{sub_nb.name}.ipynb"), as_version=4)
                    said = ["Votre notebook est illisible (ce n'est pas un notebook valide) : la version "
                            "distribuée est montrée à la place."]
            for cell in nb.cells:
                if is_test_cell(cell):
                    cell.outputs = [error_output("CorrectionInterrompue",
                                                 f"ce test n'a pas été exécuté : {reason}.")]
            for line in said:
                add_note(nb, line)
            add_note(nb, f"La correction automatique de ce notebook n'a pas pu aller au bout ({reason}) : ses "
                         "cellules de test valent 0. Votre enseignant en est informé.")
            nb.metadata.setdefault(META_KEY, {})["complete"] = False
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(out))
        gb.db.commit()
    return cut


def withdraw_all(root: Path, student: str, reason: str) -> None:
    """Fail closed: no automatic point stands unverified."""
    with gradebook(root) as gb:
        for sub_nb in gb.find_submission(ASSIGNMENT, student).notebooks:
            for grade in _test_grades(gb, sub_nb):
                if (grade.auto_score or 0) > 0:
                    grade.auto_score, grade.needs_manual_grade = 0.0, False
        gb.db.commit()
    print(f"WARNING: {student}: {reason}; automatic points withdrawn until it is rerun.", flush=True)


def auto_score(root: Path, student: str) -> tuple[float, float]:
    from nbgrader.api import MissingEntry

    with gradebook(root) as gb:
        try:
            sub = gb.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            return 0.0, 0.0
        return sum(nb.code_score for nb in sub.notebooks), sum(nb.max_code_score for nb in sub.notebooks)
