"""The instructor's JupyterLab: the course folder, formgrader and the nbgrader panels on.

``python3 dev.py lab`` (``python -m lab_utils setup-jupyter``) turns the instructor panels and
the formgrader server extension off in the environment's Jupyter configuration, for students.
The instructor's server must not depend on that state and must not change it: it gets a
configuration folder of its own (``<course>/.instructor-jupyter/``, rewritten at each start),
put first on ``JUPYTER_CONFIG_PATH``, the highest-priority level Jupyter reads, which turns
them back on for this server only. Nothing is written to the environment or to ``~/.jupyter``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from lab_utils.jupyter_setup import INSTRUCTOR_LAB_PLUGINS, INSTRUCTOR_SERVER_EXTENSIONS

CONFIG_FOLDER = ".instructor-jupyter"


def write_config(root: Path) -> Path:
    """``<root>/.instructor-jupyter/``: every nbgrader server extension and lab plugin on."""
    folder = root / CONFIG_FOLDER
    (folder / "labconfig").mkdir(parents=True, exist_ok=True)
    extensions = {name: True for name in (*INSTRUCTOR_SERVER_EXTENSIONS, "nbgrader.server_extensions.validate_assignment")}
    (folder / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": extensions}}, indent=1))
    (folder / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {name: False for name in INSTRUCTOR_LAB_PLUGINS}}, indent=1))
    return folder


def lab_command(root: Path, args: list[str], env: dict) -> tuple[list[str], dict]:
    """(command, environment) of JupyterLab on ``root`` with the instructor set-up."""
    folder = write_config(root)
    env = dict(env)
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join([str(folder), *filter(None, [env.get("JUPYTER_CONFIG_PATH")])])
    args = list(args)
    if os.name != "nt" and os.geteuid() == 0 and "--allow-root" not in args:
        args.append("--allow-root")  # containers often run as root; JupyterLab refuses it otherwise
    return [sys.executable, "-m", "jupyter", "lab", f"--ServerApp.root_dir={root}", *args], env
