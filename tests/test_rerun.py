"""Re-running is safe: "Restart Kernel and Run All" of part 2 reloads tp3_run/ and shows exactly
what the first run showed; part 1's cells can be run twice. Oracle: the outputs the first,
independent execution saved (nbconvert, as course.py runs a student's notebook)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import grading_course as gc

pytestmark = [pytest.mark.nbgrader, pytest.mark.slow]


def _execute(folder, name):
    env = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}
    env.update(TP3_PROGRESS="0", TP3_PROFILE="ci")
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--inplace",
                    "--allow-errors", "--ExecutePreprocessor.timeout=1800", name],
                   cwd=folder, env=env, check=True, capture_output=True)
    return gc.load(folder / name)


def _shown(cell) -> list:
    """What a code cell shows, minus what legitimately changes between two runs: pandas'
    random table ids, and the line saying that the run was reloaded."""
    shown = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            text = "".join(out["text"])
            text = "".join(line for line in text.splitlines(keepends=True)
                           if not line.startswith("Exécution déjà enregistrée"))
            if text:
                shown.append(("stream", out["name"], text))
        elif out["output_type"] in ("execute_result", "display_data"):
            data = {k: ("".join(v) if isinstance(v, list) else v) for k, v in out["data"].items()}
            if "text/html" in data:
                data["text/html"] = re.sub(r"T_[0-9a-f]{5}", "T_id", data["text/html"])
                data.pop("text/plain", None)  # "<pandas...Styler at 0x7f...>"
            shown.append((out["output_type"], data))
        else:
            shown.append((out["output_type"], out.get("ename"), out.get("evalue")))
    # nbconvert may cut one print into several stream outputs: join them
    merged = []
    for item in shown:
        if merged and item[0] == "stream" and merged[-1][0] == "stream" and merged[-1][1] == item[1]:
            merged[-1] = ("stream", item[1], merged[-1][2] + item[2])
        else:
            merged.append(item)
    return merged


def test_restart_and_run_all_shows_the_same_results(tmp_path_factory):
    first = gc.base(tmp_path_factory) / "complete"
    folder = tmp_path_factory.mktemp("rerun")
    shutil.copy2(first / "tp3_partie2.ipynb", folder)
    shutil.copytree(first / "tp3_run", folder / "tp3_run")
    files = {p.name: p.read_bytes() for p in (folder / "tp3_run").iterdir()}
    before = gc.load(folder / "tp3_partie2.ipynb")
    after = _execute(folder, "tp3_partie2.ipynb")
    assert {p.name: p.read_bytes() for p in (folder / "tp3_run").iterdir()} == files  # not trained again
    train = gc.cell(after, "train")
    assert "rechargée, sans nouvel entraînement" in "".join(
        "".join(o.get("text", "")) for o in train["outputs"])
    for b, a in zip(before["cells"], after["cells"]):
        if b["cell_type"] == "code":
            assert _shown(a) == _shown(b), b["metadata"].get("nbgrader", {}).get("grade_id", b.get("id"))


def test_part1_cells_can_be_run_twice(tmp_path_factory):
    """Q3(a): running the head cell and the answer cell a second time keeps head_drop."""
    first = gc.base(tmp_path_factory) / "complete"
    folder = tmp_path_factory.mktemp("rerun1")
    nb = gc.load(first / "tp3_partie1.ipynb")
    for gid in ("q3a_drop", "q3a_total", "q3a_answer", "q3a_head"):  # each inserted right after q3a_drop
        copy = json.loads(json.dumps(gc.cell(nb, gid)))
        copy["metadata"], copy["id"] = {}, f"again-{gid.replace('_', '-')}"
        nb["cells"].insert(gc.index(nb, "q3a_drop") + 1, copy)
    gc.save(folder / "tp3_partie1.ipynb", nb)
    ran = _execute(folder, "tp3_partie1.ipynb")
    errors = [(c.get("id"), o["ename"], o["evalue"]) for c in ran["cells"] if c["cell_type"] == "code"
              for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors == []
    again = next(c for c in ran["cells"] if c.get("id") == "again-q3a-answer")
    assert "tête : -38\u202f595\u202f838" in "".join("".join(o.get("text", "")) for o in again["outputs"])
