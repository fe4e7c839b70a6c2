"""The real nbgrader workflow on a temporary copy of the course, in the ci profile.

One complete submission (the solutions, executed as a student would, with their saved
run) and flawed copies of it; each flawed copy must lose exactly the points of its flaw.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import grading_course

pytestmark = [pytest.mark.nbgrader, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "grading"))
import course  # noqa: E402

AUTO_POINTS = {"tp3_partie1": 10.0, "tp3_partie2": 10.0}


def _course_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "grading" / "course.py"), "--root", str(root), *args],
                          capture_output=True, text=True, env={**os.environ, "TP3_PROFILE": "ci"})


def _cell_source(path: Path, grade_id: str) -> str:
    nb = json.loads(path.read_text())
    (cell,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
    return "".join(cell["source"])


def _set_cell_source(path: Path, grade_id: str, source: str) -> None:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            cell["source"] = source
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False))


def _replace(path: Path, grade_id: str, old: str, new: str) -> None:
    source = _cell_source(path, grade_id)
    assert old in source, (grade_id, old)
    _set_cell_source(path, grade_id, source.replace(old, new))


# Each flaw: how to make it from the complete submission, and the cells it must cost.
# Without a usable run (missing, or history.json not the adapter's): every test that reads it.
_RUN_POINTS = {"q4_curve": 2, "q5_values": 1, "q5_train": 1, "q5_val": 1, "q5_test": 2, "texts_real": 1,
               "texts_instructor": 1}
def _wrong_numbers(folder):
    _replace(folder / "tp3_partie1.ipynb", "q2_answer",
             "total_params = sum(p.numel() for p in model.parameters())",
             "total_params = 163_037_184  # retyped, forgot LoRA")


def _fabricated_predictions(folder):
    _replace(folder / "tp3_partie2.ipynb", "my_texts",
             "my_predictions = [lab.classify_text(text, model, tokenizer, device) for text, _ in my_texts]",
             'my_predictions = [("spam", 0.97), ("ham", 0.99), ("spam", 0.95), ("ham", 0.99)]')


def _raising_cell(folder):
    _replace(folder / "tp3_partie1.ipynb", "q3b_answer", "medium_total = ", "raise RuntimeError('oops')\nmedium_total = ")


def _missing_run(folder):
    shutil.rmtree(folder / "tp3_run")


def _foreign_history(folder):
    # history.json of another run (the same run, one loss changed, written as lab_utils writes it):
    # the adapter's digest no longer matches, so the whole run is refused
    path = folder / "tp3_run" / "history.json"
    history = json.loads(path.read_text())
    history["batch_losses"][0] += 0.5
    path.write_text(json.dumps(history, indent=1))


def _edited_locked_test(folder):
    # a wrong answer, and the test that would catch it emptied: nbgrader restores the test
    _replace(folder / "tp3_partie1.ipynb", "q1_answer", "max_diff = (logits_after - logits_before).abs().max().item()",
             "max_diff = 1.5")
    _set_cell_source(folder / "tp3_partie1.ipynb", "q1_unchanged", "pass  # test removed")


# flaw -> (how to make it, the points it must cost, the notebook it is in: the only one submitted,
# the other one being the complete submission's, graded once already)
FLAWS = {
    "wrong-numbers": (_wrong_numbers, {"q2_total": 1}, "tp3_partie1"),
    "fabricated-predictions": (_fabricated_predictions, {"texts_real": 1}, "tp3_partie2"),
    "raising-cell": (_raising_cell, {"q3b_counts": 2}, "tp3_partie1"),
    "missing-run": (_missing_run, _RUN_POINTS, "tp3_partie2"),
    "foreign-history": (_foreign_history, _RUN_POINTS, "tp3_partie2"),
    "edited-locked-test": (_edited_locked_test, {"q1_unchanged": 1}, "tp3_partie1"),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Generate, submit (complete + flawed), autograde, feedback, export: once for the module.
    The generated course and the executed complete submission are shared with the other
    grading tests (tests/grading_course.py)."""
    root = grading_course.new_course(tmp_path_factory, "course")
    grading_course.submit(root, "complete")
    for name, (make_flaw, _, notebook) in FLAWS.items():
        folder = grading_course.submit(root, name, (notebook,))
        make_flaw(folder)

    students = ["complete", *FLAWS]
    for student in students:
        subprocess.run([sys.executable, "-m", "nbgrader", "db", "student", "add", student], cwd=root,
                       check=True, capture_output=True)
    out = _course_cli(root, "autograde", "--jobs", "2")  # the whole class at once, as an instructor would
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((root / "reports" / "autograde.json").read_text())
    print("\nautograde time per submission (ci profile, --jobs 2): " +
          ", ".join(f"{r['student']} {r['seconds']:.1f} s" for r in report["students"]))
    for step in (["feedback"], ["export", "--to", str(root / "grades.csv")]):
        out = _course_cli(root, *step)
        assert out.returncode == 0, out.stderr[-3000:]
    return root


