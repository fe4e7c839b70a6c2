"""Collecting students' archives (``course.py collect --zips``): hostile names and archives.

Student ids come from the archives' file names only, are checked, and never reach nbgrader
as a pattern; each archive is taken in on its own by the project's extraction code (the
expected files only, regular files with fresh modes, within caps counted on the bytes
actually read). A bad archive is reported and skipped; nothing of another student moves.
The oracle is the file system itself: hashes of every other submission before and after,
modes and sizes of what was written, and the memory the collect process used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import grading_course as gc
from autograder import ids, intake

NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()
HONEST = {"tp3_partie1.ipynb": NOTEBOOK, "tp3_partie2.ipynb": NOTEBOOK, "tp3_run/adapter.safetensors": b"\0" * 4096,
          "tp3_run/history.json": b'{"batch_losses": [0.7]}', "tp3_run/run.json": b"{}"}


def _zip(path: Path, entries: dict, modes: dict | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (modes or {}).get(name, 0o100644) << 16
            z.writestr(info, data)
    return path


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _collect(root: Path, zips: Path, *extra: str) -> tuple[subprocess.CompletedProcess, int]:
    """``course.py collect --zips`` in a child process; (result, its peak resident memory in MB)."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024); "
            "print(r.returncode); print(r.stdout); print(r.stderr, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, str(gc.GRADING / "course.py"), "--root",
                          str(root), "collect", "--zips", str(zips), *extra],
                         capture_output=True, text=True, env={**os.environ, "TP3_PROFILE": "ci"})
    peak, rc, *rest = out.stdout.split("\n", 2)
    return subprocess.CompletedProcess(out.args, int(rc), rest[0] if rest else "", out.stderr), int(peak)


# ----------------------------------------------------------------------------- ids

@pytest.mark.parametrize("name", ["alice", "bob.smith", "e12345", "A_b-9", "x" * 64])
def test_valid_ids(name):
    assert ids.check_student_id(name) == name


@pytest.mark.parametrize("name", ["[0-9]*", "*", "a?", "..", ".", ".hidden", "a/b", "a b", "élève", "", "a\nb",
                                  "x" * 65, "-", "a;rm"])
def test_invalid_ids(name):
    if name == "-":
        assert ids.check_student_id(name) == name  # plain characters, no dot first: allowed
        return
    with pytest.raises(ids.BadStudentId):
        ids.check_student_id(name)


def test_roster_formats(tmp_path):
    (tmp_path / "plain.txt").write_text("alice\nbob\n\n")
    (tmp_path / "nbgrader.csv").write_text("id,first_name,last_name\nalice,A,L\nbob,B,M\n")
    assert ids.read_roster(tmp_path / "plain.txt") == ids.read_roster(tmp_path / "nbgrader.csv") == {"alice", "bob"}
    (tmp_path / "bad.txt").write_text("alice\n[0-9]*\n")
    with pytest.raises(ids.BadStudentId):
        ids.read_roster(tmp_path / "bad.txt")


# ----------------------------------------------------------------------------- extraction

def test_expected_names():
    assert intake.expected_name("tp3_partie1.ipynb") == "tp3_partie1.ipynb"
    assert intake.expected_name("TP3 rendu/tp3_run/run.json") == "tp3_run/run.json"
    assert intake.expected_name("a\\tp3_run\\history.json") == "tp3_run/history.json"  # zipped on Windows
    for name in ["../tp3_partie1.ipynb", "a/b/tp3_partie1.ipynb", "__MACOSX/tp3_partie1.ipynb", "evil.py",
                 "tp3_run/evil.py", "/etc/passwd", "bob/tp3/tp3_partie1.ipynb"]:
        assert intake.expected_name(name) is None, name


def test_extraction_keeps_expected_files_as_plain_files(tmp_path):
    entries = {**HONEST, "autograder/__init__.py": b"import os", "sitecustomize.py": b"x", "nested.zip": b"PK",
               "tp3_run/evil.py": b"x", "../../escape.txt": b"x", "/abs.txt": b"x"}
    modes = {"tp3_run/run.json": 0o104755, "tp3_partie1.ipynb": 0o102777}  # setuid, setgid + world-writable
    archive = _zip(tmp_path / "a.zip", entries, modes)
    dest = tmp_path / "out"
    got = intake.extract_zip(archive, dest)
    assert sorted(got.kept) == sorted(HONEST)
    assert {"autograder/__init__.py", "sitecustomize.py", "nested.zip", "tp3_run/evil.py"} <= set(got.ignored)
    assert _tree_digest(dest) == {k: hashlib.sha256(v).hexdigest() for k, v in HONEST.items()}
    for path in dest.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
    assert not (tmp_path / "escape.txt").exists() and not list(tmp_path.glob("**/abs.txt"))


