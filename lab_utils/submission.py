"""The submission archive: both notebooks and the run folder in ``<student_id>.zip``.

Binder's JupyterLab cannot download a folder, so the last cell of part 2 calls
``make_submission``: it checks what the grader needs, writes the archive beside the
notebooks and shows a link that downloads it (an ``<a download>`` link, which
JupyterLab serves through its files API, on Binder too).

The archive holds exactly ``SUBMISSION_FILES`` at its top level: what the course's
``collect --zips`` accepts.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LabError, SubmissionError
from .french import fr_number
from .paths import usual_mode
from .progress import is_grading
from .run import HISTORY_FILE, INFO_FILE, RUN_DIR, RUN_FILES, check_run_files

NOTEBOOKS = ("tp3_partie1.ipynb", "tp3_partie2.ipynb")
SUBMISSION_FILES = (*NOTEBOOKS, *(f"{RUN_DIR}/{name}" for name in RUN_FILES))
STUDENT_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
TRAINING_NOTEBOOK = "tp3_partie2.ipynb"
STUB = "raise NotImplementedError()"
TEXT_STUB = "VOTRE RÉPONSE ICI"


@dataclass
class Submission:
    """The archive written by ``make_submission``, shown in a notebook as a download link."""

    path: Path
    size: int
    warnings: list[str] = field(default_factory=list)

    def _link(self) -> str:
        try:
            return os.path.relpath(self.path, Path.cwd())
        except ValueError:  # another drive (Windows)
            return str(self.path)

    def __repr__(self) -> str:
        lines = [f"Archive écrite : {self.path} ({fr_number(self.size / 1e6, 1)} Mo, "
                 f"{len(SUBMISSION_FILES)} fichiers). Téléchargez-la et rendez-la."]
        lines += [f"  À vérifier : {w}" for w in self.warnings]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        name, link = html.escape(self.path.name), html.escape(self._link())
        parts = [f'<p><a href="{link}" download="{name}" class="tp3-submission">Télécharger {name}</a> '
                 f"({fr_number(self.size / 1e6, 1)}&#8239;Mo : les deux notebooks et le dossier "
                 f"{RUN_DIR}/). C'est ce fichier que vous rendez.</p>"]
        if self.warnings:
            items = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
            parts.append(f"<p>À vérifier avant de rendre (l'archive est écrite quand même) :</p><ul>{items}</ul>")
        return "".join(parts)


def check_student_id(student_id) -> str:
    """The identifier, checked: letters, digits, ``_``, ``.`` and ``-`` only."""
    if not isinstance(student_id, str) or not student_id.strip():
        raise SubmissionError(
            "Écrivez votre identifiant d'étudiant entre les guillemets, par exemple "
            "make_submission(student_id=\"22001234\"), puis relancez la cellule."
        )
    if not STUDENT_ID.match(student_id) or set(student_id) == {"."} or len(student_id) > 64:
        raise SubmissionError(
            f"Identifiant {student_id!r} refusé : attendu au plus 64 lettres sans accent, chiffres, « _ », "
            "« . » ou « - » (pas d'espace, pas seulement des points), comme votre numéro d'étudiant."
        )
    return student_id


def _read_notebook(path: Path):
    import nbformat

    if not path.is_file():
        raise SubmissionError(f"{path.name} est introuvable dans {path.parent} : la cellule doit être "
                              "exécutée dans le dossier des deux notebooks du TP.")
    try:
        nb = nbformat.read(str(path), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # JSON or schema errors, whatever nbformat raises
        raise SubmissionError(f"{path.name} n'est pas un notebook valide ({str(err)[:200]}) : "
                              "rouvrez-le dans JupyterLab, enregistrez-le, puis relancez la cellule.") from None
    return nb


def notebook_warnings(nb, name: str) -> list[str]:
    """What the saved notebook ``nb`` still lacks: unfilled answers, tests never run or failing."""
    warnings, seen = [], set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        if not gid:
            continue
        if gid in seen:
            warnings.append(f"{name} : la cellule « {gid} » est en double (supprimez la copie).")
        seen.add(gid)
        if meta.get("solution") and (STUB in cell.source or TEXT_STUB in cell.source):
            warnings.append(f"{name} : la réponse « {gid} » n'est pas encore écrite.")
        if meta.get("grade") and cell.cell_type == "code":
            if cell.get("execution_count") is None:
                warnings.append(f"{name} : le test « {gid} » n'a pas été exécuté dans la version enregistrée.")
            elif any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
                warnings.append(f"{name} : le test « {gid} » échoue dans la version enregistrée.")
    return warnings


def _check_saved_after_run(folder: Path, run_dir: Path) -> None:
    notebook = folder / TRAINING_NOTEBOOK
    history = run_dir / HISTORY_FILE
    if notebook.stat().st_mtime_ns < history.stat().st_mtime_ns:
        raise SubmissionError(
            f"{TRAINING_NOTEBOOK} n'a pas été enregistré depuis l'entraînement : enregistrez-le "
            "(Ctrl+S, ou File → Save Notebook), puis relancez cette cellule."
        )


def _run_warnings(run_dir: Path) -> list[str]:
    from .profiles import get_profile

    try:
        info = json.loads((run_dir / INFO_FILE).read_text())
    except (OSError, ValueError) as err:
        raise SubmissionError(f"{run_dir / INFO_FILE} est illisible ({err}) : réentraînez "
                              "(train_or_load(..., retrain=True)).") from None
    profile = info.get("profile") if isinstance(info, dict) else None
    expected = get_profile().name
    if profile != expected:
        return [f"{run_dir.name}/ a été entraîné avec le profil {profile!r}, la correction utilise {expected!r}."]
    return []


def make_submission(student_id: str, folder: str | Path = ".", run_dir: str | Path | None = None) -> Submission | None:
    """Écrit l'archive à rendre, ``<student_id>.zip``, à côté des notebooks, et affiche un
    lien pour la télécharger.

    L'archive contient exactement les deux notebooks et le dossier ``tp3_run/``
    (``adapter.safetensors``, ``history.json``, ``run.json``). Avant de l'écrire, la
    fonction vérifie que l'identifiant est valide (lettres, chiffres, ``_ . -``), que
    ``tp3_run/`` est complet et cohérent, que les notebooks sont lisibles et que la
    partie 2 a été enregistrée après l'entraînement. Ce qui reste à faire (réponses
    vides, tests qui échouent) est signalé sans bloquer. Pendant la correction, ne fait rien.
    """
    if is_grading():
        print("Correction en cours : pas d'archive.")
        return None
    student_id = check_student_id(student_id)
    folder = Path(folder).resolve()
    run_dir = Path(run_dir).resolve() if run_dir is not None else folder / RUN_DIR
    missing = [name for name in RUN_FILES if not (run_dir / name).is_file()]
    if missing:
        raise SubmissionError(f"Le dossier {run_dir} est incomplet (il manque {', '.join(missing)}) : exécutez "
                              f"la cellule d'entraînement de {TRAINING_NOTEBOOK}, puis relancez cette cellule.")
    try:
        check_run_files(run_dir)
    except LabError as err:
        raise SubmissionError(str(err)) from None
    warnings = _run_warnings(run_dir)
    for name in NOTEBOOKS:
        warnings += notebook_warnings(_read_notebook(folder / name), name)
    _check_saved_after_run(folder, run_dir)

    path = folder / f"{student_id}.zip"
    sources = [folder / name for name in NOTEBOOKS] + [run_dir / name for name in RUN_FILES]
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{student_id}.", suffix=".zip.tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for arcname, source in zip(SUBMISSION_FILES, sources):
                archive.write(source, arcname)
        os.chmod(tmp, usual_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return Submission(path, path.stat().st_size, warnings)


__all__ = ["NOTEBOOKS", "SUBMISSION_FILES", "STUDENT_ID", "Submission", "check_student_id", "make_submission",
           "notebook_warnings"]
