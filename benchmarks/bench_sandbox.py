#!/usr/bin/env python3
"""What the sandbox and the re-verification cost per submission.

    python benchmarks/bench_sandbox.py [--profile ci] [--repeat 2]

Builds a scratch copy of the course, runs the solutions as a student would (training once),
then times ``course.py autograde`` of that one submission, alternating the modes so that a
change of machine load hits them alike:

- ``plain, no verify``: nbgrader with the robust execution step only;
- ``plain``: + the trusted re-verification (what ``course.py autograde`` does);
- ``sandbox``: + every kernel in the bubblewrap sandbox (``--sandbox``, needs root).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import scratch

MODES = {"plain, no verify": ["--no-sandbox", "--no-verify"], "plain": ["--no-sandbox"], "sandbox": ["--sandbox"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="ci")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    os.environ["TP3_PROFILE"] = args.profile
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        root = scratch.scratch_course(Path(tmp))
        scratch.executed_solutions(root, root / "submitted" / "student" / "tp3")
        for _ in range(args.repeat):
            for mode, flags in MODES.items():
                elapsed, out = scratch.autograde(root, *flags, "student")
                if out.returncode != 0:
                    sys.exit(f"{mode}: autograde failed\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
                scratch.require_full_marks(root, "student", mode)
                seconds[mode].append(elapsed)
    base = statistics.median(seconds["plain, no verify"])
    print(f"autograde of one complete submission (profile {args.profile}, {os.cpu_count()} CPU), median of "
          f"{args.repeat}:")
    for mode, values in seconds.items():
        median = statistics.median(values)
        print(f"  {mode:<18} {median:6.1f} s  (+{median - base:5.1f} s)   runs: "
              + ", ".join(f"{v:.1f}" for v in values))


if __name__ == "__main__":
    main()
