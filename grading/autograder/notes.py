"""Explanations written into a graded notebook, where nbgrader's feedback shows them.

nbgrader keeps comments only for answer cells, so the autograder writes its explanations
into the notebook itself: a note cell at the top ("Note de la correction automatique"),
and an error output in each cell that lost its points because of the grading rules (an
error output in a test cell is also what makes nbgrader give it zero). The feedback HTML
renders both. Everything the student reads is in French.
"""

from __future__ import annotations

from nbformat import NotebookNode
from nbformat.v4 import new_markdown_cell, new_output

NOTE_KEY = "tp3_grading_note"
META_KEY = "tp3_grading"  # notebook metadata: answers read by each test, incidents, status
NOTE_TITLE = "### Note de la correction automatique"
NOTE_FOOTER = ("*Ces remarques ont été ajoutées par la correction automatique ; les points "
               "indiqués plus bas en tiennent compte.*")


def note_cell(nb: NotebookNode) -> NotebookNode:
    """The note cell at the top of the notebook (created on first use)."""
    for cell in nb.cells:
        if cell.get("metadata", {}).get(NOTE_KEY):
            return cell
    cell = new_markdown_cell(f"{NOTE_TITLE}\n\n{NOTE_FOOTER}")
    cell.metadata[NOTE_KEY] = True
    nb.cells.insert(0, cell)
    return cell


def add_note(nb: NotebookNode, text: str) -> None:
    """Add one bullet to the note cell (once)."""
    cell = note_cell(nb)
    bullet = f"- {text}"
    if bullet in cell.source:
        return
    head, _, _ = cell.source.partition(NOTE_FOOTER)
    cell.source = f"{head.rstrip()}\n{bullet}\n\n{NOTE_FOOTER}"


def notes(nb: NotebookNode) -> list[str]:
    for cell in nb.cells:
        if cell.get("metadata", {}).get(NOTE_KEY):
            return [line[2:] for line in cell.source.splitlines() if line.startswith("- ")]
    return []


# Names of the errors the grader writes into graded notebooks (shown to students).
TIMEOUT = "Temps dépassé"
KERNEL_DIED = "Noyau arrêté"
NOT_RUN = "Cellule non exécutée"
INTERRUPTED = "Correction interrompue"
UNREADABLE = "Notebook illisible"
WITHDRAWN = "Vérification échouée"


def error_output(ename: str, message: str) -> NotebookNode:
    """An error output (what nbgrader reads as a failed cell) carrying a French message."""
    return new_output("error", ename=ename, evalue=message, traceback=[f"{ename} : {message}"])


def grading_meta(nb: NotebookNode) -> dict:
    return nb.metadata.setdefault(META_KEY, {})


def cell_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def is_test_cell(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "code" and bool(meta.get("grade")) and not meta.get("solution")
