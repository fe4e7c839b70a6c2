"""The class overview (reports/overview.html) and the exports (grades.csv, Moodle file) of a really
graded course, each checked against an independent reading: nbgrader's gradebook API, nbgrader's
own export command, the csv module, an HTML parser."""

from __future__ import annotations

import base64
import copy
import csv
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import grading_course
from grading_course import GRADING

pytestmark = [pytest.mark.slow, pytest.mark.nbgrader]

HOSTILE_ID = '<img src=x onerror=alert(1)>'  # a grade id a student can write into a cell
HOSTILE_KERNEL = "<script>alert(2)</script>"  # a kernel name a student can write into a notebook
STUDENTS = ("alice", "bob", "mallory")  # complete; part 1 only: one wrong number, hostile metadata
OUTPUT: dict[str, str] = {}  # what course.py export printed


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GRADING / "course.py"), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=3600, env={**os.environ, "TP3_PROFILE": "ci"})


def _nbgrader(root: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    root = grading_course.new_course(tmp_path_factory, "reports")
    alice = grading_course.submit(root, "alice")
    (alice / "timestamp.txt").write_text("2026-01-15 10:30:00 UTC")  # read by nbgrader at autograde
    bob = grading_course.submit(root, "bob", ("tp3_partie1",))  # part 2 is alice's: grading it again tells nothing
    grading_course.edit(bob / "tp3_partie1.ipynb", lambda nb: grading_course.replace(
        nb, "q2_answer", "trainable_share = 100 * trainable_params / total_params", "trainable_share = 0.807 * 100"))
    mallory = grading_course.submit(root, "mallory", ("tp3_partie1",))

    def hostile(nb):
        nb["metadata"]["kernelspec"] = {"name": HOSTILE_KERNEL, "display_name": "x", "language": "python"}
        extra = copy.deepcopy(grading_course.cell(nb, "q1_frozen"))
        extra["metadata"]["nbgrader"].update(grade_id=HOSTILE_ID, points=100)
        nb["cells"].insert(grading_course.index(nb, "q1_frozen"), extra)

    grading_course.edit(mallory / "tp3_partie1.ipynb", hostile)
    for student in STUDENTS:
        _nbgrader(root, "db", "student", "add", student)
    _nbgrader(root, "db", "student", "add", "zoe", "--last-name==1+2", "--first-name=@SUM(A1)")  # no submission
    out = _cli(root, "autograde", "--jobs", "2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (bob / "timestamp.txt").write_text("2026-01-16 08:00:00 UTC")  # after autograde: export must still find it
    for step in (["feedback"], ["overview"], ["export", "--to", str(root / "grades.csv"),
                                              "--moodle", str(root / "moodle.csv"), "--id-column", "Nom d'utilisateur",
                                              "--grade-column", "TP3 LoRA", "--out-of", "20"]):
        out = _cli(root, *step)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        OUTPUT[step[0]] = out.stdout
    _nbgrader(root, "export", "--to", str(root / "nbgrader.csv"))  # nbgrader's own, as an oracle
    return root


def _gradebook(root: Path) -> dict:
    """Independent reading: {student: (score, max_score, code_score, timestamp)} via nbgrader's API."""
    from nbgrader.api import Gradebook, MissingEntry

    out = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for student in gb.students:
            try:
                sub = gb.find_submission("tp3", student.id)
            except MissingEntry:
                out[student.id] = None
                continue
            out[student.id] = (sub.score, sub.max_score, sub.code_score, sub.timestamp)
    return out


# ----------------------------------------------------------------------------- grades.csv, Moodle

def test_grades_csv_matches_nbgrader_and_the_gradebook(course):
    mine = {r["student_id"]: r for r in csv.DictReader((course / "grades.csv").open(encoding="utf-8"))}
    theirs = {r["student_id"]: r for r in csv.DictReader((course / "nbgrader.csv").open())}
    assert list(next(csv.reader((course / "grades.csv").open()))) == list(next(csv.reader((course / "nbgrader.csv").open())))
    assert sorted(mine) == sorted(theirs) == ["alice", "bob", "mallory", "zoe"]
    for student, row in mine.items():
        for column in ("assignment", "raw_score", "late_submission_penalty", "score", "max_score", "email"):
            assert row[column] == theirs[student][column], (student, column)
    book = _gradebook(course)
    auto = sum(grading_course.AUTO_POINTS.values())
    assert float(mine["alice"]["score"]) == book["alice"][0] == auto  # every automatic point
    assert float(mine["bob"]["score"]) == book["bob"][0] < auto
    assert float(mine["alice"]["max_score"]) == auto + 11  # 11 points graded by hand


def test_grades_csv_timestamps(course):
    """Gradebook timestamp when nbgrader recorded one; else the submission's timestamp.txt; else empty."""
    rows = {r["student_id"]: r for r in csv.DictReader((course / "grades.csv").open(encoding="utf-8"))}
    theirs = {r["student_id"]: r for r in csv.DictReader((course / "nbgrader.csv").open())}
    book = _gradebook(course)
    assert rows["alice"]["timestamp"] == theirs["alice"]["timestamp"] == str(book["alice"][3])
    assert rows["alice"]["timestamp"].startswith("2026-01-15 10:30:00")
    assert book["bob"][3] is None and theirs["bob"]["timestamp"] == ""  # nbgrader leaves it empty
    assert rows["bob"]["timestamp"].startswith("2026-01-16 08:00:00")
    assert rows["mallory"]["timestamp"] == "" and rows["zoe"]["timestamp"] == ""
    assert "no submission time for mallory" in OUTPUT["export"]


def test_text_fields_cannot_run_as_formulas(course):
    rows = {r["student_id"]: r for r in csv.DictReader((course / "grades.csv").open(encoding="utf-8"))}
    assert rows["zoe"]["last_name"] == "'=1+2" and rows["zoe"]["first_name"] == "'@SUM(A1)"
    assert "prefixed with ' for zoe" in OUTPUT["export"]


def test_moodle_file(course):
    with (course / "moodle.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["Nom d'utilisateur", "TP3 LoRA"]
    grades = dict(rows[1:])
    book = _gradebook(course)
    assert sorted(grades) == ["alice", "bob", "mallory", "zoe"]
    for student in ("alice", "bob", "mallory"):
        score, maximum = book[student][:2]
        assert float(grades[student]) == pytest.approx(round(score * 20 / maximum, 2), abs=1e-9)
        assert "," not in grades[student]  # dot decimals, read by Moodle in every language
    auto = sum(grading_course.AUTO_POINTS.values())
    assert grades["alice"] == f"{round(auto / (auto + 11) * 20, 2):g}"  # 20 / 31 * 20 = 12.9
    assert grades["zoe"] == ""  # no submission: Moodle keeps the grade as it is
    assert "no submission for zoe" in OUTPUT["export"]


def test_moodle_raw_grade_and_bad_scale(course, tmp_path):
    out = _cli(course, "export", "--moodle", str(tmp_path / "raw.csv"))
    assert out.returncode == 0, out.stderr
    grades = dict(list(csv.reader((tmp_path / "raw.csv").open()))[1:])
    assert grades["alice"] == f"{sum(grading_course.AUTO_POINTS.values()):g}" and grades["bob"] == f"{_gradebook(course)['bob'][0]:g}"
    assert "assignment,duedate" not in out.stdout  # --moodle alone writes no grades.csv
    bad = _cli(course, "export", "--moodle", str(tmp_path / "x.csv"), "--out-of", "0")
    assert bad.returncode == 2 and "--out-of: must be a number > 0, got '0'" in bad.stderr
    assert not (tmp_path / "x.csv").exists()


# ----------------------------------------------------------------------------- overview

class _Page(HTMLParser):
    """Tables (by id) as rows of cell texts, hrefs, img sources, script tags, the CSP."""

    def __init__(self):
        super().__init__()
        self.tables, self.hrefs, self.imgs, self.scripts, self.csp = {}, [], [], 0, None
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "a":
            self.hrefs.append(attrs["href"])
        elif tag == "img":
            self.imgs.append(attrs["src"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy":
            self.csp = attrs["content"]

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def page(course):
    parser = _Page()
    parser.feed((course / "reports" / "overview.html").read_text(encoding="utf-8"))
    return parser


def test_overview_scores_match_the_gradebook(course, page):
    book = _gradebook(course)
    rows = {r[0]: r for r in page.tables["submissions"][1:]}
    assert sorted(rows) == ["alice", "bob", "mallory"]
    for student, row in rows.items():
        assert row[1] == f"{book[student][2]:g} / {sum(grading_course.AUTO_POINTS.values()):g}", (student, row)
        assert row[2].startswith(f"{book[student][0]:g} / {book[student][1]:g}")
    report = json.loads((course / "reports" / "autograde.json").read_text())
    for entry in report["students"]:
        assert rows[entry["student"]][3] == f"{entry['seconds']:.1f}"


def test_overview_pass_rates_match_the_gradebook(course, page):
    full = grading_course.full_scores(course)
    scores = {s: grading_course.scores(course, s) for s in STUDENTS}
    rows = {r[1]: r for r in page.tables["tests"][1:]}
    assert sorted(rows) == sorted(full)
    for cell, points in full.items():
        passed = sum(1 for s in STUDENTS if (scores[s][cell] or 0) >= points)
        assert rows[cell][3] == f"{passed} / 3", cell
        assert float(rows[cell][2]) == points
    assert [r[3] for r in rows.values()].count("2 / 3") >= 1  # bob's wrong number


def test_overview_lists_incidents_escaped_with_links(course, page):
    html = (course / "reports" / "overview.html").read_text(encoding="utf-8")
    assert "<script" not in html.lower() and "<img src=x" not in html
    assert page.scripts == 0 and page.csp.startswith("default-src 'none'") and "script-src" not in page.csp
    incidents = page.tables["incidents"][1:]
    mallory = [r for r in incidents if r[0] == "mallory"]
    texts = " ".join(r[3] for r in mallory)
    assert {r[2] for r in mallory} == {"repair"}
    assert HOSTILE_ID in texts and HOSTILE_KERNEL in texts  # shown as text, after unescaping
    assert not [r for r in incidents if r[0] in ("alice", "bob")]
    reports = course / "reports"
    links = [h for h in page.hrefs if "mallory" in h]
    assert "../autograded/mallory/tp3/tp3_partie1.ipynb" in links
    assert "../feedback/mallory/tp3/tp3_partie1.html" in links
    for href in page.hrefs:
        assert (reports / href).resolve().is_file(), href


def test_overview_figures(course, page):
    figures = course / "reports" / "figures"
    files = {p.name: p.read_bytes() for p in figures.glob("*.png")}
    assert sorted(files) == ["pass_rate.png", "scores.png", "time.png"]
    embedded = [base64.b64decode(src.split(",", 1)[1]) for src in page.imgs]
    assert sorted(embedded) == sorted(files.values())
    assert all(data.startswith(b"\x89PNG\r\n\x1a\n") for data in embedded)