def test_links_devices_encrypted_and_ambiguous_entries_are_refused(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        link = zipfile.ZipInfo("tp3_run/history.json")
        link.external_attr = 0o120777 << 16
        z.writestr(link, "/etc/shadow")
        fifo = zipfile.ZipInfo("tp3_run/run.json")
        fifo.external_attr = 0o010644 << 16
        z.writestr(fifo, "")
        z.writestr("tp3_run/adapter.safetensors", b"x")
        z.writestr("a/tp3_partie1.ipynb", NOTEBOOK)
        z.writestr("b/tp3_partie1.ipynb", NOTEBOOK)
        z.writestr("tp3_partie2.ipynb", NOTEBOOK)
    _mark_encrypted(archive, "tp3_run/adapter.safetensors")
    got = intake.extract_zip(archive, tmp_path / "out")
    assert got.kept == ["tp3_partie2.ipynb"]
    refused = "\n".join(got.refused)
    for what in ("tp3_run/history.json: not a regular file", "tp3_run/run.json: not a regular file",
                 "encrypted", "tp3_partie1.ipynb: found 2 times"):
        assert what in refused
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == ["tp3_partie2.ipynb"]


def _mark_encrypted(archive: Path, name: str) -> None:
    """Set the 'encrypted' flag of ``name`` in the central directory (what readers check)."""
    data = bytearray(archive.read_bytes())
    entry = data.find(b"PK\x01\x02")
    while entry != -1:
        length = int.from_bytes(data[entry + 28:entry + 30], "little")
        if data[entry + 46:entry + 46 + length] == name.encode():
            data[entry + 8] |= 0x1
        entry = data.find(b"PK\x01\x02", entry + 4)
    archive.write_bytes(bytes(data))


def _bomb(path: Path, name: str, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        info = zipfile.ZipInfo(name)
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            block = b"\0" * (1 << 20)
            for _ in range(size >> 20):
                f.write(block)
    return path


def test_zip_bomb_stops_at_the_cap(tmp_path):
    archive = _bomb(tmp_path / "bomb.zip", "tp3_partie1.ipynb", 256 << 20)
    assert archive.stat().st_size < 1 << 20  # 256 kB that expand to 256 MB
    got = intake.extract_zip(archive, tmp_path / "out")
    assert got.kept == [] and "tp3_partie1.ipynb" in got.refused[0]
    assert not list((tmp_path / "out").rglob("*.ipynb"))


def test_too_many_entries_and_non_zip(tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(intake.Limits().entries + 1):
            z.writestr(f"f{i}", b"")
    with pytest.raises(intake.Refused, match="entries"):
        intake.extract_zip(archive, tmp_path / "out")
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(intake.Refused, match="not a readable zip"):
        intake.extract_zip(tmp_path / "fake.zip", tmp_path / "out2")


def test_copy_never_follows_links(tmp_path):
    folder = tmp_path / "sub"
    (folder / "tp3_run").mkdir(parents=True)
    (folder / "tp3_partie1.ipynb").write_bytes(NOTEBOOK)
    secret = tmp_path / "secret.txt"
    secret.write_text("instructor's")
    (folder / "tp3_partie2.ipynb").symlink_to(secret)
    (folder / "tp3_run" / "run.json").symlink_to(secret)
    os.mkfifo(folder / "tp3_run" / "history.json")
    (folder / "extra").mkdir()
    (folder / "extra" / "x.py").write_text("x")
    got = intake.copy_submission(folder, tmp_path / "out")
    assert got.kept == ["tp3_partie1.ipynb"]
    assert len(got.refused) == 3 and "extra" in got.ignored
    assert [p.name for p in (tmp_path / "out").rglob("*") if p.is_file()] == ["tp3_partie1.ipynb"]


# ----------------------------------------------------------------------------- course.py collect

def _new_gradebook(root: Path) -> None:
    from nbgrader.api import Gradebook

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # alembic
    Gradebook(f"sqlite:///{root / 'gradebook.db'}").close()


@pytest.mark.nbgrader
def test_collect_takes_each_archive_on_its_own(tmp_path):
    root = tmp_path / "course"
    (root / "submitted").mkdir(parents=True)
    for item in ("nbgrader_config.py",):
        (root / item).write_text((gc.GRADING / item).read_text())
    _new_gradebook(root)
    for student in ("bob", "carol"):  # already collected: must not move
        folder = root / "submitted" / student / "tp3"
        (folder / "tp3_run").mkdir(parents=True)
        for name, data in HONEST.items():
            (folder / name).write_bytes(data + student.encode())
    before = _tree_digest(root / "submitted")
    zips = tmp_path / "zips"
    zips.mkdir()
    _zip(zips / "alice.zip", {f"TP3 rendu/{k}": v for k, v in HONEST.items()})
    _zip(zips / "mallory.zip", {**HONEST, "[0-9]*/tp3_partie1.ipynb": b"{}", "bob/tp3/tp3_partie1.ipynb": b"{}",
                                "../carol/tp3/tp3_partie1.ipynb": b"{}", "../../gradebook.db": b"x"},
         {"tp3_run/run.json": 0o104755})
    _zip(zips / "[0-9]*.zip", HONEST)
    _zip(zips / "..zip", HONEST)
    _zip(zips / "a b.zip", HONEST)
    _zip(zips / "dave.zip", {"readme.txt": b"no notebook"})
    _bomb(zips / "erin.zip", "tp3_partie1.ipynb", 1 << 30)
    (zips / "frank.zip").write_bytes(b"garbage")
    _zip(zips / "zoe.zip", HONEST)
    out, peak_mb = _collect(root, zips)
    assert out.returncode == 1, out.stdout + out.stderr  # some archives were skipped
    submitted = sorted(p.name for p in (root / "submitted").iterdir())
    assert submitted == ["alice", "bob", "carol", "mallory", "zoe"], submitted
    after = _tree_digest(root / "submitted")
    assert {k: v for k, v in after.items() if k.split("/")[0] in ("bob", "carol")} == before
    for student in ("alice", "mallory", "zoe"):
        files = sorted(str(p.relative_to(root / "submitted" / student / "tp3"))
                       for p in (root / "submitted" / student / "tp3").rglob("*") if p.is_file())
        assert files == sorted([*HONEST, "timestamp.txt"]), (student, files)
    assert stat.S_IMODE((root / "submitted/mallory/tp3/tp3_run/run.json").stat().st_mode) == 0o644
    for line in ("SKIPPED [0-9]*.zip", "SKIPPED ..zip", "SKIPPED a b.zip", "SKIPPED dave.zip", "SKIPPED erin.zip",
                 "SKIPPED frank.zip"):
        assert line in out.stdout, out.stdout
    assert not (tmp_path / "gradebook.db").exists() and not (root / "gradebook.db").read_bytes() == b"x"
    assert peak_mb < 400, peak_mb  # the 1 GB bomb was never held in memory
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total < 50 << 20  # nor on disk
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        assert {s.id for s in gb.students} == {"alice", "mallory", "zoe"}


@pytest.mark.nbgrader
def test_collect_refuses_ids_off_the_roster(tmp_path):
    root = tmp_path / "course"
    (root / "submitted").mkdir(parents=True)
    (root / "nbgrader_config.py").write_text((gc.GRADING / "nbgrader_config.py").read_text())
    _new_gradebook(root)
    zips = tmp_path / "zips"
    zips.mkdir()
    _zip(zips / "alice.zip", HONEST)
    _zip(zips / "intruder.zip", HONEST)
    (tmp_path / "roster.csv").write_text("id,first_name\nalice,Alice\n")
    out, _ = _collect(root, zips, "--roster", str(tmp_path / "roster.csv"))
    assert out.returncode == 1 and "SKIPPED intruder.zip: 'intruder' is not on the roster" in out.stdout
    assert sorted(p.name for p in (root / "submitted").iterdir()) == ["alice"]
