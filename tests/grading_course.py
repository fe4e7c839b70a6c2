"""A generated course and one complete submission, built once per test session and shared by
the nbgrader workflow, grading-fault and sandbox tests (each gets its own copy of the course).

Not a test module: helpers to copy the course, derive submissions from the complete one,
edit their cells, run ``grading/course.py`` and read the gradebook.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRADING = REPO / "grading"
if str(GRADING) not in sys.path:
    sys.path.insert(0, str(GRADING))
import course  # noqa: E402

AUTO_POINTS = {"tp3_partie1": 10.0, "tp3_partie2": 10.0}
_BUILT: dict[str, Path] = {}


def course_cli(root: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GRADING / "course.py"), "--root", str(root), *args],
                          capture_output=True, text=True, env={**os.environ, "TP3_PROFILE": "ci"}, timeout=timeout)


def base(tmp_path_factory) -> Path:
    """``<base>/course`` (generated: release + gradebook) and ``<base>/complete`` (the solutions
    executed as a student would, with their tp3_run/), built once per session, and once for all
    the workers of a parallel run (pytest-xdist: the first builds it, the others wait and reuse)."""
    if "base" not in _BUILT:
        from filelock import FileLock

        top = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            top = top.parent  # the run's folder, above each worker's own
        folder = top / "grading-base"
        with FileLock(str(top / "grading-base.lock")):
            if not (folder / "built").is_file():
                shutil.rmtree(folder, ignore_errors=True)
                _build_base(folder)
                (folder / "built").touch()
        _BUILT["base"] = folder
    return _BUILT["base"]


def _build_base(folder: Path) -> None:
    root = folder / "course"
    root.mkdir(parents=True)
    shutil.copy2(GRADING / "nbgrader_config.py", root)
    shutil.copytree(GRADING / "source", root / "source")
    out = course_cli(root, "generate", "--no-copy")
    assert out.returncode == 0, out.stderr
    complete = folder / "complete"
    complete.mkdir()
    for nb in course.source_notebooks(root):
        shutil.copy2(nb, complete / nb.name)
    course.execute_as_student(complete)
    assert (complete / "tp3_run" / "adapter.safetensors").is_file()


def new_course(tmp_path_factory, name: str, config: str = "") -> Path:
    """A fresh copy of the generated course (no submission); ``config`` is appended to its
    nbgrader_config.py."""
    src = base(tmp_path_factory) / "course"
    root = tmp_path_factory.mktemp(name)
    for item in ("nbgrader_config.py", "gradebook.db"):
        shutil.copy2(src / item, root / item)
    for item in ("source", "release"):
        shutil.copytree(src / item, root / item)
    if config:
        with open(root / "nbgrader_config.py", "a") as f:
            f.write("\n" + config + "\n")
    return root


def submit(root: Path, student: str, notebooks: tuple[str, ...] = ("tp3_partie1", "tp3_partie2")) -> Path:
    """A copy of the complete submission (only ``notebooks``, with tp3_run/) as ``student``."""
    complete = _BUILT["base"] / "complete"
    folder = root / "submitted" / student / "tp3"
    folder.mkdir(parents=True)
    for name in notebooks:
        shutil.copy2(complete / f"{name}.ipynb", folder)
    shutil.copytree(complete / "tp3_run", folder / "tp3_run")
    return folder


# ----------------------------------------------------------------------------- notebook edits

def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def save(path: Path, nb: dict) -> None:
    Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False))


def index(nb: dict, grade_id: str) -> int:
    (i,) = [i for i, c in enumerate(nb["cells"]) if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
    return i


def cell(nb: dict, grade_id: str) -> dict:
    return nb["cells"][index(nb, grade_id)]


def source(nb: dict, grade_id: str) -> str:
    return "".join(cell(nb, grade_id)["source"])


def prepend(nb: dict, grade_id: str, code: str) -> None:
    c = cell(nb, grade_id)
    c["source"] = code.rstrip("\n") + "\n" + "".join(c["source"])


def replace(nb: dict, grade_id: str, old: str, new: str) -> None:
    text = source(nb, grade_id)
    assert old in text, (grade_id, old)
    cell(nb, grade_id)["source"] = text.replace(old, new)


def edit(path: Path, change) -> None:
    nb = load(path)
    change(nb)
    save(path, nb)


# ----------------------------------------------------------------------------- results

def scores(root: Path, student: str) -> dict[str, float | None]:
    """grade id -> automatic score of every test cell (both notebooks)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        sub = gb.find_submission("tp3", student)
        solutions = {c.name for nb in sub.notebooks for c in nb.notebook.solution_cells}
        return {g.name: g.auto_score for nb in sub.notebooks for g in nb.grades
                if g.cell_type == "code" and g.name not in solutions}


