"""Normalise a submitted notebook before nbgrader grades it.

nbgrader 0.9.6 already restores the source of locked cells, the type of cells it knows and
the kernelspec. What it does not do, and what this step adds (first step of
``Autograde.sanitize_preprocessors``):

- duplicated cells (same grade id): nbgrader keeps the *last* copy and strips the metadata
  of the others to ``{}``, which then fails metadata validation: the whole submission is
  rejected. Here the *first* copy keeps the id; later copies of locked cells are removed,
  later copies of answer cells become ordinary cells (their code still runs, in place);
- deleted cells: nbgrader does not put locked cells back (a deleted test cell is left
  ungraded, a deleted instructor cell breaks the cells after it). Here every missing cell
  of the release is put back at its place: locked cells with their source, answer cells
  with the release stub (so an answer that was deleted scores zero, as an unanswered one);
- tampered nbgrader metadata (points, locked, grade flags, unknown ids): replaced by the
  gradebook's, or removed from cells the gradebook does not know;
- a changed cell type (code <-> markdown) is restored, as nbgrader does, but also reported;
- the kernelspec and language are reset to the assignment's (Python), whatever the
  submission says (``julia-1.9``, ``python2``, missing);
- malformed cells (no outputs list, outputs on a markdown cell) are made well-formed;
- cells of the release moved out of order are put back in the reference order (the
  student's own cells follow the release cell they followed), so that the instructor's
  cells run, in the kernel as in the re-verification, in the order they were written.

Every change is explained, in French, in the note cell at the top of the graded notebook.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell

from .notes import META_KEY, NOTE_KEY, add_note, cell_id, grading_meta

DEFAULT_KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
STUB_NOTE = "(cellule remise par la correction automatique)"


class Reference:
    """What the release of one notebook looks like, from the gradebook (+ the source's order)."""

    def __init__(self, cells: list[dict], kernelspec: dict | None):
        self.cells = cells  # in notebook order: grade_id, cell_type, source, nbgrader
        self.by_id = {c["grade_id"]: c for c in cells}
        self.kernelspec = kernelspec or DEFAULT_KERNELSPEC

    @classmethod
    def from_gradebook(cls, gb, notebook_id: str, assignment_id: str, order: list[str] | None = None):
        nb = gb.find_notebook(notebook_id, assignment_id)
        grades = {c.name: c for c in nb.grade_cells}
        solutions = {c.name for c in nb.solution_cells}
        tasks = {c.name: c for c in nb.task_cells}
        cells = {}
        for sc in nb.source_cells:
            meta = {"grade": sc.name in grades, "grade_id": sc.name, "locked": bool(sc.locked),
                    "schema_version": 3, "solution": sc.name in solutions, "task": sc.name in tasks}
            if sc.name in grades:
                meta["points"] = float(grades[sc.name].max_score)
            elif sc.name in tasks:
                meta["points"] = float(tasks[sc.name].max_score)
            cells[sc.name] = {"grade_id": sc.name, "cell_type": sc.cell_type, "source": sc.source or "",
                              "nbgrader": meta}
        order = [name for name in (order or []) if name in cells]
        ordered = [cells[name] for name in order] + [cells[name] for name in cells if name not in order]
        kernelspec = json.loads(nb.kernelspec) if nb.kernelspec else None
        return cls(ordered, kernelspec)


def source_order(root: str | Path, assignment_id: str, notebook_id: str) -> list[str]:
    """Grade ids in the order of the instructor's source notebook (empty if not found)."""
    path = Path(root) / "source" / assignment_id / f"{notebook_id}.ipynb"
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.get("cells", [])
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")]


def _restored_cell(ref: dict) -> NotebookNode:
    if ref["cell_type"] == "code":
        cell = new_code_cell(ref["source"])
    else:
        cell = new_markdown_cell(ref["source"])
    cell.metadata["nbgrader"] = dict(ref["nbgrader"])
    if ref["nbgrader"]["locked"]:
        cell.metadata["editable"] = False
        cell.metadata["deletable"] = False
    return cell


def _set_type(cell: NotebookNode, cell_type: str) -> None:
    cell.cell_type = cell_type
    if cell_type == "code":
        cell.setdefault("outputs", [])
        cell.setdefault("execution_count", None)
    else:
        cell.pop("outputs", None)
        cell.pop("execution_count", None)


def _label(ref: dict) -> str:
    meta = ref["nbgrader"]
    if meta["grade"] and not meta["solution"]:
        return f"la cellule de test « {ref['grade_id']} »"
    if meta["solution"]:
        return f"la cellule de réponse « {ref['grade_id']} »"
    return f"la cellule « {ref['grade_id']} » de l'énoncé"


def repair_notebook(nb: NotebookNode, ref: Reference) -> list[str]:
    """Normalise ``nb`` in place against ``ref``; return the French explanations."""
    said: list[str] = []
    # anything a submission says about its own grading is dropped (fake notes, fake status)
    nb.metadata[META_KEY] = {}
    nb.cells = [c for c in nb.cells if not (isinstance(c, dict) and c.get("metadata", {}).get(NOTE_KEY))]

    # kernel: the assignment's, whatever the submission claims
    kernelspec = nb.metadata.get("kernelspec")
    name = kernelspec.get("name") if isinstance(kernelspec, dict) else None
    if name != ref.kernelspec.get("name"):
        said.append(f"Le notebook demandait le noyau « {name or 'aucun'} » ; il a été corrigé avec le "
                    f"noyau Python du TP (« {ref.kernelspec.get('name')} »).")
    nb.metadata["kernelspec"] = dict(ref.kernelspec)
    nb.metadata["language_info"] = {"name": "python"}

    cells: list[NotebookNode] = []
    seen: set[str] = set()
    for cell in nb.cells:
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            said.append("Une cellule illisible a été ignorée.")
            continue
        cell.setdefault("metadata", NotebookNode())
        cell.setdefault("source", "")
        if isinstance(cell.source, list):
            cell.source = "".join(str(s) for s in cell.source)
        _set_type(cell, cell.cell_type)  # well-formed outputs / execution_count
        meta = cell.metadata.get("nbgrader")
        gid = meta.get("grade_id") if isinstance(meta, dict) else None
        if meta is not None and (not isinstance(meta, dict) or gid not in ref.by_id):
            cell.metadata.pop("nbgrader", None)  # unknown id or garbage: an ordinary cell
            if gid:
                said.append(f"La cellule « {gid} » n'existe pas dans l'énoncé : elle est traitée comme "
                            "une cellule ordinaire.")
            cells.append(cell)
            continue
        if gid is None:
            cells.append(cell)
            continue
        r = ref.by_id[gid]
        if gid in seen:
            if r["nbgrader"]["locked"]:
                said.append(f"{_label(r).capitalize()} était en double : la copie a été retirée "
                            "(seule la première compte).")
                continue
            cell.metadata.pop("nbgrader", None)
            said.append(f"{_label(r).capitalize()} était en double : seule la première est notée, "
                        "la copie est exécutée comme une cellule ordinaire.")
            cells.append(cell)
            continue
        seen.add(gid)
        if cell.cell_type != r["cell_type"]:
            said.append(f"{_label(r).capitalize()} avait été changée en cellule "
                        f"{'de code' if cell.cell_type == 'code' else 'de texte'} : son type d'origine "
                        "a été rétabli.")
            _set_type(cell, r["cell_type"])
        if cell.metadata["nbgrader"] != r["nbgrader"] and {k: v for k, v in cell.metadata["nbgrader"].items()
                                                           if k not in ("checksum", "cell_type")} != r["nbgrader"]:
            said.append(f"Les réglages de correction de {_label(r)} avaient été modifiés : ceux de "
                        "l'énoncé ont été rétablis.")
        cell.metadata["nbgrader"] = dict(r["nbgrader"])
        cells.append(cell)

    # cells of the release that are missing: back at their place (after their predecessor)
    missing = [r for r in ref.cells if r["grade_id"] not in seen]
    for r in missing:
        position = 0
        index = ref.cells.index(r)
        before = {c["grade_id"] for c in ref.cells[:index]}
        for i, cell in enumerate(cells):
            if cell_id(cell) in before:
                position = i + 1
        cells.insert(position, _restored_cell(r))
        if r["nbgrader"]["solution"]:
            said.append(f"{_label(r).capitalize()} avait été supprimée : elle a été remise vide "
                        "(la réponse manque donc).")
        else:
            said.append(f"{_label(r).capitalize()} avait été supprimée : elle a été remise à sa place.")
    cells, moved = reference_order(cells, ref)
    if moved:
        said.append(f"L'ordre des cellules de l'énoncé avait été changé ({', '.join(moved[:5])}"
                    f"{'...' if len(moved) > 5 else ''}) : il a été rétabli ; vos cellules ajoutées restent "
                    "après la cellule de l'énoncé qui les précédait.")
    nb.cells = cells
    return said


def reference_order(cells: list, ref: Reference) -> tuple[list, list[str]]:
    """``cells`` with every known cell in the reference's order, each followed by the
    ordinary cells that followed it in the submission (those before any known cell stay
    first); and the grade ids that were out of place."""
    rank = {r["grade_id"]: i for i, r in enumerate(ref.cells)}
    head, groups = [], []
    for cell in cells:
        gid = cell_id(cell)
        if gid in rank:
            groups.append((rank[gid], [cell]))
        elif groups:
            groups[-1][1].append(cell)
        else:
            head.append(cell)
    ranks = [r for r, _ in groups]
    if ranks == sorted(ranks):
        return cells, []
    moved = [ref.cells[r]["grade_id"] for r in ranks if r not in _longest_increasing(ranks)]
    ordered = head + [c for _, group in sorted(groups, key=lambda g: g[0]) for c in group]
    return ordered, moved


try:
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import NbGraderPreprocessor

    class RepairSubmission(NbGraderPreprocessor):
        """nbgrader sanitize step: :func:`repair_notebook` against the gradebook."""

        def preprocess(self, nb, resources):
            info = resources["nbgrader"]
            cfg = self.config.get("CourseDirectory", {})
            root = cfg.get("root") if isinstance(cfg.get("root"), str) else os.getcwd()
            order = source_order(root, info["assignment"], info["notebook"])
            with Gradebook(info["db_url"]) as gb:
                ref = Reference.from_gradebook(gb, info["notebook"], info["assignment"], order)
            said = repair_notebook(nb, ref)
            for line in said:
                self.log.warning("repair %s/%s: %s", info["student"], info["notebook"], line)
                add_note(nb, line)
            grading_meta(nb)["repairs"] = said
            return nb, resources
except ImportError:  # nbgrader missing: the functions above still work
    pass


def _longest_increasing(values: list[int]) -> set[int]:
    """The values of a longest increasing subsequence (the cells that did not move)."""
    best: list[list[int]] = []
    for i, v in enumerate(values):
        prefix = max((best[j] for j in range(i) if values[j] < v), key=len, default=[])
        best.append(prefix + [v])
    return set(max(best, key=len, default=[]))
