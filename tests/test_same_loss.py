"""autograder.same_loss: a class where every submission lost the same points is flagged."""

from __future__ import annotations

import grading_course  # noqa: F401 (puts grading/ on sys.path)
from autograder.same_loss import same_loss_warning

CELLS = {"q1": 1.0, "q4_curve": 2.0, "q5_test": 2.0}


def _scores(**lost: list[str]) -> dict:
    """{student: {cell: (score, points)}}: full marks but the cells listed per student."""
    return {s: {c: (0.0 if c in cells else p, p) for c, p in CELLS.items()} for s, cells in lost.items()}


def _results(*students, failed=()):
    return [{"student": s, "score": 0, "max": 5, "seconds": 1.0, "failed": s in failed, "status": []}
            for s in students]


def test_every_submission_losing_the_same_cells_is_flagged():
    warning = same_loss_warning(_results("a", "b", "c"),
                                _scores(a=["q4_curve", "q5_test"], b=["q4_curve", "q5_test", "q1"], c=["q4_curve", "q5_test"]))
    assert warning.startswith("WARNING: all 3 graded submissions lost points on the same test cells "
                              "(q4_curve, q5_test; up to 4 point(s) each)")
    assert "python -m lab_utils check --grading" in warning


def test_different_losses_or_a_single_submission_are_not_flagged():
    assert same_loss_warning(_results("a", "b"), _scores(a=["q4_curve"], b=["q5_test"])) is None
    assert same_loss_warning(_results("a", "b"), _scores(a=[], b=[])) is None
    assert same_loss_warning(_results("a"), _scores(a=["q4_curve"])) is None


def test_grader_failures_are_left_out():
    """A student the grader failed for has zeros that say nothing about the environment."""
    results = _results("a", "b", "c", failed=("c",))
    assert same_loss_warning(results, _scores(a=["q1"], b=[], c=["q1", "q4_curve", "q5_test"])) is None
    assert same_loss_warning(results, _scores(a=["q1"], b=["q1"], c=[])) is not None


def test_reference_submission_losing_anything_is_flagged():
    warning = same_loss_warning(_results("sample-complete", "b"), _scores(**{"sample-complete": ["q5_test"], "b": []}))
    assert warning.startswith("WARNING: sample-complete (the instructor's solutions) lost 2 point(s) on q5_test")


def test_none_score_counts_as_lost():
    scores = {s: {"q1": (None, 1.0)} for s in ("a", "b")}
    assert "(q1; up to 1 point(s) each)" in same_loss_warning(_results("a", "b"), scores)
