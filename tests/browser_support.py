"""Shared by the browser tests: a JupyterLab server isolated from the user's Jupyter set-up,
and headless Debian Chromium driven by Playwright (never Playwright's own browser download).

Not a test module. ``browser`` is a pytest fixture: import it into a test module to use it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # needed as root; the page is our own local server
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--disable-quic",
]
SERVER_START_S = 120
UI_TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def isolated_jupyter_env(tmp: Path, base: dict | None = None) -> dict:
    """Environment of a Jupyter server that reads nothing from the user's Jupyter set-up and
    writes nothing to it; no news or update toast in JupyterLab."""
    settings = tmp / "lab-settings"
    write_json(settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings",
               {"fetchNews": "false", "checkForUpdates": False})
    env = dict(os.environ if base is None else base)
    env.update({
        "JUPYTER_CONFIG_DIR": str(tmp / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "lab-workspaces"),
        "IPYTHONDIR": str(tmp / "ipython"),
    })
    return env


def server_args(port: int, token: str) -> list[str]:
    """JupyterLab options for a test server on 127.0.0.1:``port``."""
    return ["--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}", "--ServerApp.terminals_enabled=False",
            "--LanguageServerManager.autodetect=False"]


class Lab:
    def __init__(self, url: str, token: str, root: Path, log: Path, proc: subprocess.Popen):
        self.url, self.token, self.root, self.log, self.proc = url, token, root, log, proc

    def api(self, method: str, path: str, timeout: float = 10.0):
        req = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def get(self, path: str) -> tuple[int, dict]:
        """HTTP status and headers of GET ``path`` on the server (with the token)."""
        req = urllib.request.Request(f"{self.url}{path}", headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers)

    def status_of(self, path: str) -> int:
        return self.get(path)[0]

    def log_tail(self, n: int = 60) -> str:
        try:
            return "".join(self.log.read_text(errors="replace").splitlines(keepends=True)[-n:])
        except OSError:
            return "(no server log)"

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}", timeout=60)


def start_lab(cmd: list[str], env: dict, root: Path, log: Path, port: int, token: str, cwd: Path | None = None) -> Lab:
    """Start ``cmd`` (a Jupyter server on ``port``) and wait until it answers."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd or root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, root, log, proc)
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with code {proc.returncode}:\n{server.log_tail()}")
        try:
            server.api("GET", "status", timeout=2)
            return server
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                stop(proc)
                pytest.fail(f"JupyterLab did not answer in {SERVER_START_S} s:\n{server.log_tail()}")
            time.sleep(0.5)


def new_token() -> str:
    return secrets.token_hex(24)


def stop(proc: subprocess.Popen) -> None:
    """Stop the server, its kernels and anything else they started."""
    try:
        import psutil

        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except Exception:  # psutil missing or the server already gone
        family = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)  # the server's whole process group
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                continue
    # Kernels live in process groups of their own: end those still running.
    for p in family:
        try:
            p.kill()
        except Exception:
            pass


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; see .ci/setup-browser.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; see .ci/setup-browser.sh)")
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
