"""nbgrader configuration of the TP3 course (this folder is the course root).

Run every nbgrader command from this folder, or through ``python grading/course.py``.
"""

import os
import sys

c = get_config()  # noqa: F821 (provided by nbgrader)

HERE = os.path.dirname(os.path.abspath(__file__))


def _grading_dir() -> str:
    """Where grading/autograder is: here, or, for a copy of this file elsewhere, $TP3_GRADING_DIR
    (set by course.py) or the grading/ folder beside the lab_utils package in use."""
    if os.environ.get("TP3_GRADING_DIR"):
        return os.environ["TP3_GRADING_DIR"]
    if os.path.isdir(os.path.join(HERE, "autograder")):
        return HERE
    import importlib.util

    spec = importlib.util.find_spec("lab_utils")
    if spec and spec.origin:
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(spec.origin))), "grading")
    return HERE


# grading/autograder (robust execution, sandbox, verification); nothing is imported here.
sys.path.insert(0, _grading_dir())

c.CourseDirectory.course_id = "tp3"
c.CourseDirectory.root = HERE
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(HERE, "gradebook.db")

# Student-facing stubs in French.
c.ClearSolutions.code_stub = {"python": "# VOTRE CODE ICI\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "VOTRE RÉPONSE ICI"

# Per-cell time limit while grading. Measured (see grading/README.md): with GPT-2 small on two
# CPU cores the slowest cell, evaluating train + val + test, takes about 35 s; building the
# classifier takes under 5 s. 180 s leaves room for slower machines, not for re-training
# (which never happens while grading: train_or_load reloads tp3_run/).
c.Execute.timeout = 180

# Robust autograding (grading/autograder, see grading/README.md): the submission is repaired
# first (duplicated, deleted or retyped cells, kernel name, tampered metadata); execution
# survives crashes and runaway kernels, limits the kernel's resources (and sandboxes it with
# `course.py autograde --sandbox`), and records the answers each test read, which course.py
# then re-verifies outside the student's kernel. Class names as strings: imported only when
# autograde runs.
c.Autograde.sanitize_preprocessors = [
    "autograder.repair.RepairSubmission",
    "nbgrader.preprocessors.ClearOutput",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
c.Autograde.autograde_preprocessors = [
    "autograder.execute.GraderExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# Memory of one submission: its processes together (control group, resident memory) and each
# process's address space (RLIMIT_AS). GPT-2 small's training notebook peaks at about 4 GB of
# address space while grading (1.3 GB resident), the structure notebook at about 3 GB.
c.GraderKernelManager.memory_mb = 8192

# The run folder comes from the student; never replace it with a file of the same name
# from source/ (autograde copies source files over submissions). source/ must hold no run
# folder anyway: course.py refuses to release one.
RUN_FILES = ["tp3_run/adapter.safetensors", "tp3_run/history.json", "tp3_run/run.json"]
c.Autograde.exclude_overwriting = {"tp3": RUN_FILES}

# Students' archives are collected by `course.py collect --zips` (autograder/collect.py: ids from
# the archive names, the expected files only, extracted by our own code), not by nbgrader's
# zip_collect, whose collector takes student ids from paths inside the archives.

# Autograded notebooks stay writable by their owner: course.py writes the grading notes and the
# re-verification into them after nbgrader, which an instructor who is not root cannot do to
# nbgrader's default read-only (444) files (tests/test_jupyterhub.py). 664 with groupshared.
c.Autograde.permissions = 644

# nbgrader's exchange (JupyterHub): `nbgrader collect` refuses, and reports, an inbound entry
# not wholly owned by the student it names, or holding links or special files (nbgrader 0.9.6
# only warns, and the impersonation replaced the victim's submission). See autograder/exchange.py.
c.ExchangeFactory.collect = "autograder.exchange.OwnerCheckedCollect"

# Feedback (course.py feedback; also formgrader's "Generate feedback" button): the page shows
# no test source, traceback, solution marker or absolute path, and nothing a student wrote can
# run in it (grading/autograder/feedback.py). course.py also selects the French template.
c.GenerateFeedback.preprocessors = [
    "autograder.feedback.SanitizeForFeedback",
    "nbgrader.preprocessors.GetGrades",
    "autograder.feedback.RemoveSolutionMarkers",
    "autograder.feedback.ReportTests",
    "autograder.feedback.SimplifyErrors",
    "autograder.feedback.RenderMath",
    "autograder.feedback.Summarize",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
