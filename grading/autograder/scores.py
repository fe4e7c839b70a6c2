"""Read-only views of the gradebook's automatic scores, as plain values (for the class
overview and the same-loss warning)."""

from __future__ import annotations

from pathlib import Path

from autograder import ASSIGNMENT
from autograder.gradebook import open_gradebook, test_grades


def _gradebook(root: Path):
    return open_gradebook(Path(root) / "gradebook.db")


def test_cells(root: Path) -> list[tuple[str, str, float]]:
    """(notebook, test cell, points) of every autograded test cell, in the order of the
    instructor's notebooks."""
    from autograder.repair import source_order

    cells = []
    with _gradebook(root) as gb:
        for nb in sorted(gb.find_assignment(ASSIGNMENT).notebooks, key=lambda n: n.name):
            solutions = {c.name for c in nb.solution_cells}
            tests = {c.name: c.max_score for c in nb.grade_cells if c.cell_type == "code" and c.name not in solutions}
            order = {gid: i for i, gid in enumerate(source_order(root, ASSIGNMENT, nb.name))}
            cells += [(nb.name, gid, tests[gid]) for gid in sorted(tests, key=lambda g: (order.get(g, len(order)), g))]
    return cells


def test_scores(root: Path) -> dict[str, dict[str, tuple[float | None, float]]]:
    """{student: {test cell: (automatic score or None, points)}} for every submission."""
    out: dict = {}
    with _gradebook(root) as gb:
        for sub in gb.assignment_submissions(ASSIGNMENT):
            out[sub.student.id] = {g.name: (g.auto_score, g.max_score) for nb in sub.notebooks for g in test_grades(nb)}
    return out


def totals(root: Path) -> dict[str, dict]:
    """{student: {"auto", "auto_max", "score", "max", "needs_manual"}} for every submission:
    automatic points, then every point graded so far (automatic and manual)."""
    out = {}
    with _gradebook(root) as gb:
        for sub in gb.assignment_submissions(ASSIGNMENT):
            out[sub.student.id] = {"auto": sub.code_score, "auto_max": sub.max_code_score, "score": sub.score,
                                   "max": sub.max_score, "needs_manual": bool(sub.needs_manual_grade)}
    return out
