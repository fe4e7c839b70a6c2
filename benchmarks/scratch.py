"""A scratch copy of the course with submissions, for the grading benchmarks.

Not a benchmark: ``scratch_course`` generates the release of the course's sources in a
temporary folder; ``executed_solutions`` runs the solution notebooks as a student would
(training once, writing tp3_run/); ``autograde`` runs the instructor's real command and
``scores`` reads the result back from the gradebook, so that a benchmark whose workload
went wrong (a sample scoring less than expected) stops instead of printing a time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COURSE_PY = REPO / "grading" / "course.py"
sys.path.insert(0, str(REPO / "grading"))
import course  # noqa: E402


def scratch_course(folder: Path) -> Path:
    root = folder / "course"
    root.mkdir()
    shutil.copy2(REPO / "grading" / "nbgrader_config.py", root)
    shutil.copytree(REPO / "grading" / "source", root / "source")
    subprocess.run([sys.executable, str(COURSE_PY), "--root", str(root), "generate", "--no-copy"], check=True,
                   capture_output=True)
    return root


def executed_solutions(root: Path, folder: Path, notebooks: tuple[str, ...] = ("tp3_partie1", "tp3_partie2")) -> float:
    """The solution notebooks in ``folder``, executed as a student would; returns seconds."""
    folder.mkdir(parents=True)
    for name in notebooks:
        shutil.copy2(root / "source" / "tp3" / f"{name}.ipynb", folder)
    start = time.perf_counter()
    course.execute_as_student(folder)
    return time.perf_counter() - start


def autograde(root: Path, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, str(COURSE_PY), "--root", str(root), "autograde", *args],
                         capture_output=True, text=True)
    return time.perf_counter() - start, out


def scores(root: Path, student: str, notebooks: tuple[str, ...] | None = None) -> dict[str, tuple[float, float]]:
    """{test cell: (automatic score, maximum)} of ``student`` (in ``notebooks``), from the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        sub = gb.find_submission("tp3", student)
        out = {}
        for nb in sub.notebooks:
            if notebooks and nb.name not in notebooks:
                continue
            solutions = {c.name for c in nb.notebook.solution_cells}
            out.update({g.name: (g.auto_score or 0.0, g.max_score) for g in nb.grades
                        if g.cell_type == "code" and g.name not in solutions})
        return out


def require_full_marks(root: Path, student: str, what: str, notebooks: tuple[str, ...] | None = None) -> None:
    got = scores(root, student, notebooks)
    lost = {k: v for k, v in got.items() if v[0] != v[1]}
    if lost:
        sys.exit(f"{what}: the sample {student} should have full marks, it lost {lost}: the workload went wrong, "
                 "no time is reported.")


def report(root: Path) -> dict:
    return json.loads((root / "reports" / "autograde.json").read_text())
