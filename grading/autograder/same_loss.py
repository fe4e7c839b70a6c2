"""A class where every submission lost the same points: usually the grader's environment, not
the students (no data, no tokenizer, the wrong weights or profile).

:func:`same_loss_warning` is pure: ``course.py autograde`` gives it the per-student results
(as in ``reports/autograde.json``) and the per-test scores read from the gradebook
(:func:`results.test_scores`), and prints what it returns in its summary.
"""

from __future__ import annotations

REFERENCE = "sample-complete"  # course.py samples: the instructor's own solutions


def same_loss_warning(results: list[dict], scores: dict[str, dict[str, tuple[float | None, float]]],
                      minimum: int = 2) -> str | None:
    """A warning when the graded submissions (at least ``minimum``, grader failures left out)
    all lost points on the same test cells, or when the reference submission lost any; else None.

    ``results``: [{"student", "failed", ...}] as ``course.py autograde`` reports them;
    ``scores``: {student: {test cell: (points obtained or None, points possible)}}.
    """
    graded = [r["student"] for r in results if not r.get("failed") and scores.get(r["student"])]
    lost = {s: {cell for cell, (got, worth) in scores[s].items() if (got or 0) < worth} for s in graded}
    hints = ("check the grading environment (`python -m lab_utils check --grading`, TP3_PROFILE, "
             "TP3_DATA_DIR, TIKTOKEN_CACHE_DIR, the GPT-2 weights) and regrade once fixed.")
    if REFERENCE in lost and lost[REFERENCE]:
        cells = sorted(lost[REFERENCE])
        return (f"WARNING: {REFERENCE} (the instructor's solutions) lost "
                f"{_points(scores[REFERENCE], cells):g} point(s) on {', '.join(cells)}: the grader itself is "
                f"wrong here, every other score is suspect; {hints}")
    if len(graded) < minimum:
        return None
    common = set.intersection(*(lost[s] for s in graded))
    if not common:
        return None
    cells = sorted(common)
    worth = max(_points(scores[s], cells) for s in graded)
    return (f"WARNING: all {len(graded)} graded submissions lost points on the same test cells "
            f"({', '.join(cells)}; up to {worth:g} point(s) each). When a whole class fails the same tests, "
            f"the grading environment is the usual cause: {hints}")


def _points(cells: dict[str, tuple[float | None, float]], names) -> float:
    """Points lost on ``names``."""
    return sum(cells[n][1] - (cells[n][0] or 0) for n in names)
