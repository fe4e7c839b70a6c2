"""Autograde a whole class: every submission on its own, several at once, one writer.

Each student is graded by ``grade.grade_submission`` in a workspace of its own; ``jobs``
of them run at the same time (threads waiting on their nbgrader and replay processes).
Only this process writes the course (gradebook, ``autograded/``), under one lock. Each job
gets its own sandbox uid and control group; the grader is a child subreaper, so a process
a kernel detached comes back to it and is killed (``reaper.py``) where no control group
holds it. A progress bar (done / total, ETA, grader failures) runs on the terminal.
"""

from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from autograder import ASSIGNMENT, reaper, seats
from autograder.grade import Options, Result, grade_submission
from autograder.gradebook import make_template

# Memory one grading needs at most (kernel, then replay; MB), per profile: measured with
# benchmarks/bench_class.py (cgroup peak per job). Used only by --jobs auto.
JOB_MEMORY_MB = {"full": 1800, "random-small": 1800, "ci": 600}
REPORT = Path("reports") / "autograde.json"


@dataclass
class Plan:
    jobs: int
    threads: int
    why: str


def plan_jobs(requested: str | int, students: int, profile: str) -> Plan:
    """How many submissions to grade at once, and with how many threads each."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if str(requested) != "auto":
        jobs = max(1, min(int(requested), max(students, 1)))
        return Plan(jobs, max(1, cpus // jobs), f"--jobs {jobs}")
    per_job = JOB_MEMORY_MB.get(profile, max(JOB_MEMORY_MB.values()))
    available = _available_mb()
    by_memory = max(1, int(available * 0.8) // per_job) if available else cpus
    jobs = max(1, min(cpus, by_memory, max(students, 1)))
    return Plan(jobs, max(1, cpus // jobs),
                f"--jobs auto: {jobs} (CPUs {cpus}, memory available {available or '?'} MB, "
                f"about {per_job} MB per grading in profile {profile}, {students} submission(s))")


def _available_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        return None
    return None


def autograde_class(course: Path, students: list[str], opts: Options, plan: Plan, env: dict,
                    progress: bool | None = None) -> list[Result]:
    """Grade ``students`` (checked ids) of ``course``; results in the order they finished."""
    from tqdm import tqdm

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader's add_submission, harmless
    reaper.become_subreaper()
    opts.threads = opts.threads or (plan.threads if plan.jobs > 1 else None)
    lock = threading.Lock()
    slots: queue.Queue = queue.Queue()
    for slot in seats.reserve(plan.jobs):  # distinct sandbox uids, also from other autograde runs
        slots.put(slot)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tp3-autograde-") as tmp:
        template = Path(tmp) / "template.db"
        make_template(course / "gradebook.db", template)

        def one(student: str) -> Result:
            slot = slots.get()
            try:
                return grade_submission(course, student, opts, template, env, lock, slot)
            except Exception as err:  # noqa: BLE001 (a bug of ours for one student must not stop the class)
                import traceback

                traceback.print_exc()
                return Result(student, failed=True, status=[f"GRADER ERROR {type(err).__name__}: {err}"])
            finally:
                slots.put(slot)

        failures = 0
        bar = tqdm(total=len(students), unit="rendu", desc="autograde", disable=True if progress is False else None,
                   dynamic_ncols=True)
        with bar, ThreadPoolExecutor(plan.jobs) as pool:
            for future in as_completed([pool.submit(one, s) for s in students]):
                result = future.result()
                results.append(result)
                failures += result.failed
                bar.write(f"autograded {result.student} in {result.seconds:.1f} s: {result.score:g} / "
                          f"{result.max:g} automatic points" + (f" ({'; '.join(result.status)})" if result.status
                                                                else ""))
                bar.set_postfix(failures=failures, refresh=False)
                bar.update(1)
    return results


def write_report(course: Path, results: list[Result], opts: Options, plan: Plan) -> Path:
    """``reports/autograde.json``: what the last ``autograde`` did, one entry per student
    (student, score, max, seconds, failed, status, peak memory, test scores), for the class
    overview; students not graded this time keep their last entry."""
    path = course / REPORT
    path.parent.mkdir(exist_ok=True)
    previous = {}
    if path.exists():
        try:
            previous = {r["student"]: r for r in json.loads(path.read_text())["students"]}
        except (ValueError, KeyError, TypeError):
            previous = {}
    previous.update({r.student: r.to_dict() for r in results})
    report = {"assignment": ASSIGNMENT, "profile": os.environ.get("TP3_PROFILE", "full"),
              "mode": "sandbox" if opts.sandbox else "plain", "jobs": plan.jobs,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "students": [previous[s] for s in sorted(previous)]}
    path.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return path
