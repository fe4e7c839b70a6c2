"""The gradebooks of a grading run: the course's, written by the grader's parent process
alone, and each submission's private copy, which nbgrader fills while grading it.

A submission is graded in a workspace of its own (``workspace.py``) whose gradebook holds
the assignment and that one student only; once its grading is over (nbgrader, zeros for
what did not finish, the re-verification), :func:`transfer` copies that student's
automatic scores into the course's gradebook, keeping the instructor's manual grades.
Parallel gradings therefore never write the same database, and nothing a submission's
grading does can reach another student's rows.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from autograder import ASSIGNMENT


def open_gradebook(db: Path):
    """The nbgrader gradebook in the SQLite file ``db`` (a context manager)."""
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{db}")


def test_grades(notebook) -> list:
    """The grades of a submitted notebook's test cells (code cells that are not answers)."""
    solutions = {c.name for c in notebook.notebook.solution_cells}
    return [g for g in notebook.grades if g.cell_type == "code" and g.name not in solutions]


def make_template(course_db: Path, dest: Path) -> None:
    """``dest``: the course's gradebook without any student (a consistent copy, taken with
    SQLite's backup API even if the course's gradebook is being written)."""
    src, out = sqlite3.connect(course_db), sqlite3.connect(dest)
    try:
        src.backup(out)
    finally:
        src.close()
        out.close()
    with open_gradebook(dest) as gb:
        for student in [s.id for s in gb.students]:
            gb.remove_student(student)


def private_copy(template: Path, dest: Path, student: str) -> None:
    """A gradebook for grading ``student`` alone."""
    shutil.copyfile(template, dest)
    with open_gradebook(dest) as gb:
        gb.update_or_create_student(student)


def _scores(db: Path, student: str) -> dict | None:
    from nbgrader.api import MissingEntry

    with open_gradebook(db) as gb:
        try:
            sub = gb.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            return None
        return {"timestamp": sub.timestamp.isoformat() if sub.timestamp else None,
                "notebooks": {nb.name: {"late": nb.late_submission_penalty,
                                        "grades": {g.name: (g.auto_score, g.max_score) for g in nb.grades},
                                        "comments": {c.name: c.auto_comment for c in nb.comments}}
                              for nb in sub.notebooks}}


def transfer(private_db: Path, course_db: Path, student: str) -> None:
    """Copy ``student``'s automatic scores, comments, timestamp and late penalties from the
    private gradebook into the course's (scores outside [0, max] are refused as 0)."""
    scores = _scores(private_db, student)
    if scores is None:
        raise RuntimeError(f"no submission of {student} in the private gradebook")
    with open_gradebook(course_db) as gb:
        gb.update_or_create_student(student)
        kwargs = {"timestamp": scores["timestamp"]} if scores["timestamp"] else {}
        submission = gb.update_or_create_submission(ASSIGNMENT, student, **kwargs)
        for nb in submission.notebooks:
            data = scores["notebooks"].get(nb.name, {"late": None, "grades": {}, "comments": {}})
            nb.late_submission_penalty = data["late"]
            for grade in nb.grades:
                auto, _ = data["grades"].get(grade.name, (None, None))
                if auto is not None and not 0 <= auto <= (grade.max_score or 0):
                    auto = 0.0
                grade.auto_score = auto
                grade.needs_manual_grade = grade.manual_score is not None or auto is None
            for comment in nb.comments:
                comment.auto_comment = data["comments"].get(comment.name)
        gb.db.commit()


def auto_score(db: Path, student: str) -> tuple[float, float]:
    """(automatic points, automatic maximum) of ``student`` in the gradebook ``db``."""
    from nbgrader.api import MissingEntry

    with open_gradebook(db) as gb:
        try:
            sub = gb.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            return 0.0, 0.0
        return sum(nb.code_score for nb in sub.notebooks), sum(nb.max_code_score for nb in sub.notebooks)


def test_scores(db: Path, student: str) -> dict[str, dict[str, float | None]]:
    """{notebook: {test cell: automatic score}} of ``student``."""
    from nbgrader.api import MissingEntry

    with open_gradebook(db) as gb:
        try:
            sub = gb.find_submission(ASSIGNMENT, student)
        except MissingEntry:
            return {}
        return {nb.name: {g.name: g.auto_score for g in test_grades(nb)} for nb in sub.notebooks}


def withdraw_all(db: Path, student: str) -> None:
    """Fail closed: no automatic point stands unverified."""
    with open_gradebook(db) as gb:
        for sub_nb in gb.find_submission(ASSIGNMENT, student).notebooks:
            for grade in test_grades(sub_nb):
                if (grade.auto_score or 0) > 0:
                    grade.auto_score, grade.needs_manual_grade = 0.0, False
        gb.db.commit()
