#!/usr/bin/env python3
"""Time to autograde one submission of the training notebook, with GPT-2 small's architecture.

    python benchmarks/bench_grading.py [--profile random-small]

Builds a scratch copy of the course, runs the solution of tp3_partie2 as a student would
(training once, saving tp3_run/), then times ``course.py autograde`` of that submission
(nbgrader reloads the run, re-evaluates, recomputes the test accuracy and the
classifications), without and with the trusted re-verification, and prints the slowest
cells, which is what the per-cell timeout in grading/nbgrader_config.py must cover. ``random-small`` has the speed of the real model
without its download; ``full`` needs the real weights.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "grading"))
import course  # noqa: E402

MODES = {  # course.py autograde flags
    "nbgrader with the robust execution step": ["--no-verify"],
    "+ trusted re-verification (the default)": [],
}


def cell_seconds(cell) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return (end - start).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="random-small")
    args = parser.parse_args()
    os.environ["TP3_PROFILE"] = args.profile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "course"
        root.mkdir()
        shutil.copy2(REPO / "grading" / "nbgrader_config.py", root)
        shutil.copytree(REPO / "grading" / "source", root / "source")
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", "tp3", "--force"], cwd=root,
                       check=True, capture_output=True)
        folder = root / "submitted" / "student" / "tp3"
        folder.mkdir(parents=True)
        shutil.copy2(root / "source" / "tp3" / "tp3_partie2.ipynb", folder)
        start = time.perf_counter()
        course.execute_as_student(folder)
        print(f"student run (profile {args.profile}, trains once): {time.perf_counter() - start:.1f} s")
        subprocess.run([sys.executable, "-m", "nbgrader", "db", "student", "add", "student"], cwd=root,
                       check=True, capture_output=True)
        totals = {}
        for mode, flags in MODES.items():
            start = time.perf_counter()
            out = subprocess.run([sys.executable, str(REPO / "grading" / "course.py"), "--root", str(root),
                                  "autograde", *flags, "student"], capture_output=True, text=True)
            totals[mode] = time.perf_counter() - start
            if out.returncode != 0:
                sys.exit(f"{mode}: autograde failed\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        graded = json.loads((root / "autograded" / "student" / "tp3" / "tp3_partie2.ipynb").read_text())
        timings = sorted(((cell_seconds(c) or 0.0, c["metadata"]["nbgrader"]["grade_id"]) for c in graded["cells"]
                          if c["cell_type"] == "code"), reverse=True)
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
            nb = gb.find_submission_notebook("tp3_partie2", "tp3", "student")
            score = (nb.code_score, nb.max_code_score)
    print(f"autograde of one submission of tp3_partie2 (profile {args.profile}, {os.cpu_count()} CPU), "
          f"automatic score {score[0]:g}/{score[1]:g}:")
    for mode, seconds in totals.items():
        print(f"  {mode:<42} {seconds:6.1f} s")
    print("slowest cells: " + ", ".join(f"{gid} {s:.1f} s" for s, gid in timings[:5]))


if __name__ == "__main__":
    main()
