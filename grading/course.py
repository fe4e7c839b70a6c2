#!/usr/bin/env python3
"""The instructor's workflow for TP3, one command per step (each prints the nbgrader
command it runs, so the steps can also be done with nbgrader by hand).

    python grading/course.py generate                 release version of source/tp3 -> notebooks/
    python grading/course.py samples                  two sample submissions (complete, flawed)
    python grading/course.py collect --zips DIR       students' <id>.zip archives -> submitted/
    python grading/course.py collect --exchange       nbgrader's exchange (JupyterHub)
    python grading/course.py autograde [STUDENT ...]  grade (reloads each tp3_run/, never re-trains)
    python grading/course.py autograde --sandbox      the same, each student's kernel in a bubblewrap sandbox
    python grading/course.py feedback                 HTML feedback per student in feedback/ (French)
    python grading/course.py lab                      JupyterLab for the instructor (formgrader on)
    python grading/course.py export [--to FILE]       grades.csv
    python grading/course.py export --moodle FILE [--id-column NAME] [--grade-column NAME] [--out-of 20]
    python grading/course.py overview                 reports/overview.html: the class at a glance
    python grading/course.py publish DEST             the public student tree, checked to hold no solution
    python grading/course.py check-release            notebooks/ is the release of the current sources

``--root DIR`` works on another copy of the course folder (default: this folder).
The profile (``TP3_PROFILE``) must be the one students trained with (default ``full``).
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ASSIGNMENT = "tp3"
RUN_DIR = "tp3_run"
SOLUTION_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")

# What students get: release notebooks, the package, the environment. Nothing else.
PUBLIC_FILES = ["lab_utils", "notebooks", "pyproject.toml", "environment.yml", "postBuild", "dev.py", "LICENSE"]
STUDENT_README = REPO / "docs" / "README.student.md"  # template: {{BINDER_URL}} is filled in
PUBLIC_REPO = "tp3-lab/tp3-lora-spam"  # GitHub repository of the published student tree (Binder builds it)


def binder_url(repo: str = PUBLIC_REPO) -> str:
    """mybinder.org link that builds ``repo`` and opens the first notebook in JupyterLab."""
    return f"https://mybinder.org/v2/gh/{repo}/HEAD?urlpath=lab/tree/notebooks/tp3_partie1.ipynb"
INSTRUCTOR_ONLY = ("grading", "tests", "benchmarks", "source", "autograded", "feedback", "submitted", "release")


def nbgrader_env(**extra: str) -> dict:
    """nbgrader's environment: this interpreter's scripts on PATH (nbgrader calls alembic),
    and where grading/autograder is when --root is a copy of the course."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["TP3_GRADING_DIR"] = str(HERE)
    env.update(extra)
    return env


