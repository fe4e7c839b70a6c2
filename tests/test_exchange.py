"""The exchange's collect refuses what a student could not have submitted (grading/autograder/exchange.py).

Inbound entries are made by hand in a temporary exchange and given to other Unix accounts
with chown (root only), using accounts every Debian system has (daemon, bin, sys). The oracle
is nbgrader itself: the same exchange collected by nbgrader 0.9.6's own collector shows each
attack working (or stopping the collection), and ours refuses it while collecting the rest.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GRADING = REPO / "grading"
sys.path.insert(0, str(GRADING))
from autograder import exchange  # noqa: E402

VICTIM, ATTACKER, OTHER = "daemon", "bin", "sys"
STOCK = "nbgrader.exchange.default.collect.ExchangeCollect"


def _accounts_ok() -> bool:
    try:
        return all(pwd.getpwnam(name) for name in (VICTIM, ATTACKER, OTHER))
    except KeyError:
        return False


needs_root = pytest.mark.skipif(os.geteuid() != 0 or not _accounts_ok(),
                                reason="needs root (chown) and the daemon, bin and sys accounts")


def _time(second: int) -> str:
    return f"2026-11-30 10:00:{second:02d}.000000 UTC"


def make_entry(inbound: Path, name: str, owner: str, files: dict[str, str]) -> Path:
    """An inbound entry as `nbgrader submit` leaves it (or as a student crafts it), owned by ``owner``."""
    folder = inbound / name
    folder.mkdir()
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    (folder / "timestamp.txt").write_text(name.split("+")[2])
    chown_tree(folder, owner)
    return folder


def chown_tree(path: Path, owner: str) -> None:
    uid = pwd.getpwnam(owner).pw_uid
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, uid)


@pytest.fixture
def course(tmp_path) -> tuple[Path, Path]:
    """(course root with the course's nbgrader_config.py, empty exchange with tp3/inbound)."""
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy2(GRADING / "nbgrader_config.py", root)
    inbound = tmp_path / "exchange" / "tp3" / "inbound"
    inbound.mkdir(parents=True)
    return root, inbound


def nbgrader_collect(root: Path, *options: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TP3_GRADING_DIR": str(GRADING),  # nbgrader runs alembic from this venv
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([sys.executable, "-m", "nbgrader", "collect", "tp3",
                           f"--Exchange.root={root.parent / 'exchange'}", *options],
                          cwd=root, env=env, capture_output=True, text=True, timeout=120)


def submitted(root: Path, student: str) -> dict[str, str]:
    folder = root / "submitted" / student / "tp3"
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*")) if p.is_file()}


def report(root: Path) -> dict:
    return json.loads((root / exchange.REPORT).read_text())


# ----------------------------------------------------------------------------- impersonation

@needs_root
@pytest.mark.nbgrader
@pytest.mark.slow
def test_impersonation_refused_and_victim_kept_where_stock_nbgrader_replaces_it(course):
    root, inbound = course
    make_entry(inbound, f"{VICTIM}+tp3+{_time(1)}+aaaa", VICTIM, {"tp3_partie1.ipynb": "victim's work"})
    make_entry(inbound, f"{ATTACKER}+tp3+{_time(2)}+bbbb", ATTACKER, {"tp3_partie1.ipynb": "attacker's work"})
    forged = f"{VICTIM}+tp3+{_time(3)}+cccc"
    make_entry(inbound, forged, ATTACKER, {"tp3_partie1.ipynb": "sabotage"})

    stock = nbgrader_collect(root, f"--ExchangeFactory.collect={STOCK}")
    assert stock.returncode == 0, stock.stderr
    assert submitted(root, VICTIM)["tp3_partie1.ipynb"] == "sabotage"  # nbgrader 0.9.6: the attack works
    assert "cheating attempt" in stock.stderr  # ... with a warning only
    shutil.rmtree(root / "submitted")

    ours = nbgrader_collect(root)
    assert ours.returncode == 0, ours.stderr
    assert submitted(root, VICTIM)["tp3_partie1.ipynb"] == "victim's work"
    assert submitted(root, ATTACKER)["tp3_partie1.ipynb"] == "attacker's work"
    assert f"REFUSED {forged}" in ours.stderr
    r = report(root)
    assert [(c["student"], c["entry"].split("+")[2]) for c in r["collected"]] == [
        (ATTACKER, _time(2)), (VICTIM, _time(1))]
    assert r["refused"] == [{"entry": forged, "claimed": VICTIM, "owner": ATTACKER,
                             "reason": f"the entry is owned by {ATTACKER}"}]


@needs_root
@pytest.mark.nbgrader
@pytest.mark.slow
def test_links_special_files_and_bad_names_refused_the_rest_collected(course, tmp_path):
    root, inbound = course
    secret = tmp_path / "instructor-secret.txt"
    secret.write_text("solutions")
    make_entry(inbound, f"{OTHER}+tp3+{_time(1)}+ok", OTHER, {"tp3_partie1.ipynb": "other's work"})
    # a link to a folder the victim owns passes nbgrader's owner check (os.stat follows it)
    victim_folder = tmp_path / "victim-home" / "tp3"
    victim_folder.mkdir(parents=True)
    (victim_folder / "tp3_partie1.ipynb").write_text("victim's private copy")
    chown_tree(victim_folder.parent, VICTIM)
    link_entry = inbound / f"{VICTIM}+tp3+{_time(2)}+link"
    link_entry.symlink_to(victim_folder)
    os.lchown(link_entry, pwd.getpwnam(ATTACKER).pw_uid, -1)
    # the attacker's own entry with a link to a file only the instructor can read
    leak = make_entry(inbound, f"{ATTACKER}+tp3+{_time(3)}+leak", ATTACKER, {"tp3_partie1.ipynb": "x"})
    (leak / "tp3_partie2.ipynb").symlink_to(secret)
    os.lchown(leak / "tp3_partie2.ipynb", pwd.getpwnam(ATTACKER).pw_uid, -1)
    # a foreign file planted in a genuine entry (submission folders are world-writable)
    planted = make_entry(inbound, f"{OTHER}+tp3+{_time(4)}+planted", OTHER, {"tp3_partie1.ipynb": "other v2"})
    (planted / "tp3_partie2.ipynb").write_text("planted")
    os.chown(planted / "tp3_partie2.ipynb", pwd.getpwnam(ATTACKER).pw_uid, -1)
    # a FIFO (copying it would block or fail), a name nbgrader cannot parse, an unknown account
    fifo = make_entry(inbound, f"{ATTACKER}+tp3+{_time(5)}+fifo", ATTACKER, {})
    os.mkfifo(fifo / "tp3_partie1.ipynb")
    os.lchown(fifo / "tp3_partie1.ipynb", pwd.getpwnam(ATTACKER).pw_uid, -1)
    make_entry(inbound, f"{ATTACKER}+tp3+yesterday+x", ATTACKER, {})
    make_entry(inbound, f"nosuchstudent+tp3+{_time(6)}+x", ATTACKER, {})
    make_entry(inbound, f"..+tp3+{_time(7)}+x", ATTACKER, {})

    stock = nbgrader_collect(root, f"--ExchangeFactory.collect={STOCK}")
    assert stock.returncode != 0  # nbgrader 0.9.6 stops the whole collection (the bad name)

    ours = nbgrader_collect(root)
    assert ours.returncode == 0, ours.stderr
    assert submitted(root, OTHER) == {"tp3_partie1.ipynb": "other's work", "timestamp.txt": _time(1)}
    assert not (root / "submitted" / VICTIM).exists() and not (root / "submitted" / ATTACKER).exists()
    assert not (root / "tp3").exists()
    refused = {r["entry"].split("+")[-1]: r for r in report(root)["refused"]}
    assert set(refused) == {"link", "leak", "planted", "fifo", "x"} and len(report(root)["refused"]) == 7
    assert refused["link"]["reason"] == "the entry is a symbolic link" and refused["link"]["owner"] == ATTACKER
    assert refused["leak"]["reason"] == "'tp3_partie2.ipynb' is a symbolic link"
    assert refused["planted"] == {"entry": planted.name, "claimed": OTHER, "owner": ATTACKER,
                                  "reason": f"'tp3_partie2.ipynb' is owned by {ATTACKER}"}
    assert "special file" in refused["fifo"]["reason"]
    reasons = sorted(r["reason"] for r in report(root)["refused"])
    assert any(r.startswith("unreadable time") for r in reasons)
    assert "no Unix account named 'nosuchstudent'" in reasons
    assert any(r.startswith("'..' is not a valid student id") for r in reasons)
    assert "solutions" not in json.dumps(submitted(root, OTHER))


@needs_root
@pytest.mark.nbgrader
@pytest.mark.slow
def test_update_takes_a_newer_genuine_entry_never_a_forged_one(course):
    root, inbound = course
    make_entry(inbound, f"{VICTIM}+tp3+{_time(1)}+a", VICTIM, {"tp3_partie1.ipynb": "v1"})
    assert nbgrader_collect(root).returncode == 0
    make_entry(inbound, f"{VICTIM}+tp3+{_time(5)}+forged", ATTACKER, {"tp3_partie1.ipynb": "sabotage"})
    out = nbgrader_collect(root, "--update")
    assert out.returncode == 0, out.stderr
    assert submitted(root, VICTIM)["tp3_partie1.ipynb"] == "v1"
    assert report(root)["kept"] == [{"student": VICTIM, "entry": f"{VICTIM}+tp3+{_time(1)}+a"}]
    make_entry(inbound, f"{VICTIM}+tp3+{_time(3)}+b", VICTIM, {"tp3_partie1.ipynb": "v2"})
    assert nbgrader_collect(root, "--update").returncode == 0
    assert submitted(root, VICTIM)["tp3_partie1.ipynb"] == "v2"
    assert [r["entry"] for r in report(root)["refused"]] == [f"{VICTIM}+tp3+{_time(5)}+forged"]


# ----------------------------------------------------------------------------- unit: the copy

def _collector(root: Path, inbound: Path) -> exchange.OwnerCheckedCollect:
    from nbgrader.coursedir import CourseDirectory

    coursedir = CourseDirectory(root=str(root), course_id="tp3", assignment_id="tp3")
    collector = exchange.OwnerCheckedCollect(coursedir=coursedir)
    collector.inbound_path = str(inbound)
    return collector


@needs_root
def test_copy_checks_the_open_files_so_a_swap_after_the_check_is_refused(course, tmp_path):
    """The entry passed the walk, then a file became a link: the copy itself refuses, and the
    submission already collected stays as it was."""
    root, inbound = course
    entry = make_entry(inbound, f"{VICTIM}+tp3+{_time(1)}+a", VICTIM, {"tp3_partie1.ipynb": "v1", "tp3_run/run.json": "{}"})
    collector = _collector(root, inbound)
    uid = pwd.getpwnam(VICTIM).pw_uid
    exchange.inspect_entry(entry, uid, 10**6)
    dest = root / "submitted" / VICTIM / "tp3"
    collector._copy_entry(entry, dest, uid)
    assert submitted(root, VICTIM) == {"tp3_partie1.ipynb": "v1", "tp3_run/run.json": "{}",
                                       "timestamp.txt": _time(1)}
    secret = tmp_path / "secret"
    secret.write_text("solutions")
    (entry / "tp3_run" / "run.json").unlink()
    (entry / "tp3_run" / "run.json").symlink_to(secret)
    os.lchown(entry / "tp3_run" / "run.json", uid, uid)
    with pytest.raises(exchange.Refused, match="symbolic link"):
        collector._copy_entry(entry, dest, uid)
    assert submitted(root, VICTIM)["tp3_run/run.json"] == "{}"
    assert [p.name for p in dest.parent.iterdir()] == ["tp3"]  # no scratch folder left


@needs_root
def test_size_and_depth_limits(course):
    root, inbound = course
    uid = pwd.getpwnam(VICTIM).pw_uid
    big = make_entry(inbound, f"{VICTIM}+tp3+{_time(1)}+big", VICTIM, {"a": "x" * 3000})
    with pytest.raises(exchange.Refused, match="max_dir_size"):
        exchange.inspect_entry(big, uid, 2000)
    deep = make_entry(inbound, f"{VICTIM}+tp3+{_time(2)}+deep", VICTIM,
                      {"/".join(["d"] * (exchange.MAX_DEPTH + 2)) + "/f": "x"})
    with pytest.raises(exchange.Refused, match="nested deeper"):
        exchange.inspect_entry(deep, uid, 10**6)
    with pytest.raises(exchange.Refused, match="owned by"):
        exchange.inspect_entry(big, pwd.getpwnam(ATTACKER).pw_uid, 10**6)
    exchange.inspect_entry(big, None, 10**6)  # check_owner off: owners not compared


def test_entry_names():
    e = exchange.parse_entry(f"jupyter-alice+tp3+{_time(1)}+r4nd", "tp3")
    assert (e.student, e.timestamp.second) == ("jupyter-alice", 1)
    assert exchange.parse_entry(f"alice+tp3+{_time(2)}", "tp3").student == "alice"
    for bad in ("alice+tp4+2026-11-30 10:00:00 UTC", "alice+tp3+noon", ".hidden+tp3+2026-11-30 10:00:00 UTC",
                "a*+tp3+2026-11-30 10:00:00 UTC", "a+b+tp3+2026-11-30 10:00:00 UTC"):
        with pytest.raises(exchange.Refused):
            exchange.parse_entry(bad, "tp3")


def test_report_text_names_entry_claimed_student_and_owner():
    text = exchange.format_report({"assignment": "tp3", "collected": [{"student": "alice", "entry": "e1"}],
                                   "kept": [], "refused": [{"entry": "alice+tp3+t+x", "claimed": "alice",
                                                            "owner": "mallory", "reason": "the entry is owned by mallory"}]})
    assert "1 collected, 0 already collected, 1 refused" in text
    assert "REFUSED   alice+tp3+t+x: claims 'alice', really mallory: the entry is owned by mallory" in text


def test_the_submission_secret_is_carried_only_as_nbgrader_writes_it(tmp_path):
    """nbgrader's release_feedback needs each submission's secret; collect, the grading
    workspace and autograded/ carry it (autograder/collect.py), and nothing else under its name."""
    from autograder.collect import SECRET, copy_secret

    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    dest.mkdir()
    (src / SECRET).write_text("ab12" * 32)
    copy_secret(src, dest)
    assert (dest / SECRET).read_text() == "ab12" * 32
    for bad in ("../../etc/passwd", "x" * 300, "<script>"):
        (dest / SECRET).unlink(missing_ok=True)
        (src / SECRET).write_text(bad)
        copy_secret(src, dest)
        assert not (dest / SECRET).exists()
