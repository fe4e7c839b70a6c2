"""Before ``course.py samples``, ``autograde`` or ``feedback`` touches anyone's work: is this
machine ready for that command? Checked without any network access.

A command that grades with a broken environment (no data, no tokenizer, the wrong weights)
gives every student the same wrong zeros, which look like weak students. So each command first
checks what it needs: nbgrader, the course's configuration and sources, the gradebook and the
release when it reads them, the submissions, and the lab's data, tokenizer and weights for the
profile in use (``lab_utils.preflight``); anything missing stops it with one message that
lists every missing piece and what provides it.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from autograder import ASSIGNMENT

GRADEBOOK = "gradebook.db"
COURSE = "python grading/course.py"
NEEDS_LAB = ("samples", "autograde")  # the commands that run notebooks
NEEDS_GRADEBOOK = ("autograde", "feedback", "export", "overview")


@dataclass(frozen=True)
class Problem:
    what: str  # what is missing or wrong, with where it was looked for
    fixes: tuple[str, ...] = ()  # commands or variables that provide it

    def __str__(self) -> str:
        return "\n".join([f"  - {self.what}", *(f"      -> {fix}" for fix in self.fixes)])


def problems(root: Path, command: str, students: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Every problem that would make ``command`` grade wrongly or fail half-way (rendered,
    one entry per missing piece; the lab's own pieces in French, as ``lab_utils`` says them)."""
    found: list = []
    if importlib.util.find_spec("nbgrader") is None:
        found.append(Problem(f"nbgrader is not installed for {sys.executable}",
                             ('pip install -e ".[lab]"  (or: python3 dev.py test, then . .venv/bin/activate)',)))
    if not (root / "nbgrader_config.py").is_file():
        found.append(Problem(f"{root / 'nbgrader_config.py'} not found: {root} is not the course folder",
                             ("--root grading/  (or the copy of the course you grade in)",)))
    if not sorted((root / "source" / ASSIGNMENT).glob("*.ipynb")):
        found.append(Problem(f"no instructor notebook in {root / 'source' / ASSIGNMENT}",
                             ("git checkout grading/source  (the course's sources)",)))
    if command in NEEDS_GRADEBOOK:
        found += _gradebook(root)
    if command == "autograde":
        if not sorted((root / "release" / ASSIGNMENT).glob("*.ipynb")):
            found.append(Problem(f"no release in {root / 'release' / ASSIGNMENT}", (f"{COURSE} generate",)))
        found += _submissions(root, "submitted", students,
                              (f"{COURSE} collect --zips DIR", f"{COURSE} samples"))
    if command == "feedback":
        found += _submissions(root, "autograded", students, (f"{COURSE} autograde",))
    rendered = [str(p) for p in found]
    if command in NEEDS_LAB:
        rendered += _lab()
    return rendered


def _gradebook(root: Path) -> list[Problem]:
    path = root / GRADEBOOK
    generate = (f"{COURSE} generate",)
    if not path.is_file():
        return [Problem(f"no gradebook: {path} not found", generate)]
    try:  # read-only and without nbgrader's Gradebook, which would create or migrate the database
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            if not db.execute("SELECT 1 FROM assignment WHERE name = ?", (ASSIGNMENT,)).fetchall():
                return [Problem(f"the gradebook {path} has no assignment {ASSIGNMENT!r}", generate)]
    except sqlite3.Error as err:  # a corrupt or locked database: say so, do not crash
        return [Problem(f"the gradebook {path} cannot be read ({type(err).__name__}: {err})",
                        (f"restore it from a backup, or rerun {COURSE} generate in a fresh course",))]
    return []


def _submissions(root: Path, stage: str, students, fixes: tuple[str, ...]) -> list[Problem]:
    folder = root / stage
    present = {p.name for p in folder.iterdir() if p.is_dir()} if folder.is_dir() else set()
    if not present:
        return [Problem(f"no submission in {folder}", fixes)]
    absent = [s for s in students if s not in present]
    if absent:
        return [Problem(f"not in {folder}: {', '.join(absent)}", fixes)]
    return []


def _lab() -> list[str]:
    """The lab's pieces for the profile in use, as ``python -m lab_utils check --grading`` says them."""
    try:
        from lab_utils.preflight import check, describe
    except ImportError as err:
        return [str(Problem(f"lab_utils cannot be imported by {sys.executable} ({err})", ('pip install -e ".[lab]"',)))]
    return [describe(p) for p in check(suggest_ci=False) if not p.ok]


def message(command: str, found: list[str]) -> str:
    profile = os.environ.get("TP3_PROFILE") or "full"
    return "\n".join([
        f"course.py {command}: stopped before grading anyone, {len(found)} missing "
        f"piece{'s' if len(found) > 1 else ''} (profile {profile}; nothing was downloaded):",
        *found,
        "Grade with the profile the students trained with (TP3_PROFILE). "
        "`python -m lab_utils check --grading` checks the lab's part alone.",
    ])


def require(root: Path, command: str, students: tuple[str, ...] | list[str] = ()) -> None:
    """Exit (status 2) with one message listing every missing piece, or return."""
    found = problems(Path(root), command, students)
    if found:
        print(message(command, found), file=sys.stderr, flush=True)
        raise SystemExit(2)
