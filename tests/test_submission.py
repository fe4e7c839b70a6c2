"""lab.make_submission: the archive a student hands in. Oracle: the zipfile module reading the
archive back, compared with the files on disk; the checks refuse what grading could not use.
(The download link in a real browser: tests/test_browser.py.)"""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
import zipfile

import pytest

from lab_utils.errors import SubmissionError
from lab_utils.run import build_classifier, save_run
from lab_utils.submission import make_submission
from lab_utils.train import History

REPO_NOTEBOOKS = __import__("pathlib").Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ["tp3_partie1.ipynb", "tp3_partie2.ipynb", "tp3_run/adapter.safetensors", "tp3_run/history.json",
            "tp3_run/run.json"]


def _save_later(path):
    """Touch ``path`` as a later save would (mtime strictly after everything written so far)."""
    later = time.time_ns() + 10_000_000
    os.utime(path, ns=(later, later))


@pytest.fixture(scope="module")
def run_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run") / "tp3_run"
    model, _ = build_classifier("ci")
    save_run(folder, model, History(batch_losses=[0.7, 0.6], running_train_acc=[0.5, 0.5], config={"seed": 42}))
    return folder


@pytest.fixture
def student(tmp_path, run_files, monkeypatch):
    """A student's folder: both release notebooks, then tp3_run/, then part 2 saved again."""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("TP3_PROFILE", "ci")
    for name in ("tp3_partie1.ipynb", "tp3_partie2.ipynb"):
        shutil.copy(REPO_NOTEBOOKS / name, tmp_path / name)
    shutil.copytree(run_files, tmp_path / "tp3_run")
    _save_later(tmp_path / "tp3_partie2.ipynb")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_archive_holds_exactly_the_five_files(student):
    result = make_submission("22001234")
    path = student / "22001234.zip"
    assert result.path == path and result.size == path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == EXPECTED  # at the top level, nothing else
        for name in EXPECTED:
            assert archive.read(name) == (student / name).read_bytes()
        assert archive.testzip() is None
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in student.iterdir()) == ["22001234.zip", "tp3_partie1.ipynb",
                                                         "tp3_partie2.ipynb", "tp3_run"]  # no temporary file left


def test_download_link_and_warnings(student):
    result = make_submission("etu.Dupont-2")
    html = result._repr_html_()
    assert '<a href="etu.Dupont-2.zip" download="etu.Dupont-2.zip"' in html
    assert "Télécharger etu.Dupont-2.zip" in html
    # the release notebooks have no answer yet: said, without blocking
    assert "la réponse « q1_answer » n&#x27;est pas encore écrite" in html  # escaped
    assert "Archive écrite" in repr(result)


def test_a_second_call_replaces_the_archive(student):
    make_submission("x1")
    (student / "tp3_partie1.ipynb").write_text((student / "tp3_partie1.ipynb").read_text() + "\n")
    make_submission("x1")
    with zipfile.ZipFile(student / "x1.zip") as archive:
        assert archive.read("tp3_partie1.ipynb") == (student / "tp3_partie1.ipynb").read_bytes()


@pytest.mark.parametrize("bad", ["", "   ", "jean dupont", "é123", "../x", "a/b", "..", ".", "x" * 65, "a\\b",
                                 "a\nb", None, 12345])
def test_bad_identifiers_are_refused(student, bad):
    with pytest.raises(SubmissionError) as err:
        make_submission(bad)
    assert "identifiant" in str(err.value).lower()
    assert not list(student.glob("*.zip"))


def test_incomplete_run_is_refused(student):
    (student / "tp3_run" / "run.json").unlink()
    with pytest.raises(SubmissionError, match="incomplet.*run.json"):
        make_submission("x1")


def test_mismatched_run_is_refused(student):
    history = json.loads((student / "tp3_run" / "history.json").read_text())
    history["batch_losses"][0] = 0.1
    (student / "tp3_run" / "history.json").write_text(json.dumps(history, indent=1))
    _save_later(student / "tp3_partie2.ipynb")
    with pytest.raises(SubmissionError, match="n'est pas l'historique enregistré"):
        make_submission("x1")


def test_notebook_not_saved_since_training_is_refused(student):
    _save_later(student / "tp3_run" / "history.json")  # trained after the last save
    with pytest.raises(SubmissionError, match="n'a pas été enregistré depuis l'entraînement.*Ctrl\\+S"):
        make_submission("x1")


@pytest.mark.parametrize("damage", ["missing", "not json", "not a notebook"])
def test_unreadable_notebook_is_refused(student, damage):
    path = student / "tp3_partie1.ipynb"
    if damage == "missing":
        path.unlink()
    else:
        path.write_text("{oops" if damage == "not json" else json.dumps({"cells": 3}))
    with pytest.raises(SubmissionError, match="tp3_partie1.ipynb"):
        make_submission("x1")


def test_failing_tests_and_duplicates_are_reported(student):
    nb = json.loads((student / "tp3_partie1.ipynb").read_text())
    test = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "q2_total")
    test["execution_count"] = 3
    test["outputs"] = [{"output_type": "error", "ename": "AssertionError", "evalue": "x", "traceback": []}]
    nb["cells"].append(json.loads(json.dumps(test)) | {"id": "copy"})
    (student / "tp3_partie1.ipynb").write_text(json.dumps(nb))
    warnings = make_submission("x1").warnings
    assert "tp3_partie1.ipynb : le test « q2_total » échoue dans la version enregistrée." in warnings
    assert "tp3_partie1.ipynb : la cellule « q2_total » est en double (supprimez la copie)." in warnings
    assert "tp3_partie1.ipynb : le test « q1_n_wrapped » n'a pas été exécuté dans la version enregistrée." in warnings


def test_run_of_another_profile_is_reported(student, monkeypatch):
    monkeypatch.setenv("TP3_PROFILE", "full")
    assert "tp3_run/ a été entraîné avec le profil 'ci', la correction utilise 'full'." in make_submission("x1").warnings


def test_nothing_happens_while_grading(student, monkeypatch, capsys):
    monkeypatch.setenv("NBGRADER_EXECUTION", "validate")
    assert make_submission("") is None
    assert "pas d'archive" in capsys.readouterr().out
    assert not list(student.glob("*.zip"))
