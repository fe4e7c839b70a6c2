"""Configure JupyterLab for students: nbgrader's Validate button on, instructor panels off.

Used by Binder's ``postBuild`` and by ``python3 dev.py lab`` through
``python -m lab_utils setup-jupyter``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# nbgrader 0.9's JupyterLab plugins and server extensions that only instructors use.
INSTRUCTOR_LAB_PLUGINS = (
    "@jupyter/nbgrader:formgrader",
    "@jupyter/nbgrader:create-assignment",
    "@jupyter/nbgrader:course-list",
    "@jupyter/nbgrader:assignment-list",
    "@jupyter/nbgrader:menu",
)
INSTRUCTOR_SERVER_EXTENSIONS = (
    "nbgrader.server_extensions.formgrader",
    "nbgrader.server_extensions.course_list",
    "nbgrader.server_extensions.assignment_list",
)

# Read by the Validate button (nbgrader loads nbgrader_config.py from Jupyter's config path).
STUDENT_NBGRADER_CONFIG = """\
# Written by `python -m lab_utils setup-jupyter`: settings for students' Validate button.
c = get_config()  # noqa: F821
# Validate runs the whole notebook; on Binder's single CPU, evaluating GPT-2 small on the
# three splits takes a few minutes (nbgrader's default is 30 s per cell).
c.Execute.timeout = 900
"""


def config_dir(level: str) -> Path:
    """Jupyter's config folder for ``level`` ("sys_prefix" or "user")."""
    from jupyter_core.paths import jupyter_config_dir

    return Path(sys.prefix) / "etc" / "jupyter" if level == "sys_prefix" else Path(jupyter_config_dir())


def _merge_json(path: Path, update: dict) -> None:
    """Merge ``update`` into the JSON file at ``path`` (created if missing), one level deep."""
    data = json.loads(path.read_text()) if path.exists() else {}
    for key, value in update.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def configure_student_jupyter(level: str = "sys_prefix") -> Path:
    """Disable the instructor plugins, keep Validate, write the student nbgrader config.

    Writes the files that ``jupyter labextension disable`` and ``jupyter server extension
    disable`` would, directly: the latter refuses an extension enabled at another level.
    """
    folder = config_dir(level)
    _merge_json(folder / "labconfig" / "page_config.json",
                {"disabledExtensions": {name: True for name in INSTRUCTOR_LAB_PLUGINS}})
    # Read after nbgrader's own jupyter_server_config.d/nbgrader.json (files are read in order).
    _merge_json(folder / "jupyter_server_config.d" / "tp3-student.json",
                {"ServerApp": {"jpserver_extensions": {name: False for name in INSTRUCTOR_SERVER_EXTENSIONS}}})
    path = folder / "nbgrader_config.py"
    path.write_text(STUDENT_NBGRADER_CONFIG)
    return path
