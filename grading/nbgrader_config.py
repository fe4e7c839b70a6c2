"""nbgrader configuration of the TP3 course (this folder is the course root).

Run every nbgrader command from this folder, or through ``python grading/course.py``.
"""

import os

c = get_config()  # noqa: F821 (provided by nbgrader)

HERE = os.path.dirname(os.path.abspath(__file__))

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

# The run folder comes from the student; never replace it with a file of the same name
# from source/ (autograde copies source files over submissions). source/ must hold no run
# folder anyway: course.py refuses to release one.
RUN_FILES = ["tp3_run/adapter.safetensors", "tp3_run/history.json", "tp3_run/run.json"]
c.Autograde.exclude_overwriting = {"tp3": RUN_FILES}

# zip_collect: each student hands in <student_id>.zip holding the two notebooks and tp3_run/
# (directly or inside one folder). The student id is the archive's name.
c.ZipCollectApp.collector_plugin = "nbgrader.plugins.FileNameCollectorPlugin"
c.FileNameCollectorPlugin.named_regexp = (
    r".*/extracted/(?P<student_id>[^/]+)/(?:[^/]+/)*?(?P<file_id>(?:tp3_run/)?[^/]+)$"
)
c.FileNameCollectorPlugin.valid_ext = [".ipynb", ".safetensors", ".json"]
