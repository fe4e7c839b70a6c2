#!/usr/bin/env python3
"""The lab's two set-up commands (Linux, macOS, Windows; Python >= 3.10):

    python3 dev.py lab     install the lab in .venv, check and fetch data + tokenizer (+ weights), start JupyterLab
    python3 dev.py test    install the lab and its test tools in .venv, run the quick profile of the
                           test suite (what CI runs: every test but those marked ``full``, two at a time)
    python3 dev.py test --full    the whole suite, one test at a time

Both create ``.venv`` beside this file on first use and reinstall only when
``pyproject.toml`` changed. PyTorch comes from PyTorch's CPU-only index when it is
reachable (no multi-GB CUDA download on a laptop), otherwise from the default index.
Extra arguments go to JupyterLab (``lab``) or pytest (``test``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
TORCH = "torch==2.13.0"  # the version the lab is tested with
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def venv_python() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_env() -> dict:
    """The environment of an activated .venv: its scripts (jupyter, nbgrader, alembic...) first on PATH."""
    scripts = venv_python().parent
    return {**os.environ, "VIRTUAL_ENV": str(VENV), "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(*cmd, **kwargs) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)


def reachable(url: str, timeout: float = 3.0) -> bool:
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
        return True
    except Exception:
        return False


# jsonschema's optional IRI format checker (pulled in by jupyter-events through
# jsonschema[format-nongpl]) builds a parser at import: 2 s in every process that imports
# nbformat, so in every nbgrader, nbconvert and course.py run. Nothing here validates IRIs;
# without it jsonschema simply does not check that one format.
SLOW_IMPORTS = ("rfc3987-syntax",)


def install(extra: str) -> Path:
    """Create .venv if needed and install the package with ``extra`` ("lab" or "dev")."""
    if sys.version_info < (3, 10):
        sys.exit(f"Python >= 3.10 est nécessaire (vous avez {sys.version.split()[0]}).")
    if not venv_python().exists():
        print(f"Création de l'environnement virtuel {VENV} ...")
        venv.create(VENV, with_pip=True)
    py = venv_python()
    stamp = VENV / f".tp3-installed-{extra}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + f"{TORCH} {SLOW_IMPORTS}".encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return py
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    torch_index = ["--extra-index-url", TORCH_CPU_INDEX] if reachable(TORCH_CPU_INDEX + "/torch/") else []
    run(*pip, TORCH, *torch_index)  # first, so that the package's "torch>=" is already met
    run(*pip, "-e", f".[{extra}]", cwd=ROOT)
    run(py, "-m", "pip", "uninstall", "--disable-pip-version-check", "-q", "-y", *SLOW_IMPORTS)
    stamp.write_text(digest)
    return py


def lab(args: list[str]) -> int:
    py = install("lab")
    # Preflight: what the profile needs is checked (no network), the missing pieces fetched when
    # their server answers, then one French list of everything still missing: no JupyterLab then.
    if subprocess.call([str(py), "-m", "lab_utils", "prefetch"], cwd=ROOT, env=venv_env()) != 0:
        print("\nJupyterLab n'a pas été démarré : fournissez ce qui manque (liste ci-dessus), "
              "puis relancez « python3 dev.py lab ».", file=sys.stderr)
        return 1
    run(py, "-m", "lab_utils", "setup-jupyter", cwd=ROOT, env=venv_env())  # Validate on, instructor panels off
    notebooks = ROOT / "notebooks"
    if os.name != "nt" and os.geteuid() == 0 and "--allow-root" not in args:
        args = [*args, "--allow-root"]  # containers often run as root; JupyterLab refuses it otherwise
    print("\nJupyterLab démarre sur", notebooks, "(Ctrl+C pour arrêter).", flush=True)
    return serve([str(py), "-m", "jupyter", "lab", f"--ServerApp.root_dir={notebooks}", *args], venv_env())


def serve(cmd: list[str], env: dict) -> int:
    """Run ``cmd`` (JupyterLab) until it ends; SIGTERM, SIGINT or SIGHUP sent to dev.py stop it
    too (a clean shutdown, kernels included; a second signal kills it)."""
    proc = subprocess.Popen(cmd, env=env)
    signals = [getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)]

    def forward(signum, frame):
        if proc.poll() is None:
            proc.kill() if forward.sent else proc.terminate()
            forward.sent = True

    forward.sent = False
    previous = {sig: signal.signal(sig, forward) for sig in signals}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


QUICK_WORKERS = 2  # test modules run two at a time (pytest-xdist): most of a grading test waits on processes


def test(args: list[str]) -> int:
    py = install("dev")
    if "--full" in args:
        args = [a for a in args if a != "--full"]
    else:  # the quick profile; options given on the command line take precedence
        if "-m" not in args:
            args = ["-m", "not full", *args]
        if "-n" not in args and not any(a.startswith("--numprocesses") for a in args):
            args = ["-n", str(QUICK_WORKERS), "--dist", "loadfile", "--no-loadscope-reorder", "--durations=25", *args]
    return subprocess.call([str(py), "-m", "pytest", *args], cwd=ROOT, env=venv_env())


def main() -> int:
    commands = {"lab": lab, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
