"""nbgrader's exchange collect, refusing what a student could not have submitted.

In nbgrader's exchange a student submits by writing a folder named
``<student>+<assignment>+<time>[+<random>]`` into the course's ``inbound/``, which every user
may write to. nbgrader 0.9.6's collect takes the latest folder named after each student and only
*warns* when its Unix owner is someone else: a student can hand in work under another student's
name and replace that student's submission. ``OwnerCheckedCollect`` (set as
``ExchangeFactory.collect`` in ``nbgrader_config.py``) refuses, and reports, every entry

- not wholly owned by the student it names: the folder and every file and folder in it
  (a foreign file planted in a submission is refused too);
- holding a symbolic link, a hard-linked or special file (FIFO, device, socket): nbgrader would
  copy a link's target, read with the instructor's rights;
- over ``CourseDirectory.max_dir_size``, or with a name or timestamp nbgrader cannot parse
  (either made nbgrader stop the collection for the whole class).

For each student the latest acceptable entry is collected, as nbgrader would (``--update``,
``--before-duedate`` and ``CourseDirectory.ignore``/``include``/``max_file_size`` keep their
meaning), so the victim's own submission is kept. Files are copied from descriptors opened
without following links whose owner and type are checked on the open file, so an entry cannot
be swapped between the check and the copy. What was collected and refused is written to
``reports/collect.json`` in the course root; ``collect_exchange`` (``course.py collect
--exchange``) runs nbgrader and returns that report.
"""

from __future__ import annotations

import fnmatch
import json
import os
import pwd
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.utils import parse_utc

from . import ASSIGNMENT
from .ids import BadStudentId, check_student_id

REPORT = Path("reports") / "collect.json"  # relative to the course root
CHUNK = 1 << 20
MAX_ITEMS = 10_000  # files and folders in one entry (a submission holds about ten)
MAX_DEPTH = 16


class Refused(Exception):
    """An inbound entry that must not be collected; ``owner`` is who really owns what was refused."""

    def __init__(self, reason: str, owner: str = ""):
        super().__init__(reason)
        self.reason, self.owner = reason, owner


@dataclass
class Entry:
    name: str
    student: str
    timestamp: object  # datetime, from the name


def owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def parse_entry(name: str, assignment: str) -> Entry:
    """``<student>+<assignment>+<time>[+<random>]``, with a valid student id (``ids.py``)."""
    match = re.fullmatch(rf"(?P<student>.+)\+{re.escape(assignment)}\+(?P<time>[^+]+)(?:\+[^+]*)?", name)
    if not match:
        raise Refused(f"name not of the form <student>+{assignment}+<time>")
    try:
        check_student_id(match["student"])  # it becomes a folder name and nbgrader's --student
    except BadStudentId as err:
        raise Refused(str(err)) from None
    try:
        timestamp = parse_utc(match["time"])
    except (ValueError, OverflowError) as err:
        raise Refused(f"unreadable time in the name: {err}") from None
    return Entry(name, match["student"], timestamp)


def _check(st: os.stat_result, rel: str, uid: int | None, directory: bool | None = None) -> None:
    """Refuse what a genuine submission cannot hold: links, special files, foreign owners."""
    what = f"'{rel}'" if rel else "the entry"
    if stat.S_ISLNK(st.st_mode):
        raise Refused(f"{what} is a symbolic link", owner_name(st.st_uid))
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise Refused(f"{what} is a special file (FIFO, device or socket)", owner_name(st.st_uid))
    if directory is not None and stat.S_ISDIR(st.st_mode) != directory:
        raise Refused(f"{what} changed type while it was read", owner_name(st.st_uid))
    if uid is not None and st.st_uid != uid:
        raise Refused(f"{what} is owned by {owner_name(st.st_uid)}", owner_name(st.st_uid))
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        raise Refused(f"{what} is a hard link to a file elsewhere", owner_name(st.st_uid))


def inspect_entry(path: Path, uid: int | None, max_bytes: int) -> None:
    """Raise ``Refused`` unless ``path`` is a folder of folders and regular files, all owned
    by ``uid`` (None: any owner), of at most ``max_bytes`` in all. Follows no link."""
    total = items = 0
    _check(os.lstat(path), "", uid, directory=True)
    for folder, dirs, files in os.walk(path):
        rel_folder = os.path.relpath(folder, path)
        if rel_folder.count(os.sep) >= MAX_DEPTH:
            raise Refused(f"folders nested deeper than {MAX_DEPTH}")
        for name in dirs + files:
            rel = os.path.normpath(os.path.join(rel_folder, name))
            st = os.lstat(os.path.join(folder, name))
            _check(st, rel, uid)
            items += 1
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
            if total > max_bytes:
                raise Refused(f"larger than CourseDirectory.max_dir_size ({max_bytes} bytes)")
            if items > MAX_ITEMS:
                raise Refused(f"more than {MAX_ITEMS} files and folders")


