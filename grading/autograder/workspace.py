"""A private course folder for grading one submission.

nbgrader grades a submission inside its course folder: it reads the configuration and the
instructor's sources, writes the gradebook and ``autograded/``. Each submission is graded in
a workspace of its own, outside the course: the course's ``nbgrader_config.py`` (plus this
grading's settings), the assignment's source notebooks, a gradebook holding that student
only (``gradebook.private_copy``), and the submission's expected files, copied as plain
files (``intake.copy_submission``). Nothing of another student, and no student-chosen path
or name, is in it; nbgrader's ``--student`` argument is a checked id, never a glob.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from autograder import ASSIGNMENT
from autograder.collect import TIMESTAMP, copy_secret
from autograder.gradebook import private_copy
from autograder.intake import Intake, Limits, copy_submission


def _mount_points_under(folder: Path) -> list[str]:
    """Mount points inside ``folder`` (kernel connection tmpfs left by a killed grading)."""
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return found
    prefix = str(folder) + "/"
    for line in lines:
        point = line.split()[4].replace("\\040", " ")
        if point.startswith(prefix):
            found.append(point)
    return sorted(found, reverse=True)


class Workspace:
    """``folder``: a private course for ``student`` (see the module's docstring)."""

    def __init__(self, course: Path, student: str, template_db: Path, limits: Limits = Limits(),
                 parent: str | None = None):
        self.course, self.student = course, student
        self.folder = Path(tempfile.mkdtemp(prefix=f"tp3-grade-{student}-", dir=parent))
        self.runtime = self.folder / "runtime"  # kernels' connection files and sandbox folders
        self.runtime.mkdir()
        config = (course / "nbgrader_config.py").read_text()
        (self.folder / "nbgrader_config.py").write_text(f"{config}\n\n# this grading only\n")
        source = self.folder / "source" / ASSIGNMENT
        source.mkdir(parents=True)
        for nb in sorted((course / "source" / ASSIGNMENT).glob("*.ipynb")):
            shutil.copyfile(nb, source / nb.name)
        private_copy(template_db, self.db, student)
        self.intake: Intake = copy_submission(course / "submitted" / student / ASSIGNMENT, self.submitted, limits)
        stamp = course / "submitted" / student / ASSIGNMENT / TIMESTAMP
        if stamp.is_file() and not stamp.is_symlink() and stamp.stat().st_size < 200:
            self._timestamp(stamp.read_text(errors="replace").strip())
        copy_secret(stamp.parent, self.submitted)

    def _timestamp(self, text: str) -> None:
        from nbgrader.utils import parse_utc

        try:
            parse_utc(text)
        except (ValueError, OverflowError, TypeError):
            self.intake.refused.append(f"{TIMESTAMP}: not a date ({text[:40]!r})")
            return
        (self.submitted / TIMESTAMP).write_text(text)

    @property
    def db(self) -> Path:
        return self.folder / "gradebook.db"

    @property
    def submitted(self) -> Path:
        return self.folder / "submitted" / self.student / ASSIGNMENT

    @property
    def autograded(self) -> Path:
        return self.folder / "autograded" / self.student / ASSIGNMENT

    def remove(self) -> None:
        from autograder.kernel import unmount

        for point in _mount_points_under(self.folder):
            unmount(point)
        shutil.rmtree(self.folder, ignore_errors=True)


def publish(ws: Workspace, course: Path) -> None:
    """Put the workspace's graded notebooks (and the timestamp) in ``course/autograded/<id>/``,
    where formgrader and the feedback read them, replacing the previous ones."""
    dest = course / "autograded" / ws.student / ASSIGNMENT
    dest.parent.parent.mkdir(exist_ok=True)
    staged = Path(tempfile.mkdtemp(dir=course / "autograded", prefix=f".{ws.student}."))
    try:
        (staged / ASSIGNMENT).mkdir()
        for path in sorted(ws.autograded.glob("*.ipynb")) if ws.autograded.is_dir() else []:
            if path.is_file() and not path.is_symlink():
                shutil.copyfile(path, staged / ASSIGNMENT / path.name)
        stamp = ws.submitted / TIMESTAMP
        if stamp.is_file():
            shutil.copyfile(stamp, staged / ASSIGNMENT / TIMESTAMP)
        copy_secret(ws.submitted, staged / ASSIGNMENT)
        for path in [staged, *staged.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        if dest.parent.exists():
            shutil.rmtree(dest.parent)
        staged.rename(dest.parent)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
