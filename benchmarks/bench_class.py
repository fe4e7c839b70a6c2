#!/usr/bin/env python3
"""Grading a class: one job at a time against two at once, and what a server would do.

    python benchmarks/bench_class.py [--profile ci] [--students 8] [--jobs 2]

Builds a scratch course, runs the solutions once as a student would, then makes a class of
distinct submissions from it (each with texts of its own; one in four flawed: a retyped
number, fabricated predictions), and grades the whole class with ``course.py autograde
--jobs 1`` and then ``--jobs N``, in the same run. Prints submissions per hour, the
speed-up, peak memory per job (the submission's control group, page cache included), and
a projection, labelled as such, for 300 students on a 16-core / 64 GB server from the
measured cost per submission. Stops without printing times if any submission gets another
score than expected, or if the two runs disagree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import scratch

FLAWS = {  # (notebook, cell, old, new): points lost
    "retyped": (("tp3_partie1", "q2_answer", "total_params = sum(p.numel() for p in model.parameters())",
                 "total_params = 163_037_184"), {"q2_total": 1.0}),
    "fabricated": (("tp3_partie2", "my_texts",
                    "my_predictions = [lab.classify_text(text, model, tokenizer, device) for text, _ in my_texts]",
                    'my_predictions = [("spam", 0.97) for _ in my_texts]'),  # well formed, retyped
                   {"texts_real": 1.0}),
}


def _edit(path: Path, grade_id: str, old: str, new: str) -> None:
    nb = json.loads(path.read_text())
    (cell,) = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == grade_id]
    source = "".join(cell["source"])
    if old not in source:
        sys.exit(f"bench_class: {old!r} not in {grade_id}: the solutions changed, update FLAWS")
    cell["source"] = source.replace(old, new)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False))


def make_class(root: Path, complete: Path, n: int) -> dict[str, dict]:
    """``n`` distinct submissions; returns {student: expected lost points per test}."""
    expected = {}
    for i in range(n):
        student = f"s{i:03d}"
        folder = root / "submitted" / student / "tp3"
        shutil.copytree(complete, folder)
        _edit(folder / "tp3_partie2.ipynb", "my_texts", "my_texts = [",
              f"my_texts = [(\"See you at {i} o'clock, the usual place\", \"ham\"), ")  # every submission distinct
        lost = {}
        if i % 4 == 3:
            (notebook, cell, old, new), lost = list(FLAWS.values())[(i // 4) % len(FLAWS)]
            _edit(folder / f"{notebook}.ipynb", cell, old, new)
        expected[student] = lost
    return expected


def check(root: Path, expected: dict, what: str) -> dict:
    got = {}
    for student, lost in expected.items():
        scores = scratch.scores(root, student)
        want = {k: m - lost.get(k, 0.0) for k, (_, m) in scores.items()}
        have = {k: s for k, (s, _) in scores.items()}
        if have != want:
            sys.exit(f"{what}: {student} scored {have}, expected {want}: the workload went wrong.")
        got[student] = have
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--students", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sandbox", action="store_true", help="grade in the sandbox (default: as autograde chooses)")
    args = parser.parse_args()
    os.environ["TP3_PROFILE"] = args.profile
    flags = ["--sandbox"] if args.sandbox else []
    cpus = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        root = scratch.scratch_course(Path(tmp))
        student_seconds = scratch.executed_solutions(root, Path(tmp) / "complete")
        expected = make_class(root, Path(tmp) / "complete", args.students)
        runs = {}
        for jobs in (1, args.jobs):
            seconds, out = scratch.autograde(root, "--jobs", str(jobs), *flags)
            if out.returncode != 0:
                sys.exit(f"--jobs {jobs}: autograde failed\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
            scores = check(root, expected, f"--jobs {jobs}")
            report = scratch.report(root)
            runs[jobs] = {"seconds": seconds, "scores": scores, "mode": report["mode"],
                          "peaks": [s["peak_memory_mb"] for s in report["students"] if s.get("peak_memory_mb")],
                          "per_submission": [s["seconds"] for s in report["students"]]}
        if runs[1]["scores"] != runs[args.jobs]["scores"]:
            sys.exit("the scores with --jobs 1 and --jobs N differ")
    n = args.students
    one, many = runs[1], runs[args.jobs]
    print(f"class of {n} distinct submissions (profile {args.profile}, {cpus} CPU, mode {one['mode']}; "
          f"the solutions trained once in {student_seconds:.0f} s), same scores in both runs:")
    for jobs, run in runs.items():
        print(f"  --jobs {jobs}: {run['seconds']:7.1f} s = {3600 * n / run['seconds']:6.0f} submissions/hour "
              f"(median {statistics.median(run['per_submission']):.1f} s each; peak memory per job "
              f"{max(run['peaks'], default=0):.0f} MB, median {statistics.median(run['peaks'] or [0]):.0f} MB)")
    print(f"  speed-up of --jobs {args.jobs}: {one['seconds'] / many['seconds']:.2f}x")
    cpu_seconds = many["seconds"] * cpus / n  # CPU time of one submission, every core busy
    peak_gb = max(many["peaks"] + one["peaks"], default=1500) / 1024
    fit = int(64 * 0.8 / peak_gb)
    print(f"  PROJECTION (not measured): 300 students on a 16-core / 64 GB server: about "
          f"{300 * cpu_seconds / 16 / 60:.0f} min with every core busy ({cpu_seconds:.1f} CPU-seconds per submission "
          f"measured here, assumed to scale linearly with cores at this per-core speed); memory allows {fit} "
          f"jobs at once at {peak_gb:.1f} GB each (autograde --jobs auto picks min(cores, memory)).")

if __name__ == "__main__":
    main()
