"""Faulty submissions are graded as far as they can be, without stopping the class.

Fast unit tests of the repair step and of the answer codec, then the real workflow
(``course.py autograde``, ci profile) on submissions derived from the complete one, with
faults injected: duplicated, deleted, retyped and tampered cells, another kernel name,
outputs cleared, a crash (SIGKILL and os._exit), an infinite loop, a cell that exhausts
memory, an unreadable notebook and a submission past the wall-clock limit. Each fault must
cost exactly the points that depend on it, be explained in French in the feedback, and
leave the other submissions and the autograde loop untouched.
"""

from __future__ import annotations

import copy
import math
import time

import pytest

import grading_course as gc
from autograder import answers, notes, repair

FAULT_FLAGS = ("--cell-timeout", "20", "--memory-mb", "4096")


# ----------------------------------------------------------------------------- repair (unit)

def _release(name: str = "tp3_partie1"):
    import nbformat

    return nbformat.read(str(gc.REPO / "notebooks" / f"{name}.ipynb"), as_version=4)


def _reference(nb) -> repair.Reference:
    cells = []
    for c in nb.cells:
        meta = c.metadata.get("nbgrader")
        if meta:
            meta = {k: v for k, v in meta.items() if k in ("grade", "grade_id", "locked", "schema_version",
                                                            "solution", "task", "points")}
            cells.append({"grade_id": meta["grade_id"], "cell_type": c.cell_type, "source": c.source,
                          "nbgrader": meta})
    return repair.Reference(cells, dict(nb.metadata.kernelspec))


def _ids(nb) -> list:
    return [notes.cell_id(c) for c in nb.cells]


def test_repair_restores_the_release_structure():
    release = _release()
    ref = _reference(release)
    nb = copy.deepcopy(release)

    def i(gid):
        return _ids(nb).index(gid)

    nb.metadata.kernelspec = {"name": "julia-1.9", "display_name": "Julia", "language": "julia"}
    nb.metadata["tp3_grading"] = {"complete": True}  # a submission cannot claim to be graded
    nb.cells.insert(i("imports") + 1, copy.deepcopy(nb.cells[i("imports")]))        # duplicated locked cell
    nb.cells.insert(i("q2_answer") + 1, copy.deepcopy(nb.cells[i("q2_answer")]))    # duplicated answer
    del nb.cells[i("q2_total")]                                                      # deleted test
    del nb.cells[i("q3a_head")]                                                      # deleted instructor cell
    del nb.cells[i("q3b_answer")]                                                    # deleted answer
    test = nb.cells[i("q2_trainable")]
    test.cell_type = "markdown"
    del test["outputs"], test["execution_count"]                                     # retyped test
    nb.cells[i("q1_frozen")].metadata.nbgrader.update(points=100, locked=False)      # tampered metadata
    nb.cells.insert(0, notes.note_cell(copy.deepcopy(nb)))                           # a forged note
    bonus = copy.deepcopy(nb.cells[i("q1_frozen")])
    bonus.metadata.nbgrader.update(grade_id="bonus", points=100)                      # unknown grade id
    nb.cells.insert(i("q1_frozen"), bonus)

    said = repair.repair_notebook(nb, ref)

    ids = [x for x in _ids(nb) if x]
    assert ids == [x for x in _ids(release) if x]  # every cell once, in the release's order
    assert nb.metadata.kernelspec["name"] == "python3" and nb.metadata["tp3_grading"] == {}
    assert sum(1 for c in nb.cells if not notes.cell_id(c)) == 2  # the duplicated answer and "bonus": ordinary
    assert nb.cells[_ids(nb).index("q2_trainable")].cell_type == "code"
    assert nb.cells[_ids(nb).index("q1_frozen")].metadata.nbgrader["points"] == 1
    assert "raise NotImplementedError()" in nb.cells[_ids(nb).index("q3b_answer")].source  # the stub
    assert not notes.notes(nb)  # the forged note is gone (repair only returns its lines)
    text = " ".join(said)
    for word in ("julia-1.9", "en double", "cellule ordinaire", "« q2_total » avait été supprimée",
                 "« q3a_head »", "remise vide", "type d'origine", "réglages de correction", "« bonus » n'existe pas"):
        assert word in text, word