def _scores(root: Path, student: str) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        sub = gb.find_submission("tp3", student)
        return {g.name: g.auto_score for nb in sub.notebooks for g in nb.grades if g.auto_score is not None}


def test_release_has_no_solution_and_no_hidden_test(graded):
    secrets = course.hidden_lines(graded)
    assert len(secrets) > 20
    for nb in sorted((graded / "release" / "tp3").glob("*.ipynb")):
        text = nb.read_text()
        for marker in course.SOLUTION_MARKERS:
            assert marker not in text, (nb.name, marker)
        assert not [line for line in secrets if line in text], nb.name
        assert "raise NotImplementedError()" in text and "VOTRE RÉPONSE ICI" in text
        assert "check_number(" in text  # visible tests stay


def test_complete_submission_gets_every_automatic_point(graded):
    scores = _scores(graded, "complete")
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{graded / 'gradebook.db'}") as gb:
        sub = gb.find_submission("tp3", "complete")
        by_nb = {nb.name: (nb.code_score, nb.max_code_score) for nb in sub.notebooks}
    assert by_nb == {name: (pts, pts) for name, pts in AUTO_POINTS.items()}
    assert all(v > 0 for v in scores.values())


@pytest.mark.parametrize("flaw", FLAWS)
def test_flawed_submission_loses_exactly_its_points(graded, flaw):
    _, expected_loss, notebook = FLAWS[flaw]
    full = {cell: points for cell, points in grading_course.full_scores(graded).items()
            if cell in grading_course.tests_of(graded, notebook)}
    got = grading_course.scores(graded, flaw)
    lost = {cell: full[cell] - (got[cell] or 0) for cell in full if got[cell] != full[cell]}
    assert lost == expected_loss


@pytest.mark.parametrize("student, words", [("missing-run", "absent ou incomplet"),
                                            ("foreign-history", "n'est pas l'historique enregistré avec")])
def test_unusable_run_is_explained_in_the_graded_notebook(graded, student, words):
    nb = json.loads((graded / "autograded" / student / "tp3" / "tp3_partie2.ipynb").read_text())
    (train,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "train"]
    errors = [o for o in train["outputs"] if o["output_type"] == "error"]
    assert errors and words in errors[0]["evalue"]
    # shown as the French message alone, without English stack frames
    assert len(errors[0]["traceback"]) == 1 and "Traceback" not in errors[0]["traceback"][0]


def test_locked_test_cell_was_restored(graded):
    source = _cell_source(graded / "autograded" / "edited-locked-test" / "tp3" / "tp3_partie1.ipynb", "q1_unchanged")
    assert "check_number(\"max_diff\"" in source


def test_no_test_cell_writes_to_stderr(graded):
    for nb_path in (graded / "autograded" / "complete" / "tp3").glob("*.ipynb"):
        for cell in json.loads(nb_path.read_text())["cells"]:
            meta = cell["metadata"].get("nbgrader", {})
            if meta.get("grade") and cell["cell_type"] == "code":
                assert not [o for o in cell["outputs"] if o.get("name") == "stderr"], meta["grade_id"]


