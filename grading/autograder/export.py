"""Grades out of the gradebook: ``grades.csv`` (nbgrader's columns) and a Moodle import file.

nbgrader's own CSV exporter joins values with commas without quoting (a comma in a name shifts
the columns), leaves a formula in a name as it is (a spreadsheet would run it), and writes an
empty timestamp when the gradebook has none. These files are written with the csv module, every
text field neutralised against formula injection, and a missing timestamp read from the
submission's ``timestamp.txt`` (what nbgrader reads when it autogrades).
"""

from __future__ import annotations

import csv
from pathlib import Path

from autograder import ASSIGNMENT

GRADES_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score")  # nbgrader export's
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")  # what spreadsheets read as a formula or a break


def out_of(text: str) -> float:
    """``--out-of``: a number > 0 (argparse type)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def safe_text(value) -> str:
    """``value`` as text a spreadsheet shows as text: a leading formula character gets a quote
    in front (OWASP's advice for CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def number(value: float) -> str:
    """A grade as CSV text: at most two decimals, a dot, no trailing zeros (16, 11.03)."""
    return f"{round(float(value), 2):.2f}".rstrip("0").rstrip(".")


def rows(root: Path) -> list[dict]:
    """One entry per student of the gradebook, as nbgrader's exporter computes it (score after
    the late penalty, never below 0; zero without a submission), plus ``submitted``,
    ``needs_manual`` (written answers not graded yet) and ``timestamp_from``."""
    from nbgrader.api import Gradebook, MissingEntry

    out = []
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        assignment = gb.find_assignment(ASSIGNMENT)
        for student in sorted(gb.students, key=lambda s: s.id):
            row = {"assignment": assignment.name, "duedate": assignment.duedate, "student_id": student.id,
                   "last_name": student.last_name, "first_name": student.first_name, "email": student.email,
                   "max_score": assignment.max_score, "timestamp": None, "timestamp_from": "",
                   "raw_score": 0.0, "late_submission_penalty": 0.0, "score": 0.0,
                   "submitted": False, "needs_manual": False}
            try:
                sub = gb.find_submission(ASSIGNMENT, student.id)
            except MissingEntry:
                out.append(row)
                continue
            penalty = sub.late_submission_penalty
            row.update(raw_score=sub.score, late_submission_penalty=penalty, score=max(0.0, sub.score - (penalty or 0.0)),
                       submitted=True, needs_manual=bool(sub.needs_manual_grade))
            row["timestamp"], row["timestamp_from"] = _timestamp(root, student.id, sub.timestamp)
            out.append(row)
    return out


def _timestamp(root: Path, student: str, recorded):
    """The submission time: the gradebook's, else the submission's timestamp.txt."""
    if recorded is not None:
        return recorded, "gradebook"
    path = root / "submitted" / student / ASSIGNMENT / "timestamp.txt"
    try:
        from nbgrader.utils import parse_utc

        return parse_utc(path.read_text().strip()), "timestamp.txt"
    except (OSError, ValueError, OverflowError):
        return None, ""


def _text(value) -> str:
    return "" if value is None else str(value)


def write_grades(root: Path, dest: Path) -> list[str]:
    """``dest`` with nbgrader export's columns and values; returns warnings (missing timestamps,
    manual grading not done, neutralised text)."""
    table = rows(root)
    with open(dest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(GRADES_COLUMNS)
        for r in table:
            writer.writerow([safe_text(r["assignment"]), _text(r["duedate"]), _text(r["timestamp"]),
                             safe_text(r["student_id"]), safe_text(r["last_name"]), safe_text(r["first_name"]),
                             safe_text(r["email"]), _text(r["raw_score"]), _text(r["late_submission_penalty"]),
                             _text(r["score"]), _text(r["max_score"])])
    return _warnings(table)


def write_moodle(root: Path, dest: Path, id_column: str = "Username", grade_column: str = "TP3",
                 out_of: float | None = None) -> list[str]:
    """A file for Moodle's grade import (Grades > Import > CSV file): the student's identifier
    (nbgrader's student id) under ``id_column``, the grade under ``grade_column``, rescaled to
    ``out_of`` when given. Students without a submission get an empty grade (Moodle then leaves
    their grade as it is). Comma-separated, UTF-8, dot decimals (see docs/grading.md)."""
    if out_of is not None and not out_of > 0:
        raise ValueError(f"out_of must be a number > 0, got {out_of}")
    table = rows(root)
    with open(dest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([safe_text(id_column), safe_text(grade_column)])
        for r in table:
            if not r["submitted"]:
                grade = ""
            elif out_of is None:
                grade = number(r["score"])
            else:
                grade = number(r["score"] * out_of / r["max_score"]) if r["max_score"] else "0"
            writer.writerow([safe_text(r["student_id"]), grade])
    return _warnings(table)


def _warnings(table: list[dict]) -> list[str]:
    said = []
    no_time = [r["student_id"] for r in table if r["submitted"] and r["timestamp"] is None]
    if no_time:
        said.append(f"no submission time for {', '.join(map(safe_text, no_time))} (neither in the gradebook nor "
                    f"in submitted/<id>/{ASSIGNMENT}/timestamp.txt): their timestamp is empty")
    manual = [r["student_id"] for r in table if r["needs_manual"]]
    if manual:
        said.append(f"{len(manual)} submission(s) still need manual grading (formgrader): their score counts only "
                    f"what is graded so far: {', '.join(map(safe_text, manual))}")
    missing = [r["student_id"] for r in table if not r["submitted"]]
    if missing:
        said.append(f"no submission for {', '.join(map(safe_text, missing))}")
    risky = [r["student_id"] for r in table
             if any(_text(r[k]).startswith(FORMULA_START) for k in ("student_id", "last_name", "first_name", "email"))]
    if risky:
        said.append(f"text starting like a spreadsheet formula was prefixed with ' for {', '.join(map(safe_text, risky))}")
    return said