def test_repair_leaves_a_clean_submission_alone():
    release = _release("tp3_partie2")
    nb = copy.deepcopy(release)
    assert repair.repair_notebook(nb, _reference(release)) == []
    assert [c.source for c in nb.cells] == [c.source for c in release.cells]


def test_notes_are_added_once_at_the_top():
    nb = _release()
    notes.add_note(nb, "première remarque")
    notes.add_note(nb, "première remarque")
    notes.add_note(nb, "seconde remarque")
    assert notes.notes(nb) == ["première remarque", "seconde remarque"]
    assert nb.cells[0].metadata[notes.NOTE_KEY] and nb.cells[0].source.startswith(notes.NOTE_TITLE)


# ----------------------------------------------------------------------------- answers (unit)

def test_answer_names_come_from_the_notebook():
    import nbformat

    nb = nbformat.read(str(gc.GRADING / "source" / "tp3" / "tp3_partie2.ipynb"), as_version=4)
    cells = [{"grade_id": notes.cell_id(c), "cell_type": c.cell_type, "source": c.source,
              "locked": c.metadata.get("nbgrader", {}).get("locked", False)} for c in nb.cells]
    names = answers.answer_names(cells)
    assert names["q5_test"] == ["test_acc"]
    assert names["q4_curve"] == ["early_loss", "fig_loss", "late_loss"]
    assert names["texts_real"] == ["my_predictions", "my_texts"]
    assert names["q5_plot"] == ["test_acc", "train_acc", "val_acc"]  # an instructor cell using answers
    assert "history" not in sum(names.values(), [])  # defined by a locked cell: never taken from the student


def test_answer_codec_round_trip():
    from collections import namedtuple

    import numpy as np
    import torch
    from matplotlib.figure import Figure

    pred = namedtuple("Prediction", "label confidence")
    from lab_utils.plots import LabFigure  # a Figure subclass, as the lab's plots return

    fig = Figure()
    fig.add_subplot().plot([3.0, 2.0, 1.0])
    lab_fig = LabFigure()
    lab_fig.add_subplot().plot([1.0, 2.0])
    values = {"i": 7, "f": 0.25, "b": True, "s": "spam", "n": None, "nan": math.nan, "inf": -math.inf,
              "pairs": [("a", "spam")], "preds": [pred("ham", 0.9)], "np64": np.int64(3), "arr": np.arange(3),
              "t": torch.tensor([1.5]), "set": {1, 2}, "d": {"k": [1]}, "fig": fig, "lab_fig": lab_fig,
              "obj": object()}
    ns = {}
    exec(answers.encoder_source(), ns)
    text = eval(answers.capture_expression([*values, "missing"]), {**ns, "globals": lambda: values})
    got = answers.decode_answers(text)
    assert "missing" not in got
    for key in ("i", "f", "b", "s", "n", "pairs", "set", "d"):
        assert got[key] == values[key] and type(got[key]) is type(values[key]), key
    assert math.isnan(got["nan"]) and got["inf"] == -math.inf
    assert got["preds"][0].label == "ham" and got["preds"][0][1] == 0.9
    assert got["np64"] == 3 and isinstance(got["np64"], np.int64)
    assert list(got["arr"]) == [0, 1, 2] and torch.equal(got["t"], values["t"])
    assert isinstance(got["fig"], Figure) and list(got["fig"].axes[0].lines[0].get_ydata()) == [3.0, 2.0, 1.0]
    assert list(got["lab_fig"].axes[0].lines[0].get_ydata()) == [1.0, 2.0]
    assert isinstance(got["obj"], answers.Opaque) and got["obj"] != got["obj"]


@pytest.mark.parametrize("claim", [
    '{"x": {"__reduce__": ["os.system", ["true"]]}}',      # unknown tag: refused, never executed
    '{"x": {"__namedtuple__": ["os.system", ["a"], [1]]}}',  # names must be identifiers
    '{"x": {"__tensor__": ["__class__", [1]]}}',
    '[1, 2]', 'not json', '{"__error__": "too large"}', '"' + "x" * (answers.MAX_CHARS + 1) + '"',
])
def test_malformed_claims_are_refused(claim):
    with pytest.raises(answers.ClaimError):
        answers.decode_answers(claim)


# ----------------------------------------------------------------------------- the real workflow