def test_feedback_html_and_grades_csv(graded):
    for student, notebooks in [("complete", ["tp3_partie1", "tp3_partie2"])] + [(f, [n]) for f, (*_, n) in FLAWS.items()]:
        html = sorted((graded / "feedback" / student / "tp3").glob("*.html"))
        assert [p.name for p in html] == [f"{nb}.html" for nb in notebooks]
    assert "attendu" in (graded / "feedback" / "wrong-numbers" / "tp3" / "tp3_partie1.html").read_text()
    rows = {r["student_id"]: r for r in csv.DictReader((graded / "grades.csv").open())}
    full_auto = sum(AUTO_POINTS.values())
    assert float(rows["complete"]["raw_score"]) == full_auto
    for flaw, (_, loss, notebook) in FLAWS.items():
        assert float(rows[flaw]["raw_score"]) == AUTO_POINTS[notebook] - sum(loss.values())
    assert float(rows["complete"]["max_score"]) == full_auto + 11  # 11 points graded by hand


def test_committed_release_is_current():
    """notebooks/ (what Binder opens) must be the release of grading/source/tp3."""
    out = subprocess.run([sys.executable, str(REPO / "grading" / "course.py"), "check-release"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout


def test_zip_collect_puts_each_archive_in_its_student_folder(graded, tmp_path):
    import zipfile

    complete = graded / "submitted" / "complete" / "tp3"
    zips = tmp_path / "zips"
    zips.mkdir()
    for student, prefix in (("zoe", ""), ("yann", "TP3 rendu/")):  # flat, and inside one folder
        with zipfile.ZipFile(zips / f"{student}.zip", "w") as z:
            for path in complete.rglob("*"):
                if path.is_file() and path.suffix in (".ipynb", ".safetensors", ".json"):
                    z.write(path, prefix + str(path.relative_to(complete)))
    out = _course_cli(graded, "collect", "--zips", str(zips))
    assert out.returncode == 0, out.stderr[-2000:]
    for student in ("zoe", "yann"):
        folder = graded / "submitted" / student / "tp3"
        assert sorted(p.name for p in folder.glob("*.ipynb")) == ["tp3_partie1.ipynb", "tp3_partie2.ipynb"]
        assert (folder / "tp3_run" / "adapter.safetensors").read_bytes() == \
            (complete / "tp3_run" / "adapter.safetensors").read_bytes()


def test_publish_builds_a_clean_student_tree(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "grading" / "course.py"), "publish", str(tmp_path / "pub"),
                          "--public-repo", "someone/tp3"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout
    pub = tmp_path / "pub"
    top = sorted(p.name for p in pub.iterdir())
    assert top == sorted(["LICENSE", "README.md", "dev.py", "environment.yml", "lab_utils", "notebooks",
                          "postBuild", "pyproject.toml"])
    assert "https://mybinder.org/v2/gh/someone/tp3/HEAD" in (pub / "README.md").read_text()
    assert not course.verify_public_tree(pub, REPO / "grading")


def test_publish_refuses_a_tree_that_would_leak(tmp_path):
    pub = tmp_path / "pub"
    shutil.copytree(REPO / "notebooks", pub / "notebooks")
    secret = sorted(course.hidden_lines(REPO / "grading"))[0]
    (pub / "notebooks" / "notes.md").write_text(f"copied from the source: {secret}\n")
    shutil.copy2(REPO / "grading" / "source" / "tp3" / "tp3_partie1.ipynb", pub / "notebooks" / "x.ipynb")
    (pub / "gradebook.db").write_bytes(b"")
    problems = "\n".join(course.verify_public_tree(pub, REPO / "grading"))
    assert "notes.md: contains 1 line(s) of solutions or hidden tests" in problems
    assert "x.ipynb: contains '### BEGIN SOLUTION'" in problems
    assert "gradebook.db: gradebook or run folder" in problems