def nbgrader(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nbgrader", *args]
    print(f"+ (cd {root} && nbgrader {' '.join(args)})", flush=True)
    return subprocess.run(cmd, cwd=root, check=check, env=nbgrader_env())


def source_notebooks(root: Path) -> list[Path]:
    return sorted((root / "source" / ASSIGNMENT).glob("*.ipynb"))


def completed_release(name: str, root: Path = HERE) -> dict:
    """The release notebook ``name`` as a student hands it in: every cell to fill in (code
    answers and written answers) holds the instructor's solution without its markers.
    Test cells stay as released (no hidden test). Cells are matched by grade_id."""
    release = json.loads((REPO / "notebooks" / name).read_text())
    solutions = {c["metadata"]["nbgrader"]["grade_id"]: c
                 for c in json.loads((root / "source" / ASSIGNMENT / name).read_text())["cells"]
                 if c["metadata"].get("nbgrader", {}).get("solution")}
    replaced = 0
    for cell in release["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if not meta.get("solution"):
            continue
        solution = solutions[meta["grade_id"]]
        lines = "".join(solution["source"]).splitlines(keepends=True)
        kept = [line for line in lines if line.strip() not in SOLUTION_MARKERS[:2]]
        if solution["cell_type"] != cell["cell_type"] or len(kept) != len(lines) - 2:
            raise ValueError(f"{name}: cell {meta['grade_id']} is not one solution region of the same type")
        cell["source"] = "".join(kept)
        replaced += 1
    if replaced != len(solutions):
        raise ValueError(f"{name}: {len(solutions) - replaced} solution cells missing from the release")
    return release


def cmd_generate(args) -> None:
    root = args.root
    stray = root / "source" / ASSIGNMENT / RUN_DIR
    if stray.exists():
        sys.exit(f"{stray} exists: a run folder in source/ would be released to students and copied over "
                 "their own runs at autograde. Delete it (run solution notebooks elsewhere).")
    nbgrader(root, "generate_assignment", ASSIGNMENT, "--force")
    if args.no_copy:
        return
    dest = REPO / "notebooks"
    dest.mkdir(exist_ok=True)
    for nb in sorted((root / "release" / ASSIGNMENT).glob("*.ipynb")):
        shutil.copy2(nb, dest / nb.name)
        print(f"  {nb.name} -> {dest / nb.name}")


def cmd_check_release(args) -> None:
    """Generate the release in a scratch copy and compare it with notebooks/."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "course"
        shutil.copytree(args.root, copy, ignore=shutil.ignore_patterns(
            "release", "submitted", "autograded", "feedback", "gradebook.db", "downloaded"))
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force"],
                       cwd=copy, check=True, capture_output=True)
        fresh = {p.name: p.read_text() for p in (copy / "release" / ASSIGNMENT).glob("*.ipynb")}
    committed = {p.name: p.read_text() for p in (REPO / "notebooks").glob("*.ipynb")}
    stale = sorted(n for n in fresh.keys() | committed.keys() if fresh.get(n) != committed.get(n))
    if stale:
        sys.exit(f"notebooks/ is stale for {stale}: run `python grading/course.py generate` and commit.")
    print(f"notebooks/ matches the release of source/{ASSIGNMENT} ({len(fresh)} notebooks).")


def execute_as_student(folder: Path, timeout: int = 1800) -> None:
    """Run every notebook of ``folder`` top to bottom, as a student would (trains, saves tp3_run/)."""
    env = {k: v for k, v in os.environ.items() if k != "NBGRADER_EXECUTION"}
    env["TP3_PROGRESS"] = "0"
    for nb in sorted(folder.glob("*.ipynb")):
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                        "--inplace", "--allow-errors", f"--ExecutePreprocessor.timeout={timeout}", nb.name],
                       cwd=folder, env=env, check=True, capture_output=True)


def cmd_samples(args) -> None:
    """Two submissions: ``sample-complete`` (the solutions) and ``sample-flawed``
    (one wrong number, one retyped prediction; it reloads sample-complete's run)."""
    from autograder.preflight import require
    require(args.root, "samples")  # nothing missing (data, tokenizer, weights, course), or stop here
    root = args.root
    for student in ("sample-complete", "sample-flawed"):
        folder = root / "submitted" / student / ASSIGNMENT
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for nb in source_notebooks(root):
            shutil.copy2(nb, folder / nb.name)
        if student == "sample-flawed":
            # the same training (same seed, same data) as sample-complete's: reloaded, not redone
            shutil.copytree(root / "submitted" / "sample-complete" / ASSIGNMENT / "tp3_run", folder / "tp3_run")
            flaw_notebook(folder / "tp3_partie1.ipynb", "q2_answer",
                          "trainable_share = 100 * trainable_params / total_params", "trainable_share = 0.807 * 100")
            flaw_notebook(folder / "tp3_partie2.ipynb", "my_texts",
                          "my_predictions = [lab.classify_text(text, model, tokenizer, device) for text, _ in my_texts]",
                          "my_predictions = [(\"spam\", 0.99), (\"ham\", 0.99), (\"spam\", 0.99), (\"ham\", 0.99)]")
        print(f"executing {folder} as a student would ...", flush=True)
        execute_as_student(folder)
        (folder / "timestamp.txt").write_text(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        nbgrader(root, "db", "student", "add", student)


def flaw_notebook(path: Path, grade_id: str, old: str, new: str) -> None:
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == grade_id:
            source = "".join(cell["source"])
            if old not in source:
                raise ValueError(f"{old!r} not in cell {grade_id} of {path}")
            cell["source"] = source.replace(old, new)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False))


def cmd_collect(args) -> int:
    """Students' archives (or nbgrader's exchange) -> submitted/<id>/tp3/, each on its own
    (see autograder/collect.py); a bad archive is reported and skipped."""
    sys.path.insert(0, str(HERE))
    from autograder.collect import collect_zips, tidy_collected
    from autograder.gradebook import open_gradebook
    from autograder.ids import read_roster

    root = args.root
    roster = read_roster(args.roster) if args.roster else None
    refused = []
    if args.exchange:  # impersonated or unsafe entries are refused and reported (autograder/exchange.py)
        from autograder.exchange import collect_exchange, format_report

        exchange = collect_exchange(root, lambda *a: nbgrader(root, *a))
        print(format_report(exchange), flush=True)
        refused = exchange["refused"]
        changed = [c["student"] for c in exchange["collected"]]
        report = tidy_collected(root, [s for s in changed if roster is None or s in roster])
    else:
        folder = Path(args.zips)
        if not folder.is_dir():
            sys.exit(f"{folder} is not a folder of <student_id>.zip archives")
        report = collect_zips(root, folder, roster)
        if not report.collected:
            sys.exit(f"no .zip archive in {folder}")
    with open_gradebook(root / "gradebook.db") as gb:
        for student in report.students:
            gb.update_or_create_student(student)
    print(f"collected {len(report.students)} submission(s), skipped {len(report.skipped)}:")
    for entry in report.collected:
        print(entry.line())
    return 1 if report.skipped or refused else 0


def cmd_autograde(args) -> int:
    """Autograde each submission on its own, whatever it does, several at once with --jobs:
    one bad submission never stops the class nor touches another (see grading/README.md)."""
    sys.path.insert(0, str(HERE))
    from autograder.classroom import autograde_class, plan_jobs, write_report
    from autograder.collect import submitted_students
    from autograder.grade import Options
    from autograder.ids import BadStudentId, check_student_id
    from autograder.preflight import require

    require(args.root, "autograde", args.students)  # nothing missing (data, tokenizer, weights, course), or stop here
    root = args.root
    valid, invalid = submitted_students(root)
    if invalid:
        print(f"ignored in submitted/ (not student ids): {invalid}", flush=True)
    try:
        students = [check_student_id(s) for s in args.students] if args.students else valid
    except BadStudentId as err:
        sys.exit(f"autograde: {err}")
    missing = [s for s in students if s not in valid]
    if missing:
        sys.exit(f"autograde: no submission folder for {missing} in {root / 'submitted'}")
    sandbox = _sandbox_mode(args)
    opts = Options(sandbox=sandbox, wall=args.wall, cell_timeout=args.cell_timeout,
                   memory_mb=_config_memory(root) if args.memory_mb is None else args.memory_mb,
                   verify=not args.no_verify, cgroups=not args.no_cgroup, env=grading_env(),
                   memo={"auto": None, "on": True, "off": False}[args.evaluate_once])
    if sandbox:
        # matplotlib's font list, built here once and shown read-only in each sandbox (see sandbox.py)
        subprocess.run([sys.executable, "-c", "import matplotlib.font_manager"], capture_output=True)
    plan = plan_jobs(args.jobs, len(students), os.environ.get("TP3_PROFILE", "full"))
    print(f"autograde: {len(students)} submission(s), {plan.why}, "
          f"{'sandbox' if sandbox else 'NO SANDBOX (trusted submissions only)'}", flush=True)
    results = autograde_class(root, students, opts, plan, nbgrader_env())
    report = write_report(root, results, opts, plan)
    print("\nautograde summary" + (" (sandbox)" if sandbox else ""), flush=True)
    print(f"  {'student':<28} {'score':>11} {'time':>8}  status", flush=True)
    for r in sorted(results, key=lambda r: r.student):
        print(f"  {r.student:<28} {r.score:>5g} / {r.max:<3g} {r.seconds:>7.1f}s  "
              f"{'; '.join(r.status) or 'ok'}", flush=True)
    failed = sorted(r.student for r in results if r.failed)
    if failed:
        print(f"  the grader itself failed for {failed}: their tests got zero, see reports/logs/ and rerun "
              "them once fixed.", flush=True)
    class_summary(root, report)
    return 1 if failed else 0


def class_summary(root: Path, report: Path) -> None:
    """After autograde: the warning when the whole class lost the same points (the grader's
    environment, most likely), and the class overview page."""
    from autograder.overview import build
    from autograder.same_loss import same_loss_warning
    from autograder.scores import test_scores

    warning = same_loss_warning(json.loads(report.read_text())["students"], test_scores(root))
    if warning:
        print(f"  {warning}", flush=True)
    try:
        print(f"class overview: {build(root)}", flush=True)
    except Exception as err:  # noqa: BLE001 (a bug of the overview must not fail the grading)
        print(f"class overview not written: {type(err).__name__}: {err}", flush=True)


def _sandbox_mode(args) -> bool:
    """--sandbox: required (stop if unavailable); --no-sandbox: off; neither: on when it can run."""
    from autograder.sandbox import probe

    if args.no_sandbox:
        return False
    ok, why = probe()
    if args.sandbox and not ok:
        sys.exit(f"autograde --sandbox: the sandbox cannot run on this machine: {why}")
    if not ok:
        print(f"WARNING: grading WITHOUT the sandbox ({why}): each kernel runs with your rights. "
              "Use this only for submissions you trust; see grading/README.md.", flush=True)
    return ok


def _config_memory(root: Path) -> int:
    """GraderKernelManager.memory_mb of the course's nbgrader_config.py (default 8192)."""
    from traitlets.config import PyFileConfigLoader

    try:
        config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
        return int(config.GraderKernelManager.get("memory_mb", 8192))
    except Exception:  # noqa: BLE001
        return 8192


THRESHOLDS = HERE / "thresholds.json"  # written by the instructor's reference run (lab_utils/thresholds.py)


def grading_env(profile: str | None = None) -> dict:
    """Variables the kernels and the replay get: ``TP3_THRESHOLDS``, the hidden tests'
    minimums for the profile in use, from the instructor's reference run. Without an entry
    for the profile, the hidden tests use lab_utils' defaults (said on the terminal)."""
    profile = profile or os.environ.get("TP3_PROFILE", "full")
    table = json.loads(THRESHOLDS.read_text()) if THRESHOLDS.is_file() else {}
    entry = table.get(profile)
    if not isinstance(entry, dict) or not isinstance(entry.get("thresholds"), dict):
        print(f"WARNING: no reference run of profile {profile!r} in {THRESHOLDS}: the hidden tests use "
              "lab_utils' default minimums (see lab_utils/thresholds.py; run the reference run to set them).",
              flush=True)
        return {}
    print(f"hidden tests' minimums ({profile}, from the reference run of {entry.get('created', '?')}): "
          f"{entry['thresholds']}", flush=True)
    return {"TP3_THRESHOLDS": json.dumps(entry["thresholds"])}


def cmd_feedback(args) -> None:
    """French feedback pages (steps in nbgrader_config.py, template in templates/tp3_feedback)."""
    sys.path.insert(0, str(HERE))
    from autograder.feedback import nbgrader_args
    from autograder.preflight import require

    require(args.root, "feedback")  # nothing missing (nbgrader, gradebook, graded notebooks), or stop here
    nbgrader(args.root, "generate_feedback", ASSIGNMENT, "--force", *nbgrader_args())


def cmd_lab(args) -> int:
    """JupyterLab on the course folder with formgrader and the nbgrader panels on, whatever
    the student set-up of this environment says (autograder/instructor_lab.py)."""
    sys.path.insert(0, str(HERE))
    from autograder.instructor_lab import lab_command

    cmd, env = lab_command(args.root, args.jupyter_args, nbgrader_env())
    print(f"+ (cd {args.root} && {' '.join(cmd[1:])})", flush=True)
    if os.name == "nt":
        return subprocess.call(cmd, cwd=args.root, env=env)
    os.chdir(args.root)  # formgrader reads nbgrader_config.py from the server's folder
    os.execve(cmd[0], cmd, env)  # signals go straight to JupyterLab, nothing is left behind


def cmd_export(args) -> None:
    """grades.csv (nbgrader export's columns) and/or a Moodle import file (autograder/export.py)."""
    from autograder.export import write_grades, write_moodle
    from autograder.preflight import require
    require(args.root, "export")  # a gradebook with the assignment, or stop here

    said = []
    if args.to or not args.moodle:
        out = Path(args.to or "grades.csv").resolve()
        said += write_grades(args.root, out)
        print(out.read_text())
    if args.moodle:
        out = Path(args.moodle).resolve()
        said += write_moodle(args.root, out, args.id_column, args.grade_column, args.out_of)
        print(f"Moodle import file {out} (Grades > Import > CSV file, see docs/grading.md):\n{out.read_text()}")
    for line in dict.fromkeys(said):
        print(f"WARNING: {line}")


def cmd_overview(args) -> None:
    """reports/overview.html: the class after autograde (autograder/overview.py)."""
    from autograder.overview import build
    from autograder.preflight import require
    require(args.root, "overview")  # a gradebook with the assignment, or stop here

    print(f"class overview: {build(args.root)}")


def hidden_lines(root: Path) -> set[str]:
    """Lines of solution regions and hidden tests that nothing public shows: specific enough
    (25 characters or more) to recognise if they leaked."""
    hidden: set[str] = set()
    public: list[str] = []
    for nb in source_notebooks(root):
        for cell in json.loads(nb.read_text())["cells"]:
            inside = False
            for line in "".join(cell["source"]).splitlines():
                if line.strip() in SOLUTION_MARKERS[::2]:
                    inside = True
                elif line.strip() in SOLUTION_MARKERS[1::2]:
                    inside = False
                elif inside:
                    if len(line.strip()) >= 25:
                        hidden.add(line.strip())
                else:
                    public.append(line)
    public_text = "\n".join(public)
    return {line for line in hidden if line not in public_text}


def verify_public_tree(dest: Path, root: Path) -> list[str]:
    """Problems found in a public tree (empty list: none)."""
    problems = []
    secrets = hidden_lines(root)
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        rel = path.relative_to(dest)
        if rel.parts[0] in INSTRUCTOR_ONLY or (path.name == "nbgrader_config.py" and rel.parts[0] != "notebooks"):
            problems.append(f"{rel}: instructor-only file")
            continue
        if path.suffix == ".db" or RUN_DIR in rel.parts:
            problems.append(f"{rel}: gradebook or run folder")
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for marker in SOLUTION_MARKERS:
            if marker in text:
                problems.append(f"{rel}: contains {marker!r}")
        leaked = [line for line in secrets if line in text]
        if leaked:
            problems.append(f"{rel}: contains {len(leaked)} line(s) of solutions or hidden tests, e.g. {leaked[0]!r}")
    return problems


def cmd_publish(args) -> None:
    dest = Path(args.dest).resolve()
    if dest.exists() and any(dest.iterdir()):
        sys.exit(f"{dest} is not empty: publish into a new folder (or a clean clone of the public repository).")
    dest.mkdir(parents=True, exist_ok=True)
    for name in PUBLIC_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", ".ipynb_checkpoints", RUN_DIR, "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    (dest / "README.md").write_text(STUDENT_README.read_text().replace("{{BINDER_URL}}", binder_url(args.public_repo)))
    problems = verify_public_tree(dest, args.root)
    if problems:
        shutil.rmtree(dest)
        sys.exit("publish refused, the tree would leak:\n  " + "\n  ".join(problems))
    n = sum(1 for p in dest.rglob("*") if p.is_file())
    print(f"public student tree written to {dest} ({n} files): no solution region, no hidden test, "
          "no gradebook, no instructor file.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=HERE, help="course folder (default: grading/)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("generate")
    p.add_argument("--no-copy", action="store_true", help="do not copy the release into notebooks/")
    p.set_defaults(func=cmd_generate)
    sub.add_parser("check-release").set_defaults(func=cmd_check_release)
    sub.add_parser("samples").set_defaults(func=cmd_samples)
    p = sub.add_parser("collect")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--zips", help="folder of <student_id>.zip archives")
    group.add_argument("--exchange", action="store_true", help="collect from nbgrader's exchange")
    p.add_argument("--roster", help="file of the class's student ids (one per line, or a CSV with an id column): "
                                    "other ids are refused")
    p.set_defaults(func=cmd_collect)
    p = sub.add_parser("autograde", help="grade submissions, each on its own (see grading/README.md)")
    p.add_argument("students", nargs="*")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--sandbox", action="store_true",
                      help="require the bubblewrap sandbox (default: used whenever it can run; root, Linux)")
    mode.add_argument("--no-sandbox", action="store_true",
                      help="grade without the sandbox (trusted submissions only)")
    p.add_argument("--jobs", default="1", help="submissions graded at once: a number or auto (default 1)")
    p.add_argument("--no-cgroup", action="store_true",
                   help="no control group per submission (per-process limits and the reaper only)")
    p.add_argument("--wall", type=float, default=1800,
                   help="wall-clock limit for one submission, all notebooks (s, default 1800)")
    p.add_argument("--cell-timeout", type=int, default=None,
                   help="time limit of one cell (s, default: Execute.timeout of nbgrader_config.py)")
    p.add_argument("--memory-mb", type=int, default=None,
                   help="memory of one submission's processes together, and address space of each "
                        "(MB, default: nbgrader_config.py; 0: none)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the trusted re-verification of the test cells that scored")
    p.add_argument("--evaluate-once", choices=("auto", "on", "off"), default="auto",
                   help="evaluate each saved run on the three splits once, before the kernels, and reuse "
                        "the results in the student's kernel and the re-verification (auto: on unless "
                        "TP3_PROFILE=ci, whose tiny model evaluates about as fast as the extra process starts)")
    p.set_defaults(func=cmd_autograde)
    sub.add_parser("feedback").set_defaults(func=cmd_feedback)
    p = sub.add_parser("lab", help="JupyterLab for the instructor: formgrader and the nbgrader panels on")
    p.set_defaults(func=cmd_lab)  # other options are passed on to jupyter lab
    p = sub.add_parser("export", help="grades.csv (default) and/or a Moodle grade import file")
    p.add_argument("--to", help="grades CSV with nbgrader export's columns (default grades.csv without --moodle)")
    p.add_argument("--moodle", metavar="FILE", help="CSV for Moodle's grade import (Grades > Import > CSV file)")
    p.add_argument("--id-column", default="Username", help="Moodle file: header of the student id column")
    p.add_argument("--grade-column", default="TP3", help="Moodle file: header of the grade column")
    from autograder.export import out_of
    p.add_argument("--out-of", type=out_of, help="Moodle file: grade rescaled to this maximum (e.g. 20)")
    p.set_defaults(func=cmd_export)
    sub.add_parser("overview", help="reports/overview.html: scores, pass rates, times, incidents").set_defaults(
        func=cmd_overview)
    p = sub.add_parser("publish")
    p.add_argument("dest")
    p.add_argument("--public-repo", default=PUBLIC_REPO, help=f"owner/name on GitHub (default {PUBLIC_REPO})")
    p.set_defaults(func=cmd_publish)
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "lab":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.jupyter_args = extra
    args.root = args.root.resolve()
    os.environ["PATH"] = nbgrader_env()["PATH"]  # nbgrader's gradebook runs alembic when it creates a database
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