def _runaway(folder):
    """A crash (SIGKILL) and an infinite loop in part 1; memory exhaustion, os._exit and
    another kernel name in part 2."""
    def part1(nb):
        gc.prepend(nb, "q3a_answer", "import os\nos.kill(os.getpid(), 9)")
        gc.prepend(nb, "q3b_answer", "while True:\n    pass")

    def part2(nb):
        nb["metadata"]["kernelspec"] = {"name": "python2", "display_name": "Python 2", "language": "python"}
        gc.prepend(nb, "q4_answer", "buffer = bytearray(6 << 30)  # 6 Go")
        gc.prepend(nb, "my_texts", "import os\nos._exit(1)")

    gc.edit(folder / "tp3_partie1.ipynb", part1)
    gc.edit(folder / "tp3_partie2.ipynb", part2)


def _structure(folder):
    """Part 1 only, every structural fault at once: kernel julia-1.9, outputs cleared,
    duplicated cells, deleted cells (a test, an instructor cell, an answer), retyped cells,
    tampered metadata, a cell with an unknown grade id worth 100 points."""
    (folder / "tp3_partie2.ipynb").unlink()

    def change(nb):
        nb["metadata"]["kernelspec"] = {"name": "julia-1.9", "display_name": "Julia 1.9", "language": "julia"}
        nb["metadata"]["language_info"] = {"name": "julia"}
        for c in nb["cells"]:
            if c["cell_type"] == "code":
                c["outputs"], c["execution_count"] = [], None
        for gid in ("imports", "q1_n_wrapped", "q2_answer"):
            i = gc.index(nb, gid)
            nb["cells"].insert(i + 1, copy.deepcopy(nb["cells"][i]))
        for gid in ("q2_total", "q3a_head", "q3b_answer"):
            del nb["cells"][gc.index(nb, gid)]
        for gid in ("q2_trainable", "q3a_answer"):
            c = gc.cell(nb, gid)
            c["cell_type"] = "markdown"
            del c["outputs"], c["execution_count"]
        c = gc.cell(nb, "q1_written")
        c["cell_type"], c["outputs"], c["execution_count"] = "code", [], None
        c = gc.cell(nb, "q1_frozen")
        c["metadata"]["nbgrader"].update(points=100, locked=False)
        c["source"] = "pass  # test removed"
        nb["cells"].insert(gc.index(nb, "q1_written"), {
            "cell_type": "code", "execution_count": None, "outputs": [], "source": "pass",
            "metadata": {"nbgrader": {"grade": True, "grade_id": "bonus", "points": 100, "locked": False,
                                      "solution": False, "task": False, "schema_version": 3}}})

    gc.edit(folder / "tp3_partie1.ipynb", change)


def _cut(folder):
    """Part 1 is not a notebook any more; part 2 sleeps past the wall-clock limit."""
    (folder / "tp3_partie1.ipynb").write_text('{"cells": [ this is not json')

    def change(nb):
        for gid in ("q4_answer", "q5_answer", "my_texts"):
            gc.prepend(nb, gid, "import time\ntime.sleep(15)")

    gc.edit(folder / "tp3_partie2.ipynb", change)


FAULTS = {
    "runaway": (_runaway, {"q3a_total": 1, "q3a_drop": 1, "q3b_counts": 2, "q4_curve": 2,
                           "texts_format": 1, "texts_real": 1, "texts_instructor": 1}, ("tp3_partie1", "tp3_partie2")),
    "structure": (_structure, {"q3b_counts": 2}, ("tp3_partie1",)),
}
# faults injected, for the report: runaway 5 (SIGKILL, infinite loop, memory, os._exit, kernel
# python2), structure 12 (kernel julia-1.9, outputs cleared, 3 duplicated, 3 deleted, 2 retyped
# + 1 retyped written answer, tampered metadata, unknown grade id), cut 2 (unreadable notebook,
# wall clock).
N_FAULTS = 5 + 12 + 2


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    root = gc.new_course(tmp_path_factory, "faults")
    for student, (make, _, _) in FAULTS.items():
        make(gc.submit(root, student))
    gc.submit(root, "cut", ("tp3_partie1", "tp3_partie2"))
    _cut(root / "submitted" / "cut" / "tp3")
    start = time.perf_counter()
    main = gc.course_cli(root, "autograde", *FAULT_FLAGS, *FAULTS)
    seconds = time.perf_counter() - start
    cut = gc.course_cli(root, "autograde", *FAULT_FLAGS, "--wall", "40", "cut")
    feedback = gc.course_cli(root, "feedback")
    print(f"\nfault submissions autograded in {seconds:.0f} s ({len(FAULTS)} submissions, {N_FAULTS} faults)")
    return {"root": root, "main": main, "cut": cut, "feedback": feedback}