def full_scores(root: Path) -> dict[str, float]:
    """grade id -> points of every test cell, from the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        out = {}
        for nb in gb.find_assignment("tp3").notebooks:
            solutions = {c.name for c in nb.solution_cells}
            out.update({c.name: c.max_score for c in nb.grade_cells
                        if c.cell_type == "code" and c.name not in solutions})
        return out


def tests_of(root: Path, notebook: str) -> set[str]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        nb = gb.find_notebook(notebook, "tp3")
        solutions = {c.name for c in nb.solution_cells}
        return {c.name for c in nb.grade_cells if c.cell_type == "code" and c.name not in solutions}


def expected(root: Path, lost: dict[str, float], present: tuple[str, ...] = ("tp3_partie1", "tp3_partie2")) -> dict:
    """Full marks minus ``lost``; zero for the notebooks not in ``present``."""
    full = full_scores(root)
    out = {}
    for notebook in AUTO_POINTS:
        for gid in tests_of(root, notebook):
            out[gid] = (full[gid] - lost.get(gid, 0.0)) if notebook in present else 0.0
    return out


def digest(folder: Path) -> str:
    """One hash of every file's path and bytes under ``folder``."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def grade_beside_honest(root: Path, flags: tuple[str, ...], attackers: tuple[str, ...]) -> dict:
    """Grade ``complete`` first, record its scores and files, then grade ``attackers``:
    {"first", "before", "out", "seconds"} for the tests to compare."""
    import time

    first = course_cli(root, "autograde", *flags, "complete")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    before = {"scores": scores(root, "complete"), "submitted": digest(root / "submitted" / "complete"),
              "autograded": digest(root / "autograded" / "complete")}
    start = time.perf_counter()
    out = course_cli(root, "autograde", *flags, *attackers)
    return {"first": first, "before": before, "out": out, "seconds": time.perf_counter() - start}


def graded_nb(root: Path, student: str, notebook: str) -> dict:
    return load(root / "autograded" / student / "tp3" / f"{notebook}.ipynb")


def outputs_text(nb: dict, grade_id: str | None = None) -> str:
    """All text of the outputs (of one cell, or of the whole notebook)."""
    parts = []
    for c in nb["cells"]:
        if grade_id and c["metadata"].get("nbgrader", {}).get("grade_id") != grade_id:
            continue
        for o in c.get("outputs", []):
            parts.append("".join(o.get("text", "")) + str(o.get("evalue", "")) + "".join(
                "".join(v) if isinstance(v, list) else str(v) for v in o.get("data", {}).values()))
    return "\n".join(parts)


def note(nb: dict) -> str:
    for c in nb["cells"]:
        if c["metadata"].get("tp3_grading_note"):
            return "".join(c["source"])
    return ""


def processes_of_uid(uid: int) -> list[str]:
    """Processes running as ``uid`` (sandboxed kernels left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if proc.stat().st_uid == uid:
                    found.append(f"{proc.name} {(proc / 'cmdline').read_text().replace(chr(0), ' ')[:100]}")
            except OSError:
                continue
    return found


def processes_under(path: Path) -> list[str]:
    """Processes whose working folder is inside ``path`` (kernels left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(path)):
            found.append(f"{proc.name} {cwd}")
    return found


def grading_leftovers(root: Path) -> list[str]:
    """Processes still working in the course or in the grading workspace of one of its
    students (kernels left behind)."""
    import tempfile

    found = processes_under(root)
    for student in sorted(p.name for p in (root / "submitted").iterdir()):
        found += processes_under(Path(tempfile.gettempdir()) / f"tp3-grade-{student}-")
    return found


def processes_with(token: str) -> list[str]:
    """Processes whose command line holds ``token`` (left behind by a kernel)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if token in cmdline and "pytest" not in cmdline:
                found.append(f"{proc.name} {cmdline[:120]}")
    return found
