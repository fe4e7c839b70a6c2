"""Collect students' archives into the course: ``submitted/<id>/tp3/``, one archive at a time.

Each ``<student_id>.zip`` is handled on its own: the id comes from the archive's file name
(checked by :mod:`ids`, and against the roster when there is one), its expected files are
extracted by :mod:`intake` into a fresh folder, which then replaces that student's
submission in one rename. A bad archive is reported and skipped; it never stops the class
and never touches another student's folder (nothing inside an archive names a folder).
``timestamp.txt`` (what nbgrader reads as the submission time) is the archive's
modification time on the instructor's disk.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from autograder import ASSIGNMENT
from autograder.ids import BadStudentId, check_student_id
from autograder.intake import Intake, Limits, Refused, copy_submission, extract_zip

TIMESTAMP = "timestamp.txt"
SECRET = "submission_secret.txt"  # nbgrader's exchange: names the student's feedback (release_feedback)


def copy_secret(src: Path, dest: Path) -> None:
    """Carry an exchange submission's secret from folder ``src`` to ``dest``: without it
    ``nbgrader release_feedback`` fails for the whole class. Only what nbgrader writes (hex)."""
    path = src / SECRET
    if path.is_file() and not path.is_symlink() and path.stat().st_size <= 256:
        text = path.read_text(errors="replace").strip()
        if re.fullmatch(r"[0-9a-f]{1,256}", text):
            (dest / SECRET).write_text(text)


@dataclass
class Collected:
    """The outcome for one archive (or one exchange submission)."""

    source: str
    student: str | None = None
    intake: Intake | None = None
    error: str | None = None  # set when nothing was collected

    def line(self) -> str:
        if self.error:
            return f"  SKIPPED {self.source}: {self.error}"
        return f"  {self.student:<28} {self.intake.summary()}"


@dataclass
class CollectReport:
    collected: list[Collected] = field(default_factory=list)

    @property
    def skipped(self) -> list[Collected]:
        return [c for c in self.collected if c.error]

    @property
    def students(self) -> list[str]:
        return [c.student for c in self.collected if not c.error]


def timestamp_text(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def install(root: Path, student: str, staged: Path) -> None:
    """Make ``staged`` (a folder with the files) the submission of ``student``, replacing
    the previous one in a rename (never half of each)."""
    home = root / "submitted" / student
    home.parent.mkdir(exist_ok=True)
    if home.is_symlink() or (home.exists() and not home.is_dir()):
        home.unlink()
    old = None
    if home.exists():
        old = home.with_name(f".{student}.old-{os.getpid()}")
        home.rename(old)
    staged.rename(home)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _staging(root: Path) -> Path:
    work = root / "submitted" / ".collecting"
    work.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=work))


def collect_zips(root: Path, folder: Path, roster: set[str] | None = None, limits: Limits = Limits()) -> CollectReport:
    """Every ``*.zip`` of ``folder`` (regular files only) into ``root/submitted``."""
    report = CollectReport()
    archives = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".zip")
    for archive in archives:
        entry = Collected(source=archive.name)
        report.collected.append(entry)
        try:
            entry.student = check_student_id(archive.name[:-4])
        except BadStudentId as err:
            entry.error = f"bad archive name: {err}"
            continue
        if roster is not None and entry.student not in roster:
            entry.error = f"{entry.student!r} is not on the roster"
            continue
        if archive.is_symlink() or not archive.is_file():
            entry.error = "not a regular file"
            continue
        staged = _staging(root)
        try:
            entry.intake = extract_zip(archive, staged / ASSIGNMENT, limits)
            if not any(name.endswith(".ipynb") for name in entry.intake.kept):
                raise Refused("no notebook of the assignment in it (expected "
                              "tp3_partie1.ipynb, tp3_partie2.ipynb, tp3_run/...)")
            (staged / ASSIGNMENT / TIMESTAMP).write_text(timestamp_text(archive.stat().st_mtime))
            install(root, entry.student, staged)
        except Refused as err:
            entry.error = str(err) + (f" ({entry.intake.summary()})" if entry.intake else "")
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    shutil.rmtree(root / "submitted" / ".collecting", ignore_errors=True)
    return report


def tidy_collected(root: Path, students: list[str], limits: Limits = Limits()) -> CollectReport:
    """After nbgrader's exchange collect: keep only the expected files of each submission
    (plain copies within the caps) and its timestamp."""
    report = CollectReport()
    for student in students:
        entry = Collected(source=f"exchange:{student}", student=student)
        report.collected.append(entry)
        folder = root / "submitted" / student / ASSIGNMENT
        staged = _staging(root)
        try:
            entry.intake = copy_submission(folder, staged / ASSIGNMENT, limits)
            stamp = folder / TIMESTAMP
            if stamp.is_file() and not stamp.is_symlink() and stamp.stat().st_size < 200:
                (staged / ASSIGNMENT / TIMESTAMP).write_text(stamp.read_text(errors="replace").strip()[:64])
            copy_secret(folder, staged / ASSIGNMENT)
            install(root, student, staged)
        except Refused as err:
            entry.error = str(err)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    shutil.rmtree(root / "submitted" / ".collecting", ignore_errors=True)
    return report


def submitted_students(root: Path) -> tuple[list[str], list[str]]:
    """(valid student ids with a submission folder, names in submitted/ that are not ids)."""
    valid, invalid = [], []
    base = root / "submitted"
    for path in sorted(base.iterdir()) if base.is_dir() else []:
        if path.name.startswith("."):
            continue
        if path.is_dir() and not path.is_symlink():
            try:
                valid.append(check_student_id(path.name))
                continue
            except BadStudentId:
                pass
        invalid.append(path.name)
    return valid, invalid
