"""environment.yml, pyproject.toml, dev.py, postBuild, .ci/run and the README must agree."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch-cpu": "torch", "matplotlib-base": "matplotlib"}
NOT_PACKAGES = {"python", "pip"}


def _pyproject_requirements() -> dict[str, SpecifierSet]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["lab"]]
    return {canonicalize_name(r.name): r.specifier for r in reqs}


def _conda_requirements() -> tuple[dict[str, SpecifierSet], list, str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda, pip = {}, []
    python = ""
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip = dep["pip"]
            continue
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", dep)
        name, spec = match.group(1), match.group(2).replace(" ", "")
        if name == "python":
            python = spec
        if name in NOT_PACKAGES:
            continue
        conda[canonicalize_name(CONDA_TO_PIP.get(name, name))] = SpecifierSet(spec)
    return conda, pip, python


def test_same_packages_and_versions():
    pyproject, (conda, _, _) = _pyproject_requirements(), _conda_requirements()
    assert set(conda) == set(pyproject)
    for name, spec in pyproject.items():
        assert conda[name] == spec, f"{name}: pyproject {spec} but environment.yml {conda[name]}"


def test_environment_is_cpu_only_conda_forge_python_311_with_the_package():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    conda, pip, python = _conda_requirements()
    assert python.startswith("=3.11")
    assert "pytorch-cpu" in (REPO / "environment.yml").read_text()
    assert any(line.split("#")[0].strip() == "-e ." for line in pip)
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert "3.11" in SpecifierSet(requires)


def test_dev_py_torch_pin_satisfies_the_package():
    sys.path.insert(0, str(REPO))
    import dev

    pin = Requirement(dev.TORCH)
    version = str(next(iter(pin.specifier))).lstrip("=")
    assert version in _pyproject_requirements()["torch"]


def test_postbuild_installs_configures_and_prefetches():
    lines = [line.strip() for line in (REPO / "postBuild").read_text().splitlines()]
    assert "set -euo pipefail" in lines
    assert "pip install --no-deps -e ." in lines
    assert "python -m lab_utils setup-jupyter" in lines
    assert "python -m lab_utils prefetch" in lines


def test_readme_two_commands_are_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["python3 dev.py lab", "python3 dev.py test"]
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^python3 dev\.py test\b", ci, re.M)


@pytest.mark.parametrize("name", ["postBuild", ".ci/run", "dev.py"])
def test_scripts_are_executable(name):
    import os

    assert os.access(REPO / name, os.X_OK)


def test_setup_jupyter_for_students(tmp_path):
    """Instructor panels off, Validate on, student timeout written (in a throw-away config dir)."""
    import json
    import os
    import subprocess

    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "lab_utils", "setup-jupyter", "--level", "user"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    page = json.loads((tmp_path / "labconfig" / "page_config.json").read_text())
    disabled = {k for k, v in page["disabledExtensions"].items() if v}
    assert "@jupyter/nbgrader:formgrader" in disabled and "@jupyter/nbgrader:create-assignment" in disabled
    assert "@jupyter/nbgrader:validate-assignment" not in disabled
    config = (tmp_path / "nbgrader_config.py").read_text()
    assert "c.Execute.timeout = 900" in config
    listed = subprocess.run([sys.executable, "-m", "jupyter", "server", "extension", "list"], env=env,
                            capture_output=True, text=True)
    text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    sections = dict(re.findall(r"Config dir: (\S+)\n(.*?)(?=Config dir:|\Z)", text, re.S))
    ours = dict(re.findall(r"(nbgrader\.server_extensions\.\w+) (enabled|disabled)", sections[str(tmp_path)]))
    # The user folder comes first, so it wins over the venv's own settings.
    assert list(sections)[0] == str(tmp_path)
    assert ours == {name: "disabled" for name in ("nbgrader.server_extensions.formgrader",
                                                  "nbgrader.server_extensions.course_list",
                                                  "nbgrader.server_extensions.assignment_list")}
    assert "validate_assignment disabled" not in text


def test_readme_badge_is_the_published_repository():
    sys.path.insert(0, str(REPO / "grading"))
    import course

    assert f"]({course.binder_url()})" in (REPO / "README.md").read_text()
    assert "{{BINDER_URL}}" in course.STUDENT_README.read_text()


def test_nbformat_imports_without_the_iri_grammar():
    """dev.py removes rfc3987-syntax (SLOW_IMPORTS): nbformat, hence nbgrader, must still
    import and validate a notebook without it, and without building its grammar."""
    import subprocess

    code = ("import sys, nbformat; nb = nbformat.v4.new_notebook(); nbformat.validate(nb); "
            "print('rfc3987_syntax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
