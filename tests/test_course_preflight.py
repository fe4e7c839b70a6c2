"""course.py samples / autograde / feedback check their environment first: with anything missing
they stop before grading anyone, with one message naming every missing piece (issue: a grader
without the data gave every student the same wrong zeros)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import grading_course
from grading_course import GRADING

pytestmark = pytest.mark.nbgrader


def _cli(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GRADING / "course.py"), "--root", str(root), *args],
                          capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "TP3_PROFILE": "ci", **env})


def test_problems_of_an_empty_folder(tmp_path):
    from autograder.preflight import problems

    found = "\n".join(problems(tmp_path, "autograde"))
    for piece in ("nbgrader_config.py not found", "no instructor notebook", "no gradebook",
                  "no release", "no submission in"):
        assert piece in found
    assert "python grading/course.py generate" in found and "collect --zips DIR" in found
    (tmp_path / "gradebook.db").write_text("not a database")
    assert "cannot be read (DatabaseError: file is not a database)" in "\n".join(problems(tmp_path, "feedback"))


def test_problems_name_missing_students_and_lab_pieces(tmp_path_factory, tmp_path, monkeypatch):
    from autograder.preflight import problems

    root = grading_course.new_course(tmp_path_factory, "preflight")
    grading_course.submit(root, "alice")
    monkeypatch.setenv("TP3_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("TP3_PROFILE", "ci")
    found = problems(root, "autograde", ["alice", "bob"])
    assert len(found) == 2, found
    assert found[0] == f"  - not in {root / 'submitted'}: bob\n      -> python grading/course.py collect --zips DIR\n" \
                       "      -> python grading/course.py samples"
    assert found[1].startswith(f"  - Données SMS (SMSSpamCollection) : absent de {tmp_path / 'no-data'}")
    assert problems(root, "feedback") == [f"  - no submission in {root / 'autograded'}\n"
                                          "      -> python grading/course.py autograde"]


@pytest.mark.slow
def test_data_removed_after_samples_stops_autograde_within_seconds(tmp_path_factory, tmp_path, shared):
    """The issue's 'Done when': samples graded with the data, then the data removed: autograde
    exits non-zero within seconds naming the data, and grades no one."""
    root = grading_course.new_course(tmp_path_factory, "done-when")
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy2(shared / "data" / "SMSSpamCollection", data)
    out = _cli(root, "samples", TP3_DATA_DIR=str(data))
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in (root / "submitted").iterdir()) == ["sample-complete", "sample-flawed"]
    runs = [root / "submitted" / s / "tp3" / "tp3_run" / "adapter.safetensors" for s in ("sample-complete", "sample-flawed")]
    assert runs[0].read_bytes() == runs[1].read_bytes()  # trained once, reloaded by the flawed sample

    shutil.rmtree(data)
    start, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    out = _cli(root, "autograde", TP3_DATA_DIR=str(data))
    after, seconds = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter() - start
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    assert out.returncode == 2
    # CPU time bounds the work whatever the load of the machine: imports and checks, no notebook run
    assert cpu < 20 and seconds < 120, (cpu, seconds)
    assert "course.py autograde: stopped before grading anyone, 1 missing piece (profile ci" in out.stderr
    assert f"Données SMS (SMSSpamCollection) : absent de {data}" in out.stderr
    assert "TP3_DATA_DIR=" in out.stderr
    assert "nbgrader autograde" not in out.stdout  # no student was started
    assert not (root / "autograded").exists() and not (root / "reports").exists()

    out = _cli(root, "samples", TP3_DATA_DIR=str(data))  # nor does samples execute anything
    assert out.returncode != 0 and "course.py samples: stopped before grading anyone" in out.stderr
    assert "executing" not in out.stdout


def test_feedback_before_autograde_stops(tmp_path_factory):
    root = grading_course.new_course(tmp_path_factory, "no-graded")
    out = _cli(root, "feedback")
    assert out.returncode != 0
    assert f"no submission in {root / 'autograded'}" in out.stderr and "course.py autograde" in out.stderr
    assert not (root / "feedback").exists()
