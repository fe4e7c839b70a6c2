"""Student identifiers: the one place that decides which names may reach nbgrader.

A student id becomes a folder name (``submitted/<id>/``), an nbgrader ``--student``
argument (which nbgrader reads as a glob pattern) and a gradebook key. It therefore comes
only from places the instructor controls (the archive's file name, the exchange's
authenticated owner, the gradebook) and must match :data:`PATTERN`: letters, digits,
``_``, ``.``, ``-``; no glob character, no separator, not ``.`` or ``..``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_LENGTH = 64


class BadStudentId(ValueError):
    """A name that may not be used as a student id."""


def check_student_id(name: str) -> str:
    """``name`` if it is a valid student id, else :class:`BadStudentId` saying why."""
    if not isinstance(name, str) or not PATTERN.fullmatch(name):
        raise BadStudentId(f"{name!r} is not a valid student id (allowed: letters, digits, _ . -)")
    if name in (".", "..") or name.startswith("."):
        raise BadStudentId(f"{name!r} is not a valid student id (it may not start with a dot)")
    if len(name) > MAX_LENGTH:
        raise BadStudentId(f"{name[:20]!r}... is longer than {MAX_LENGTH} characters")
    return name


def is_student_id(name: str) -> bool:
    try:
        check_student_id(name)
    except BadStudentId:
        return False
    return True


def read_roster(path: str | Path) -> set[str]:
    """Student ids of a roster file: one id per line, or a CSV whose header has an ``id``
    (or ``student_id``) column (nbgrader's ``db student import`` format)."""
    text = Path(path).read_text(encoding="utf-8-sig")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return set()
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    column = next((h for h in ("id", "student_id") if h in header), None)
    if column is None:
        names = [line.strip() for line in lines]
    else:
        names = [row[header.index(column)].strip() for row in csv.reader(lines[1:]) if len(row) > header.index(column)]
    bad = [n for n in names if not is_student_id(n)]
    if bad:
        raise BadStudentId(f"roster {path}: invalid ids {bad[:5]}")
    return set(names)
