"""The trusted replay and the output budget, without nbgrader (fast).

The replay must take from a student's claim only the answers declared for the test cell,
never a name an instructor cell bound, and must run isolated: ``python -I`` in a folder of
its own, so that a module next to the student's files is never imported. The output budget
must bound what a kernel can make the grader keep, errors included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import grading_course as gc
from autograder import answers, outputs, replay, verify


@pytest.fixture(autouse=True)
def _environment_restored():
    """replay() sets the grading variables for good (it runs in a process of its own); here it runs
    in pytest's, so they are put back for the tests that follow."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _claim(**values) -> str:
    ns = {}
    exec(answers.encoder_source(), ns)
    return eval(answers.capture_expression(list(values)), {**ns, "globals": lambda: values})


def _spec(claim: str) -> dict:
    cells = [{"grade_id": "data", "kind": "locked", "source": "datasets = {'test': [1, 2, 3]}\nminimum = 3"},
             {"grade_id": "t", "kind": "test",
              "source": "assert total == len(datasets['test']), f'attendu {len(datasets[\"test\"])}, obtenu {total}'\n"
                        "assert minimum == 3"}]
    plain = [{"grade_id": c["grade_id"], "cell_type": "code", "source": c["source"], "locked": True} for c in cells]
    declared = answers.answer_names(plain)
    for cell in cells:
        cell["names"] = declared.get(cell["grade_id"], [])
        cell["answers"] = answers.restrict_claim(claim, cell["names"]) if cell["names"] else None
    return {"cells": cells}


def test_only_declared_answers_reach_the_test():
    honest = replay.replay(_spec(_claim(total=3)))
    assert honest["t"] == {"ok": True}
    # the claim also carries instructor names: a smaller test set and a lower minimum
    shaped = _claim(total=1, datasets={"test": [9]}, minimum=0)
    assert json.loads(shaped).keys() == {"total", "datasets", "minimum"}
    verdict = replay.replay(_spec(shaped))["t"]
    assert verdict["ok"] is False and "attendu 3, obtenu 1" in verdict["message"]


def test_a_claim_never_rebinds_an_instructor_name():
    spec = _spec(_claim(total=1))
    spec["cells"][1]["names"] = ["total", "datasets"]  # even if a name were declared by mistake
    spec["cells"][1]["answers"] = _claim(total=1, datasets={"test": [9]})
    assert replay.replay(spec)["t"]["ok"] is False


def test_restrict_claim_refuses_what_is_not_a_claim():
    assert answers.restrict_claim("not json", ["x"]) is None
    assert answers.restrict_claim("[1]", ["x"]) is None
    assert answers.restrict_claim("x" * (answers.MAX_CHARS + 1), ["x"]) is None
    assert json.loads(answers.restrict_claim('{"x": 1, "y": 2}', ["x"])) == {"x": 1}


@pytest.mark.parametrize("sandboxed", [False, True], ids=["plain", "sandbox"])
def test_the_replay_never_imports_from_the_run_folder(tmp_path, sandboxed):
    """A module named like the grader's, next to the run files, is not imported: the
    replay runs with ``python -I`` in a folder of its own that holds copies of the run
    files only."""
    if sandboxed:
        from autograder import sandbox

        ok, why = sandbox.probe()
        if not ok:
            pytest.skip(f"sandbox unavailable here: {why}")
    marker = tmp_path / "imported"
    submission = tmp_path / "submission"
    (submission / "tp3_run").mkdir(parents=True)
    (submission / "tp3_run" / "run.json").write_text("{}")
    for name in ("autograder/__init__.py", "autograder/replay.py", "tp3_run/autograder/__init__.py",
                 "sitecustomize.py", "json.py", "tp3_run/json.py"):
        (submission / name).parent.mkdir(parents=True, exist_ok=True)
        (submission / name).write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    spec = _spec(_claim(total=3))
    spec["cells"].append({"grade_id": "where", "kind": "test", "names": [], "answers": None,
                          "source": "import os, sys\nassert sorted(os.listdir('.')) == ['tp3_run'], os.listdir('.')\n"
                                    "assert sorted(os.listdir('tp3_run')) == ['run.json']\n"
                                    "assert '' not in sys.path and os.getcwd() not in sys.path"})
    iso = verify.Isolation(memory_mb=0 if not sandboxed else 4096, timeout=120, sandbox=sandboxed)
    verdicts = verify.run_replay(spec, submission, iso)
    assert verdicts["t"] == {"ok": True} and verdicts["where"] == {"ok": True}, verdicts
    assert not marker.exists()


# ----------------------------------------------------------------------------- output budget

def _msg(kind: str, **content) -> dict:
    return {"msg_type": kind, "content": content}


def test_errors_are_cut_and_the_first_one_always_kept():
    budget = outputs.OutputBudget(cell_bytes=1 << 20, notebook_bytes=2 << 20)
    outs: list = []
    huge = _msg("error", ename="ValueError", evalue="x" * (60 << 20), traceback=["y" * (60 << 20)] * 3)
    kept = budget.admit(huge, outs)
    assert kept is not None and outputs.message_bytes(kept["content"]) <= outputs.ERROR_BYTES + 200
    outs.append({"output_type": "error"})
    for _ in range(200):  # more errors of the same cell count like any output
        if budget.admit(dict(huge), outs) is not None:
            outs.append({"output_type": "error"})
    assert budget.cell_used <= (1 << 20) + outputs.ERROR_BYTES + 200


def test_the_notebook_budget_holds_across_cells():
    budget = outputs.OutputBudget(cell_bytes=1 << 20, notebook_bytes=3 << 20)
    kept = 0
    for _ in range(10):
        budget.new_cell()
        outs: list = []
        for _ in range(4):
            msg = _msg("stream", name="stdout", text="z" * (300 << 10))
            if budget.admit(msg, outs) is not None:
                kept += 300 << 10
    assert kept <= 3 << 20 and budget.notebook_full
    assert any("tronquée" in o["text"] for o in outs)  # the last cell says it was cut


# ----------------------------------------------------------------------------- deferred oracles

def test_oracles_are_deferred_in_the_kernel_only(monkeypatch):
    """In a kernel whose tests the replay re-runs, recomputations from the adapter are left
    to the replay: the kernel's checks pass provisionally; the replay never defers."""
    from lab_utils import grading
    from lab_utils.classify import Prediction

    monkeypatch.setenv("TP3_ORACLES", "replay")
    expected = grading.Deferred()
    grading.check_number("test_acc", 0.42, expected, abs_tol=1e-9)
    grading.check(expected >= 0.9, "minimum")
    want = Prediction(grading.DeferredLabel(""), grading.Deferred())
    grading.check_prediction("p", ("spam", 0.8), want)
    assert sum(want.label == e for e in ("spam", "ham")) == 2
    spec = {"cells": [{"grade_id": "t", "kind": "test", "names": [], "answers": None,
                       "source": "import lab_utils.grading as g\nassert not g.deferred()"}]}
    assert replay.replay(spec)["t"] == {"ok": True}  # the variable was set in this process too
