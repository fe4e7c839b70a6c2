"""Lab errors in a real IPython kernel: the French message alone, as an error (the cell fails,
nbgrader sees it), nothing on stderr; other exceptions keep their full traceback.
Oracle: the messages the kernel sends (jupyter_client), as JupyterLab and nbgrader receive them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=["student", "grading"])
def kernel(request):
    from jupyter_client.manager import start_new_kernel

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("TP3_TRACEBACK", None)
    if request.param == "grading":
        env["NBGRADER_EXECUTION"] = "autograde"
    else:
        env.pop("NBGRADER_EXECUTION", None)
    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=120, env=env)
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc, code: str) -> tuple[str, list[dict]]:
    """Execute ``code``; returns the reply status and the iopub messages of that request."""
    msg_id = kc.execute(code)
    reply = kc.get_shell_msg(timeout=120)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=120)
    messages = []
    while True:
        msg = kc.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return reply["content"]["status"], messages
        messages.append(msg)


def _plain(lines) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(lines))


def _errors(messages):
    return [m["content"] for m in messages if m["msg_type"] == "error"]


def _stderr(messages):
    return [m["content"]["text"] for m in messages if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"]


def test_lab_error_shows_the_french_message_alone(kernel):
    status, messages = run(kernel, "import lab_utils as lab\nlab.gpt_config('gpt2-huge')")
    assert status == "error"
    (error,) = _errors(messages)
    assert error["ename"] == "ConfigError"
    assert error["evalue"].startswith("Modèle inconnu 'gpt2-huge'.")
    assert error["traceback"] == ["\x1b[1;31mErreur\x1b[0m : " + error["evalue"]]
    assert _stderr(messages) == []


def test_lab_error_from_deep_inside(kernel, tmp_path):
    code = f"import lab_utils as lab\nlab.load_run({str(tmp_path / 'absent')!r}, 'ci')"
    status, messages = run(kernel, code)
    (error,) = _errors(messages)
    assert status == "error" and error["ename"] == "RunError"
    assert len(error["traceback"]) == 1 and "absent ou incomplet" in error["traceback"][0]
    assert "File " not in error["traceback"][0] and "Traceback" not in error["traceback"][0]


def test_other_exceptions_keep_their_traceback(kernel):
    status, messages = run(kernel, "def f():\n    return 1 / 0\nf()")
    (error,) = _errors(messages)
    assert status == "error" and error["ename"] == "ZeroDivisionError"
    text = _plain(error["traceback"])
    assert "Traceback" in text and "return 1 / 0" in text and len(error["traceback"]) >= 3
    assert _stderr(messages) == []


def test_assertion_of_a_test_cell_keeps_its_traceback(kernel):
    status, messages = run(kernel, "from lab_utils.grading import check_number\ncheck_number('x', 1, 2)")
    (error,) = _errors(messages)
    assert error["ename"] == "AssertionError" and error["evalue"] == "x : attendu 2, obtenu 1."
    assert len(error["traceback"]) > 1


def test_frames_on_request(kernel):
    run(kernel, "import os\nos.environ['TP3_TRACEBACK'] = '1'")
    status, messages = run(kernel, "lab.gpt_config('gpt2-huge')")
    run(kernel, "del os.environ['TP3_TRACEBACK']")
    (error,) = _errors(messages)
    text = _plain(error["traceback"])
    assert "Traceback (most recent call last)" in text and "config.py" in text and "Modèle inconnu" in text


def test_python_outside_ipython_is_unchanged():
    import subprocess

    out = subprocess.run([sys.executable, "-c", "import lab_utils as lab; lab.gpt_config('x')"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 1 and "Traceback (most recent call last)" in out.stderr
    assert "ConfigError: Modèle inconnu 'x'" in out.stderr