@pytest.mark.full
@pytest.mark.nbgrader
@pytest.mark.slow
def test_the_loop_goes_on_and_summarises(faults):
    out = faults["main"]
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    summary = out.stdout[out.stdout.index("autograde summary"):]
    for student in FAULTS:
        assert student in summary
    assert faults["cut"].returncode == 0, faults["cut"].stdout[-3000:] + faults["cut"].stderr[-3000:]
    assert "cut at 40 s" in faults["cut"].stdout and "unreadable: tp3_partie1" in faults["cut"].stdout


@pytest.mark.full
@pytest.mark.nbgrader
@pytest.mark.slow
@pytest.mark.parametrize("student", FAULTS)
def test_each_fault_costs_exactly_its_points(faults, student):
    _, lost, present = FAULTS[student]
    assert gc.scores(faults["root"], student) == gc.expected(faults["root"], lost, present)


@pytest.mark.full
@pytest.mark.nbgrader
@pytest.mark.slow
def test_cut_submission_scores_zero_with_an_explanation(faults):
    root = faults["root"]
    assert set(gc.scores(root, "cut").values()) == {0.0}
    part1 = gc.note(gc.graded_nb(root, "cut", "tp3_partie1"))
    part2 = gc.note(gc.graded_nb(root, "cut", "tp3_partie2"))
    assert "illisible" in part1
    assert "limite de temps de 40 s" in part2 and "n'a pas pu aller au bout" in part2
    # the submission itself is never changed by grading (the grader works on a copy)
    assert (root / "submitted" / "cut" / "tp3" / "tp3_partie1.ipynb").read_text() == '{"cells": [ this is not json'


@pytest.mark.full
@pytest.mark.nbgrader
@pytest.mark.slow
def test_structure_is_restored_in_the_graded_notebook(faults):
    nb = gc.graded_nb(faults["root"], "structure", "tp3_partie1")
    ids = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in nb["cells"]]
    release = gc.load(faults["root"] / "release" / "tp3" / "tp3_partie1.ipynb")
    assert [x for x in ids if x] == [c["metadata"]["nbgrader"]["grade_id"] for c in release["cells"]]
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "check_equal(\"base_frozen\"" in gc.source(nb, "q1_frozen")  # locked test restored
    assert gc.cell(nb, "q1_written")["cell_type"] == "markdown"


@pytest.mark.nbgrader
@pytest.mark.slow
@pytest.mark.parametrize("student, notebook, words", [
    ("runaway", "tp3_partie1", ["« q3a_answer » : le noyau Python s'est arrêté", "relancé un noyau",
                                "« q3b_answer » a dépassé la limite de 20 s"]),
    ("runaway", "tp3_partie2", ["« python2 »", "limite de mémoire", "« my_texts » : le noyau Python s'est arrêté"]),
    ("structure", "tp3_partie1", ["« julia-1.9 »", "en double", "« q2_total » avait été supprimée",
                                  "« q3a_head » de l'énoncé avait été supprimée", "remise vide",
                                  "type d'origine", "réglages de correction", "« bonus » n'existe pas"]),
    ("cut", "tp3_partie2", ["limite de temps de 40 s"]),
    ("cut", "tp3_partie1", ["illisible"]),
])
@pytest.mark.full
def test_explanations_reach_the_feedback_html(faults, student, notebook, words):
    assert faults["feedback"].returncode == 0, faults["feedback"].stderr[-3000:]
    import html

    page = html.unescape((faults["root"] / "feedback" / student / "tp3" / f"{notebook}.html").read_text())
    assert "Note de la correction automatique" in page
    for word in words:
        assert word in page, word


@pytest.mark.full
@pytest.mark.nbgrader
@pytest.mark.slow
def test_no_kernel_is_left_behind(faults):
    assert gc.grading_leftovers(faults["root"]) == []
