#!/usr/bin/env python3
"""Time to autograde one submission of the training notebook, with GPT-2 small's architecture.

    python benchmarks/bench_grading.py [--profile random-small]

Builds a scratch copy of the course, runs the solution of tp3_partie2 as a student would
(training once, saving tp3_run/), then times ``course.py autograde`` of that submission
(nbgrader reloads the run; the trusted replay recomputes train, validation and test
accuracy and the classifications from the adapter) in four modes: without the
re-verification, with it evaluating the saved run twice (the student's kernel, then the
replay) or once (``--evaluate-once``: evaluated before the kernels, the results reused by
both), and the default as root (sandbox, evaluated once). It prints the slowest
cells, which is what the per-cell timeout in grading/nbgrader_config.py must cover. Stops
without a time if the submission does not get full marks. ``random-small`` has the speed
of the real model without its download; ``full`` needs the real weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import scratch
from bench_training import matmul_peak

MODES = {  # course.py autograde flags
    "nbgrader with the robust execution step": ["--no-sandbox", "--no-verify"],
    "+ re-verification, evaluating twice": ["--no-sandbox", "--evaluate-once", "off"],
    "+ re-verification, evaluated once": ["--no-sandbox", "--evaluate-once", "on"],
    "+ sandbox (the default as root)": ["--sandbox"],
}
TARGET_S = 60  # grading one part-2 submission on 2 CPUs at GPT-2 small's size


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
    sys.path.insert(0, str(scratch.REPO / "grading"))
    from autograder.sandbox import probe

    modes = dict(MODES) if probe()[0] else {k: v for k, v in MODES.items() if "--sandbox" not in v}
    peak_before = matmul_peak("fp32")
    with tempfile.TemporaryDirectory() as tmp:
        root = scratch.scratch_course(Path(tmp))
        seconds = scratch.executed_solutions(root, root / "submitted" / "student" / "tp3", ("tp3_partie2",))
        print(f"student run (profile {args.profile}, trains once): {seconds:.1f} s")
        totals, verification, evaluated_once = {}, {}, {}
        for mode, flags in modes.items():
            totals[mode], out = scratch.autograde(root, *flags, "student")
            if out.returncode != 0:
                sys.exit(f"{mode}: autograde failed\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
            scratch.require_full_marks(root, "student", mode, ("tp3_partie2",))
            graded = json.loads((root / "autograded" / "student" / "tp3" / "tp3_partie2.ipynb").read_text())
            verification[mode] = graded["metadata"]["tp3_grading"].get("verification", {}).get("seconds")
            once = scratch.report(root)["students"][0].get("evaluated_once_s")
            if ("off" in flags or "--no-verify" in flags) != (once is None):
                sys.exit(f"{mode}: the saved run was {'not ' if once is None else ''}evaluated once before the kernels")
            evaluated_once[mode] = once
        timings = sorted(((cell_seconds(c) or 0.0, c["metadata"]["nbgrader"]["grade_id"]) for c in graded["cells"]
                          if c["cell_type"] == "code" and c["metadata"].get("nbgrader")), reverse=True)
    print(f"autograde of one submission of tp3_partie2 (profile {args.profile}, {os.cpu_count()} CPU), full marks;"
          f" fp32 matmul peak {peak_before:.0f} GFLOP/s before, {matmul_peak('fp32'):.0f} after:")
    for mode, total in totals.items():
        replay = f" (replay {verification[mode]:.1f} s)" if verification.get(mode) else ""
        replay += f" (evaluated once before the kernels: {evaluated_once[mode]:.1f} s)" if evaluated_once.get(mode) else ""
        print(f"  {mode:<42} {total:6.1f} s{replay}")
    twice, once = (totals[m] for m in list(MODES)[1:3])
    print(f"  evaluated once / twice: {once / twice:.2f}")
    default = totals[list(modes)[-1]]
    print(f"  target {TARGET_S} s for the default mode: {'met' if default <= TARGET_S else 'NOT MET'}")
    print("slowest cells (last mode): " + ", ".join(f"{gid} {s:.1f} s" for s, gid in timings[:5]))


if __name__ == "__main__":
    main()
