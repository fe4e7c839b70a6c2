"""The whole course on a real JupyterHub, with nbgrader's exchange and real Unix users.

JupyterHub and configurable-http-proxy on 127.0.0.1 (random ports), three local users created
here (an instructor, Alice and Bob; removed at the end), each with their own single-user server
started by the local-process spawner from this repository's .venv (ci profile). nbgrader's
exchange is a temporary folder with the permissions nbgrader documents (root 0777; nbgrader's
release makes inbound 2733 and feedback 0711). Everything goes through the hub's REST API and
each user's own server (contents, kernels, nbgrader's assignment-list endpoints):

1. the instructor generates the course (`course.py generate --no-copy` on a copy of grading/)
   and releases it (`nbgrader release_assignment`);
2. Alice and Bob fetch it, fill in the solutions (each signs one cell), run both notebooks in
   their own kernels (part 2 trains and writes tp3_run/) and submit through the exchange;
3. Bob then submits the empty release under Alice's name (`nbgrader submit --student`);
4. the instructor collects (`course.py collect --exchange`): Bob's forgery is refused and
   reported, Alice's own submission is kept; autogrades (`--jobs 2` where course.py has it; as
   the instructor, so without the sandbox), generates and releases feedback;
5. each student fetches their feedback: only their own, and cannot reach the other's.

Oracles: nbgrader's gradebook (full automatic marks for both, nothing for the forgery), the
files each user's server shows, and permission errors raised in each user's own kernel.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

import grading_course

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TP3_SHARED", REPO.parent / "shared")).resolve()
GRADING = REPO / "grading"
sys.path.insert(0, str(GRADING))
import course  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.hub, pytest.mark.nbgrader]

INSTRUCTOR, ALICE, BOB = "tp3hub-prof", "tp3hub-alice", "tp3hub-bob"
NOTEBOOKS = ("tp3_partie1", "tp3_partie2")


def _why_not() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root (creates Unix users, the hub spawns their servers with setuid)"
    if importlib.util.find_spec("jupyterhub") is None:
        return "jupyterhub is not installed (dev extra: python3 dev.py test)"
    if shutil.which("configurable-http-proxy") is None:
        return "configurable-http-proxy is not on PATH (npm; .ci/setup-hub.sh installs it)"
    return None


@pytest.fixture(scope="module")
def hub_class(shared):
    """The hub, its three users and their running servers; everything removed afterwards."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    import hub_class as hc

    base = Path(tempfile.mkdtemp(prefix="tp3-hub-"))
    os.chmod(base, 0o755)
    traversal = hc.Traversal()
    hub = None
    try:
        exchange = base / "exchange"
        exchange.mkdir()
        os.chmod(exchange, 0o777)  # nbgrader's documented set-up: writable by everyone
        # every user's server reads deploy/jupyter first (Assignments tab on), with this exchange
        config_dir = base / "jupyter-config"
        shutil.copytree(REPO / "deploy" / "jupyter", config_dir)
        (config_dir / "nbgrader_config.py").write_text(f"c = get_config()\nc.Exchange.root = {str(exchange)!r}\n")
        hub_dir = base / "hub"
        hub_dir.mkdir(mode=0o700)
        traversal.grant(REPO, SHARED, hc.python_home(), base)
        for name in (INSTRUCTOR, ALICE, BOB):
            hc.create_user(name)
        hc.install_tree(REPO / "deploy" / "instructor", INSTRUCTOR, ".jupyter")  # formgrader on, as deploy.md says
        environment = {
            "PATH": f"{hc.VENV_BIN}:/usr/local/bin:/usr/bin:/bin",
            "TP3_PROFILE": "ci", "TP3_PROGRESS": "0", "HF_HUB_OFFLINE": "1",
            "TP3_DATA_DIR": str(SHARED / "data"), "TIKTOKEN_CACHE_DIR": str(SHARED / "tiktoken_cache"),
            "JUPYTER_CONFIG_PATH": str(config_dir), "PYTHONDONTWRITEBYTECODE": "1",
        }
        hub = hc.Hub(hub_dir, [INSTRUCTOR, ALICE, BOB], environment)
        hub.start()
        servers = {name: hub.start_server(name) for name in (INSTRUCTOR, ALICE, BOB)}
        yield {"servers": servers, "exchange": exchange, "hub": hub}
    finally:
        if hub is not None:
            hub.stop()
        for name in (INSTRUCTOR, ALICE, BOB):
            hc.remove_user(name)
        traversal.restore()
        shutil.rmtree(base, ignore_errors=True)


def _ok(result: dict, what: str) -> dict:
    assert result["rc"] == 0, f"{what}: exit {result['rc']}\n{result['out'][-4000:]}\n{result['err'][-4000:]}"
    return result


def _signed(nb: dict, student: str) -> dict:
    """Sign the first answer cell (a comment: it changes no result) so each feedback is told apart."""
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code" and c["metadata"].get("nbgrader", {}).get("solution"))
    cell["source"] = "".join(cell["source"]).rstrip("\n") + f"\n# travail de {student}\n"
    return nb


def _student_works(server, course_root: Path) -> None:
    """Fetch, fill in the solutions (signed), run both notebooks, submit: all through ``server``."""
    listed = server.nbgrader("fetch", "tp3", "tp3")
    assert any(a["status"] == "fetched" for a in listed["value"]), listed
    for name in NOTEBOOKS:
        fetched = server.read(f"tp3/{name}.ipynb")["content"]
        filled = course.completed_release(f"{name}.ipynb", course_root)
        ids = [[c["metadata"].get("nbgrader", {}).get("grade_id") for c in nb["cells"]] for nb in (fetched, filled)]
        assert ids[0] == ids[1], "the fetched release is not the committed one (course.py check-release)"
        server.write_notebook(f"tp3/{name}.ipynb", _signed(filled, server.name) if name == "tp3_partie1" else filled)
        server.run_notebook(f"tp3/{name}.ipynb")
    run = {f["name"] for f in server.read("tp3/tp3_run")["content"]}
    assert {"adapter.safetensors", "history.json", "run.json"} <= run
    submitted = server.nbgrader("submit", "tp3", "tp3")
    assert submitted["success"], submitted


