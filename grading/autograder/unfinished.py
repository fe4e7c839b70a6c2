"""Notebooks that could not be graded to the end get zero for their tests, and say why.

Two cases: a notebook that is not a notebook (set aside before nbgrader, which would
otherwise reject the whole submission), and a notebook whose grading was cut (the wall
clock, an nbgrader error). Either way its test cells score zero and the graded notebook,
where the feedback reads it, explains it in French; nothing stale survives from an
earlier grading.
"""

from __future__ import annotations

from pathlib import Path

from autograder import ASSIGNMENT
from autograder.gradebook import open_gradebook, test_grades

UNREADABLE_SUFFIX = ".illisible"


def set_aside_unreadable(folder: Path) -> list[str]:
    """Rename each notebook of ``folder`` that is not a readable notebook to
    ``<name>.ipynb.illisible``, so that nbgrader grades the others; returns their names."""
    import nbformat

    names = []
    for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
        try:
            nb = nbformat.read(str(path), as_version=4)  # schema problems only warn: repair handles them
            if not isinstance(nb.get("cells"), list):
                raise ValueError("no list of cells")
        except Exception:  # noqa: BLE001 (any reason: JSON, nbformat version, encoding)
            path.rename(path.with_name(path.name + UNREADABLE_SUFFIX))
            names.append(path.stem)
    return names


def _release_copy(release: Path, name: str, note: str, test_message: str):
    """The release notebook ``name``, its test cells failed with ``test_message``."""
    import nbformat

    from autograder.notes import META_KEY, UNREADABLE, add_note, error_output, is_test_cell

    nb = nbformat.read(str(release / f"{name}.ipynb"), as_version=4)
    for cell in nb.cells:
        if is_test_cell(cell):
            cell.outputs = [error_output(UNREADABLE, test_message)]
    add_note(nb, note)
    nb.metadata.setdefault(META_KEY, {})["complete"] = False
    return nb


def zero_unfinished(db: Path, source: Path, submitted: Path, graded: Path, release: Path, student: str,
                    reason: str) -> list[str]:
    """Zero (explained) for every notebook of ``student`` not graded to the end. ``db``: the
    gradebook; ``source``: the course folder holding ``source/``; ``submitted``/``graded``:
    the submission's and the graded notebooks' folders; ``release``: the release notebooks.
    Returns the names of the notebooks cut short."""
    import nbformat

    from autograder.notes import INTERRUPTED, META_KEY, add_note, error_output, is_test_cell
    from autograder.repair import Reference, repair_notebook, source_order

    cut = []
    with open_gradebook(db) as gb:
        gb.update_or_create_student(student)
        submission = gb.update_or_create_submission(ASSIGNMENT, student)
        for sub_nb in submission.notebooks:
            out = graded / f"{sub_nb.name}.ipynb"
            nb = None
            if out.exists():
                try:
                    nb = nbformat.read(str(out), as_version=4)
                except Exception:  # noqa: BLE001
                    nb = None
            if nb is not None and nb.metadata.get(META_KEY, {}).get("complete"):
                continue
            mine = submitted / f"{sub_nb.name}.ipynb"
            if not mine.exists():
                for grade in sub_nb.grades:  # nbgrader's rule for a missing notebook
                    grade.auto_score, grade.needs_manual_grade = 0.0, False
                if mine.with_name(mine.name + UNREADABLE_SUFFIX).exists():
                    nb = _release_copy(release, sub_nb.name,
                                       "Votre notebook est illisible (ce n'est pas un notebook Jupyter valide, "
                                       "fichier abîmé ?) : il n'a pas pu être corrigé et vaut 0. La version "
                                       "distribuée est montrée ici à sa place.",
                                       "ce test n'a pas été exécuté : votre notebook est illisible.")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    nbformat.write(nb, str(out))
                continue
            cut.append(sub_nb.name)
            for grade in test_grades(sub_nb):
                grade.auto_score, grade.needs_manual_grade = 0.0, False
            ref = Reference.from_gradebook(gb, sub_nb.name, ASSIGNMENT, source_order(source, ASSIGNMENT, sub_nb.name))
            said = []
            if nb is None:
                try:
                    nb = nbformat.read(str(mine), as_version=4)
                    said = repair_notebook(nb, ref)
                except Exception:  # noqa: BLE001 (unreadable: show the release instead)
                    nb = nbformat.read(str(release / f"{sub_nb.name}.ipynb"), as_version=4)
                    said = ["Votre notebook est illisible (ce n'est pas un notebook valide) : la version "
                            "distribuée est montrée à la place."]
            for cell in nb.cells:
                if is_test_cell(cell):
                    cell.outputs = [error_output(INTERRUPTED, f"ce test n'a pas été exécuté : {reason}.")]
            for line in said:
                add_note(nb, line)
            add_note(nb, f"La correction automatique de ce notebook n'a pas pu aller au bout ({reason}) : ses "
                         "cellules de test valent 0. Votre enseignant en est informé.")
            nb.metadata.setdefault(META_KEY, {})["complete"] = False
            out.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, str(out))
        gb.db.commit()
    return cut


def what_happened(graded: Path) -> list[str]:
    """Repairs and incidents recorded in the graded notebooks, for the summary."""
    import json

    said = []
    for path in sorted(graded.glob("*.ipynb")) if graded.is_dir() else []:
        try:
            meta = json.loads(path.read_text()).get("metadata", {}).get("tp3_grading", {})
        except (OSError, ValueError):
            continue
        counts = [f"{len(meta[key])} {label}" for key, label in (("repairs", "repair(s)"), ("incidents", "incident(s)"))
                  if meta.get(key)]
        if counts:
            said.append(f"{path.stem}: {', '.join(counts)}")
    return said