class OwnerCheckedCollect(ExchangeCollect):
    """``nbgrader collect`` that refuses and reports impersonated or unsafe entries (module doc)."""

    def init_src(self):
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.inbound_path = os.path.join(self.root, self.coursedir.course_id, "inbound")
        if not os.path.isdir(self.inbound_path):
            self.fail(f"Course not found: {self.inbound_path}")
        assignment = self.coursedir.assignment_id
        wanted = self.coursedir.student_id or "*"
        self.refused: list[dict] = []
        self.collected: list[dict] = []
        self.kept: list[dict] = []
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(assignment).duedate
            except MissingEntry:
                self.duedate = None
        candidates: dict[str, list[Entry]] = {}
        for name in sorted(os.listdir(self.inbound_path)):
            if not fnmatch.fnmatchcase(name, f"{wanted}+{assignment}+*"):
                continue
            try:
                entry = parse_entry(name, assignment)
                inspect_entry(Path(self.inbound_path) / name, self._uid(entry.student), self._max_bytes())
            except Refused as why:
                self._refuse(name, why)
                continue
            except OSError as err:
                self._refuse(name, Refused(f"unreadable: {err}"))
                continue
            candidates.setdefault(entry.student, []).append(entry)
        self.src_candidates = {student: self._preference(entries) for student, entries in candidates.items()}

    def _uid(self, student: str) -> int | None:
        """The Unix account the entry must belong to (None when ``check_owner`` is off)."""
        if not self.check_owner:
            return None
        try:
            return pwd.getpwnam(student).pw_uid
        except KeyError:
            raise Refused(f"no Unix account named '{student}'") from None

    def _max_bytes(self) -> int:
        return 1000 * self.coursedir.max_dir_size

    def _preference(self, entries: list[Entry]) -> list[Entry]:
        """Entries in the order nbgrader would choose them: latest first, or with
        ``--before-duedate`` the latest before the due date first."""
        latest = sorted(entries, key=lambda e: e.timestamp, reverse=True)
        if self.duedate is None or not self.before_duedate:
            return latest
        return [e for e in latest if e.timestamp <= self.duedate] + [e for e in latest if e.timestamp > self.duedate]

    def _refuse(self, name: str, why: Refused) -> None:
        match = re.match(rf"(.+)\+{re.escape(self.coursedir.assignment_id)}\+", name)
        refusal = {"entry": name, "claimed": match[1] if match else "", "owner": why.owner, "reason": why.reason}
        self.refused.append(refusal)
        self.log.error("REFUSED %s: claims to be from %r, %s; not collected", name, refusal["claimed"], why.reason)

    def init_dest(self):
        pass

    def copy_files(self):
        for student in sorted(self.src_candidates):
            dest = Path(self.coursedir.format_path(self.coursedir.submitted_directory, student,
                                                   self.coursedir.assignment_id))
            for entry in self.src_candidates[student]:
                if dest.is_dir() and not self._replaces(dest, entry):
                    self.kept.append({"student": student, "entry": entry.name})
                    self.log.info("Submission already collected, kept: %s %s", student, self.coursedir.assignment_id)
                    break
                try:
                    self._copy_entry(Path(self.inbound_path) / entry.name, dest, self._uid(entry.student))
                except Refused as why:
                    self._refuse(entry.name, why)
                    continue  # the next acceptable entry of this student, if any
                except OSError as err:
                    self._refuse(entry.name, Refused(f"unreadable: {err}"))
                    continue
                self.collected.append({"student": student, "entry": entry.name})
                self.log.info("Collected submission: %s %s (%s)", student, self.coursedir.assignment_id, entry.name)
                break
        self._write_report()

    def _replaces(self, dest: Path, entry: Entry) -> bool:
        """nbgrader's rule for an already collected submission."""
        try:
            existing = self.coursedir.get_existing_timestamp(str(dest))
        except Exception:  # noqa: BLE001 (an unreadable timestamp.txt must not stop the class)
            existing = None
        if self.update and (existing is None or entry.timestamp > existing):
            return True
        return bool(self.before_duedate and existing != entry.timestamp)

    def _copy_entry(self, src: Path, dest: Path, uid: int | None) -> None:
        """Copy ``src`` to ``dest`` through checked descriptors; ``dest`` is replaced only
        once the whole copy succeeded."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".collecting-", dir=dest.parent))
        try:
            fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
            try:
                _check(os.fstat(fd), "", uid, directory=True)
                self._copy_dir(fd, scratch / "copy", "", uid, {"bytes": 0, "items": 0})
            finally:
                os.close(fd)
            if dest.exists():
                shutil.rmtree(dest)
            os.rename(scratch / "copy", dest)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _copy_dir(self, dir_fd: int, dest: Path, rel: str, uid: int | None, total: dict) -> None:
        if rel.count("/") >= MAX_DEPTH:
            raise Refused(f"folders nested deeper than {MAX_DEPTH}")
        groupshared = self.coursedir.groupshared
        dest.mkdir(mode=0o2770 if groupshared else 0o755)
        for name in sorted(os.listdir(dir_fd)):
            path = f"{rel}/{name}" if rel else name
            if any(fnmatch.fnmatch(name, glob) for glob in self.coursedir.ignore):
                continue
            st = os.lstat(name, dir_fd=dir_fd)
            _check(st, path, uid)
            total["items"] += 1
            if total["items"] > MAX_ITEMS:
                raise Refused(f"more than {MAX_ITEMS} files and folders")
            if stat.S_ISDIR(st.st_mode):
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
                try:
                    _check(os.fstat(sub), path, uid, directory=True)
                    self._copy_dir(sub, dest / name, path, uid, total)
                finally:
                    os.close(sub)
                continue
            include = self.coursedir.include
            if include and not any(fnmatch.fnmatch(name, glob) for glob in include):
                continue
            if self.coursedir.max_file_size and st.st_size > 1000 * self.coursedir.max_file_size:
                self.log.warning("Ignoring file too large '%s' (see CourseDirectory.max_file_size)", path)
                continue
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
            try:
                _check(os.fstat(fd), path, uid, directory=False)
                with open(dest / name, "xb") as out:
                    while chunk := os.read(fd, CHUNK):
                        total["bytes"] += len(chunk)
                        if total["bytes"] > self._max_bytes():
                            raise Refused(f"larger than CourseDirectory.max_dir_size ({self._max_bytes()} bytes)")
                        out.write(chunk)
            finally:
                os.close(fd)
            os.chmod(dest / name, 0o660 if groupshared else 0o644)

    def _write_report(self) -> None:
        path = Path(self.coursedir.root) / REPORT
        path.parent.mkdir(exist_ok=True)
        report = {"assignment": self.coursedir.assignment_id, "course": self.coursedir.course_id,
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "check_owner": self.check_owner,
                  "collected": self.collected, "kept": self.kept, "refused": self.refused}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False))
        os.replace(tmp, path)


def collect_exchange(root: Path, nbgrader: Callable[..., object], assignment: str = ASSIGNMENT) -> dict:
    """Run ``nbgrader collect`` through ``nbgrader(*args)`` in the course ``root`` (whose
    config must use ``OwnerCheckedCollect``) and return its report: the ``collected``,
    ``kept`` (already collected, not newer) and ``refused`` entries."""
    path = root / REPORT
    path.unlink(missing_ok=True)
    nbgrader("collect", assignment)
    if not path.is_file():
        raise SystemExit(f"nbgrader collect wrote no {REPORT}: {root / 'nbgrader_config.py'} must set "
                         "c.ExchangeFactory.collect = 'autograder.exchange.OwnerCheckedCollect'")
    return json.loads(path.read_text())


def format_report(report: dict) -> str:
    lines = [f"collect {report['assignment']}: {len(report['collected'])} collected, "
             f"{len(report['kept'])} already collected, {len(report['refused'])} refused"]
    lines += [f"  collected {c['student']:<24} {c['entry']}" for c in report["collected"]]
    lines += [f"  REFUSED   {r['entry']}: claims {r['claimed'] or '?'!r}, really {r['owner'] or '?'}: {r['reason']}"
              for r in report["refused"]]
    if report["refused"]:
        lines.append("  Refused entries were not collected; each student's own latest acceptable entry was. "
                     "Look at them (an impersonation attempt, or a submission not made with nbgrader submit).")
    return "\n".join(lines)

