"""The README's first command, `python3 dev.py lab`: a working JupyterLab on the notebooks, or one
French list of everything missing; stopping dev.py stops JupyterLab."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_lab(tmp_path):
    """``dev.py lab`` (ci profile) in a session of its own: (process, port, token); output in lab.log."""
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "TP3_PROFILE": "ci", "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with open(tmp_path / "lab.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "dev.py"), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
             f"--IdentityProvider.token={token}"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, port, token


def _api(proc, port: int, token: str, path: str, seconds: float = 240):
    """JSON of JupyterLab's ``/api/<path>`` once it answers (None if it never does)."""
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/{path}?token={token}", timeout=5) as r:
                return json.load(r)
        except OSError:
            time.sleep(1)
    return None


def _stop(proc) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            break
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue


@pytest.mark.slow
def test_dev_py_lab_serves_the_notebooks(tmp_path):
    proc, port, token = _start_lab(tmp_path)
    try:
        listing = _api(proc, port, token, "contents")
        output = (tmp_path / "lab.log").read_text()
        assert listing is not None, output[-3000:]
        names = {item["name"] for item in listing["content"]}
        assert {"tp3_partie1.ipynb", "tp3_partie2.ipynb"} <= names
        assert "Données SMS" in output and "Tokenizer GPT-2" in output  # the preflight ran
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10) as r:
            assert r.status == 200
    finally:
        _stop(proc)

def _processes_with(text: str) -> list[str]:
    """Processes whose command line holds ``text``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{proc.name} {cmdline[:200]}")
    return found


@pytest.mark.slow
def test_dev_py_lab_lists_every_missing_piece_in_one_message(tmp_path):
    """Data, both tokenizer files and the weights missing, offline: one French list naming each
    with what provides it (the ci profile suggested for the weights), and no JupyterLab."""
    port = _free_port()
    env = {**os.environ, "TP3_PROFILE": "full", "TP3_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "TP3_CACHE_DIR": str(tmp_path / "cache"), "TP3_DATA_DIR": str(tmp_path / "data"),
           "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    env.pop("TP3_GPT2_WEIGHTS", None)
    out = subprocess.run([sys.executable, str(REPO / "dev.py"), "lab", "--no-browser", f"--port={port}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-3000:]
    assert text.count("Il manque") == 1 and "Il manque 4 éléments pour le profil full" in text, text[-3000:]
    listing = text[text.index("Il manque"):]
    for piece, fix in [("Données SMS (SMSSpamCollection) : absent de", "TP3_DATA_DIR="),
                       ("Tokenizer GPT-2 (vocab.bpe) : absent de", "TIKTOKEN_CACHE_DIR="),
                       ("Tokenizer GPT-2 (encoder.json) : absent de", "TIKTOKEN_CACHE_DIR="),
                       ("Poids GPT-2 (model.safetensors, 548 Mo) : absents", "TP3_GPT2_WEIGHTS=")]:
        assert piece in listing, listing
        block = listing[listing.index(piece):].split("\n  - ")[0]
        assert fix in block and "python -m lab_utils prefetch" in block, block
    assert "-> TP3_PROFILE=ci" in listing
    assert "JupyterLab n'a pas été démarré" in text and "JupyterLab démarre" not in text
    assert not _processes_with(f"--port={port}")


@pytest.mark.slow
def test_sigterm_to_dev_py_lab_stops_jupyterlab(tmp_path):
    proc, port, token = _start_lab(tmp_path)
    try:
        assert _api(proc, port, token, "status") is not None, (tmp_path / "lab.log").read_text()[-3000:]
        assert _processes_with(f"--port={port}")  # JupyterLab is a child of dev.py
        os.kill(proc.pid, signal.SIGTERM)  # dev.py alone, as a service manager or `kill` would
        proc.wait(timeout=60)
        deadline = time.time() + 30
        while _processes_with(f"--port={port}") and time.time() < deadline:
            time.sleep(0.5)
        assert not _processes_with(f"--port={port}"), (tmp_path / "lab.log").read_text()[-3000:]
    finally:
        _stop(proc)