def test_class_on_jupyterhub(hub_class):
    servers, exchange = hub_class["servers"], hub_class["exchange"]
    prof, alice, bob = servers[INSTRUCTOR], servers[ALICE], servers[BOB]
    py = str(Path(sys.executable))

    # 1. The instructor's course: a copy of grading/ in their home, generated and released.
    home = Path(os.path.expanduser(f"~{INSTRUCTOR}"))
    prof.python(
        "import json, shutil\n"
        f"shutil.copytree({str(GRADING)!r}, 'grading', ignore=shutil.ignore_patterns("
        "'release', 'submitted', 'autograded', 'feedback', 'gradebook.db', 'reports', '__pycache__', 'tp3_run'))\n"
        "print(json.dumps('ok'))\n")
    _ok(prof.command([py, "grading/course.py", "generate", "--no-copy"]), "generate")
    _ok(prof.command([py, "-m", "nbgrader", "release_assignment", "tp3"], cwd="grading"), "release_assignment")
    assert oct(os.stat(exchange / "tp3" / "inbound").st_mode & 0o7777) == "0o2733"

    # 2. Both students fetch, fill in, run and submit, each in their own server, at the same time.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for done in [pool.submit(_student_works, server, home / "grading") for server in (alice, bob)]:
            done.result()

    # 3. Bob hands in the empty release under Alice's name.
    forged = bob.python(
        "import json, os, shutil, subprocess, sys\n"
        f"shutil.copytree({str(exchange / 'tp3' / 'outbound' / 'tp3')!r}, 'forgery/tp3')\n"
        f"r = subprocess.run([sys.executable, '-m', 'nbgrader', 'submit', 'tp3', '--course', 'tp3', '--student', {ALICE!r}],"
        " cwd='forgery', capture_output=True, text=True)\n"
        "print(json.dumps({'rc': r.returncode, 'err': r.stderr[-3000:]}))\n")
    assert forged["rc"] == 0, forged  # nbgrader's exchange lets him write it
    inbound = sorted(os.listdir(exchange / "tp3" / "inbound"))
    assert len(inbound) == 3 and sum(e.startswith(f"{ALICE}+") for e in inbound) == 2

    # 4. Collect: the forgery refused and reported, Alice's own work kept.
    collected = prof.command([py, "grading/course.py", "collect", "--exchange"])
    assert collected["rc"] == 1, collected
    report = json.loads((home / "grading" / "reports" / "collect.json").read_text())
    assert sorted(c["student"] for c in report["collected"]) == [ALICE, BOB]
    (refusal,) = report["refused"]
    assert (refusal["claimed"], refusal["owner"]) == (ALICE, BOB) and refusal["entry"] in inbound
    assert f"REFUSED   {refusal['entry']}: claims {ALICE!r}, really {BOB}" in collected["out"]
    part1 = home / "grading" / "submitted" / ALICE / "tp3" / "tp3_partie1.ipynb"
    assert f"# travail de {ALICE}" in part1.read_text()

    jobs = ["--jobs", "2"] if "--jobs" in prof.command([py, "grading/course.py", "autograde", "--help"])["out"] else []
    _ok(prof.command([py, "grading/course.py", "autograde", *jobs]), "autograde")
    root = home / "grading"
    full = grading_course.expected(root, {})
    assert grading_course.scores(root, ALICE) == full
    assert grading_course.scores(root, BOB) == full
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        assert sorted(s.id for s in gb.students) == [ALICE, BOB]
        assert len(gb.find_assignment("tp3").submissions) == 2
    _ok(prof.command([py, "grading/course.py", "feedback"]), "feedback")
    _ok(prof.command([py, "-m", "nbgrader", "release_feedback", "tp3"], cwd="grading"), "release_feedback")

    # 5. Each student fetches their own feedback, and cannot reach the other's.
    for server, other in ((alice, BOB), (bob, ALICE)):
        server.nbgrader("fetch_feedback", "tp3", "tp3")
        (stamp,) = [f["name"] for f in server.read("tp3/feedback")["content"]]
        files = {f["name"] for f in server.read(f"tp3/feedback/{stamp}")["content"]}
        assert files == {f"{name}.html" for name in NOTEBOOKS}
        html = server.read(f"tp3/feedback/{stamp}/tp3_partie1.html")["content"]
        assert f"# travail de {server.name}" in html and f"travail de {other}" not in html
    other_home = os.path.expanduser(f"~{ALICE}")
    tried = bob.python(
        "import json, os\n"
        "out = {}\n"
        f"for what, path in [('feedback', {str(exchange / 'tp3' / 'feedback')!r}), "
        f"('inbound', {str(exchange / 'tp3' / 'inbound')!r}), ('home', {other_home!r})]:\n"
        "    try:\n"
        "        os.listdir(path); out[what] = 'listed'\n"
        "    except PermissionError:\n"
        "        out[what] = 'denied'\n"
        "print(json.dumps(out))\n")
    assert tried == {"feedback": "denied", "inbound": "denied", "home": "denied"}

    # The formgrader caveat of docs/deploy.md (nbgrader issue #1870): the page is served, but
    # JupyterHub forbids showing it in a frame, which is how JupyterLab's menu opens it.
    page = prof.http("GET", "/formgrader")
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
