"""The instructor's side in a real browser: the launcher's formgrader, the sanitising of what
students wrote, and the French feedback page.

One course (``course.py generate --no-copy``), three submissions graded by ``course.py
autograde`` (tests/grading_course.py): ``sample-complete`` (part 1), ``sample-flawed`` (both
parts, the two flaws of ``course.py samples``) and ``attaque`` (part 1 with every attack of
tests/html_attacks.py). ``course.py feedback`` writes the pages; ``course.py lab`` serves the
course while a student set-up (``lab_utils.jupyter_setup``, what ``dev.py lab`` writes) is in
force at a higher priority than the environment's.

Headless Debian Chromium (Playwright) does what the instructor and a student do. The attacks
set three markers when they run: a request to a local listener, the page title, a file written
in the course through the Jupyter contents API with the instructor's XSRF cookie. None may be
set; the same attacks, unsanitised, are shown to set them (so the test can fail). Screenshots:
``test-artifacts/instructor/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from browser_support import (UI_TIMEOUT_MS, browser, free_port, isolated_jupyter_env,  # noqa: F401 (fixture)
                             new_token, server_args, start_lab, stop)

import grading_course
import html_attacks

pytestmark = [pytest.mark.browser, pytest.mark.nbgrader, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "instructor"
STUDENTS = ("sample-complete", "sample-flawed", "attaque")
ENGLISH_LABELS = ("Student's answer", "Student's task", "Grade cell", "Test cell", "Written response", "Score:",
                  "Comments:", "(Top)", "Coding free-response", "Late submission penalty", "VALIDATION FAILED",
                  "In [", "Out[")
SETTLE_S = 3  # after a page has loaded: time for any payload (image error, iframe, timers) to run


def _flaw(folder: Path) -> None:
    """The two flaws of ``course.py samples``: one wrong number, retyped predictions."""
    grading_course.edit(folder / "tp3_partie1.ipynb", lambda nb: grading_course.replace(
        nb, "q2_answer", "trainable_share = 100 * trainable_params / total_params", "trainable_share = 0.807 * 100"))
    grading_course.edit(folder / "tp3_partie2.ipynb", lambda nb: grading_course.replace(
        nb, "my_texts",
        "my_predictions = [lab.classify_text(text, model, tokenizer, device) for text, _ in my_texts]",
        'my_predictions = [("spam", 0.99), ("ham", 0.99), ("spam", 0.99), ("ham", 0.99)]'))


def course_files(root: Path) -> dict[str, str]:
    """Path -> SHA-256 of every file of the course (the gradebook and the launcher's config aside)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "gradebook.db" and ".instructor-jupyter" not in p.parts
            and ".ipynb_checkpoints" not in p.parts}


@pytest.fixture(scope="module")
def listener():
    server = html_attacks.Listener()
    yield server
    server.close()


@pytest.fixture(scope="module")
def graded(shared, tmp_path_factory, listener):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    root = grading_course.new_course(tmp_path_factory, "instructor-course")
    grading_course.submit(root, "sample-complete", ("tp3_partie1",))
    _flaw(grading_course.submit(root, "sample-flawed"))
    attack = grading_course.submit(root, "attaque", ("tp3_partie1",))
    grading_course.edit(attack / "tp3_partie1.ipynb", lambda nb: html_attacks.attack(nb, listener.port))
    for student in STUDENTS:
        subprocess.run([sys.executable, "-m", "nbgrader", "db", "student", "add", student], cwd=root, check=True,
                       capture_output=True)
    out = grading_course.course_cli(root, "autograde", "--jobs", "2")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    said = [line for line in out.stdout.splitlines() if line.startswith("autograded attaque ")]
    assert any("tp3_partie1: " in line and "made inert" in line for line in said), out.stdout[-3000:]  # the grader says so
    out = grading_course.course_cli(root, "feedback")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert listener.hits == [], "grading itself contacted the listener"
    return root


@pytest.fixture(scope="module")
def student_setup(tmp_path_factory) -> Path:
    """The student set-up of ``dev.py lab`` (instructor panels and formgrader off), written
    to a folder of its own instead of the shared environment."""
    from lab_utils import jupyter_setup

    folder = tmp_path_factory.mktemp("student-jupyter")
    with mock.patch.object(jupyter_setup, "config_dir", lambda level: folder):
        jupyter_setup.configure_student_jupyter("sys_prefix")
    return folder


def _server(root: Path, tmp: Path, student_setup: Path, launcher: bool):
    env = isolated_jupyter_env(tmp, {**os.environ, "TP3_PROFILE": "ci"})
    env["JUPYTER_CONFIG_PATH"] = str(student_setup)  # above the environment's own configuration
    port, token = free_port(), new_token()
    if launcher:
        cmd = [sys.executable, str(REPO / "grading" / "course.py"), "--root", str(root), "lab", *server_args(port, token)]
    else:
        cmd = [sys.executable, "-m", "jupyter", "lab", *server_args(port, token), f"--ServerApp.root_dir={root}"]
    return start_lab(cmd, env, root, tmp / "server.log", port, token)


@pytest.fixture(scope="module")
def instructor(graded, tmp_path_factory, student_setup):
    """``python grading/course.py lab`` on the graded course."""
    tmp = tmp_path_factory.mktemp("instructor-lab")
    server = _server(graded, tmp, student_setup, launcher=True)
    try:
        yield server
    finally:
        stop(server.proc)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(server.log, ARTIFACTS / "jupyter-server.log")


@pytest.fixture
def page(browser, instructor, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(UI_TIMEOUT_MS)
    pg = context.new_page()
    failed_before = request.session.testsfailed
    try:
        yield pg
    finally:
        if request.session.testsfailed > failed_before:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            try:
                pg.screenshot(path=str(ARTIFACTS / f"FAILED-{request.node.name}.png"), full_page=True)
            except Exception as exc:  # the page may be gone
                print(f"no screenshot of the failure: {exc}")
        context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    print(f"screenshot: {ARTIFACTS / f'{name}.png'}")


def login(page, server) -> None:
    """Open JupyterLab with the token: the browser then holds the instructor's cookies."""
    page.goto(f"{server.url}/lab?token={server.token}")
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").wait_for()


def submission_id(root: Path, student: str, notebook: str = "tp3_partie1") -> str:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        return gb.find_submission_notebook(notebook, "tp3", student).id


def visit(page, url: str, content: str) -> str:
    """Open ``url``, click every link and submit button inside ``content``, come back each
    time; returns the page's title as it was after loading."""
    page.goto(url)
    page.wait_for_load_state("load")
    time.sleep(SETTLE_S)
    title = page.title()
    targets = page.evaluate("""(sel) => {
        const root = document.querySelector(sel) || document.body;
        return [...root.querySelectorAll('a[href], button[type=submit], input[type=submit], form button')].length;
    }""", content)
    for i in range(targets):
        page.evaluate("""([sel, i]) => {
            const root = document.querySelector(sel) || document.body;
            const el = [...root.querySelectorAll('a[href], button[type=submit], input[type=submit], form button')][i];
            if (el) el.click();
        }""", [content, i])
        time.sleep(0.5)
        if page.url.split("#")[0] != url.split("#")[0]:
            page.goto(url)
            page.wait_for_load_state("load")
    time.sleep(1)
    return title


def assert_nothing_fired(listener, root: Path, before: dict, titles: dict) -> None:
    assert listener.hits == [], f"requests from the payloads: {listener.hits}"
    assert not [t for t in titles.values() if "PWNED" in t], titles
    after = course_files(root)
    assert after == before, f"files written or changed in the course: {sorted(set(after.items()) ^ set(before.items()))}"


def test_attack_graded_beside_honest_submissions(graded):
    """Its part 1 answers are the solutions: the attack keeps exactly the honest points."""
    part1 = grading_course.tests_of(graded, "tp3_partie1")
    full = grading_course.full_scores(graded)
    for student in ("sample-complete", "attaque"):
        scores = grading_course.scores(graded, student)
        assert {gid: scores[gid] for gid in part1} == {gid: full[gid] for gid in part1}, student
    flawed = grading_course.scores(graded, "sample-flawed")
    assert flawed["q2_share"] == 0 and flawed["texts_real"] == 0


def test_student_setup_hides_formgrader_without_the_launcher(graded, tmp_path_factory, student_setup):
    """The set-up the launcher must overcome is really in force (else the next test proves nothing)."""
    server = _server(graded, tmp_path_factory.mktemp("plain-lab"), student_setup, launcher=False)
    try:
        assert server.status_of("/formgrader") == 404
    finally:
        stop(server.proc)


def test_formgrader_lists_the_submissions_and_opens_one_for_manual_grading(page, instructor, graded):
    status, headers = instructor.get("/formgrader/manage_assignments")
    # without JupyterHub, pages may be framed by the same origin: JupyterLab's Formgrader tab
    # works (JupyterHub >= 4.1 sends frame-ancestors 'none' instead: nbgrader#1870, grading/README.md)
    assert status == 200 and "frame-ancestors 'self'" in headers.get("Content-Security-Policy", ""), headers
    login(page, instructor)
    page.locator(".lm-MenuBar-item", has=page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader")).click()
    page.locator('.lm-Menu .lm-Menu-item[data-command="nbgrader:open-formgrader"]').click()
    frame = page.frame_locator(".jp-MainAreaWidget iframe")
    frame.locator("h1", has_text="Manage Assignments").wait_for()
    frame.locator("a", has_text="Manual Grading").first.click()
    frame.locator("a", has_text="tp3").first.click()
    frame.locator("a", has_text="tp3_partie1").first.click()
    frame.locator("a", has_text=f"Submission #{len(STUDENTS)}").wait_for()  # the table is built by script
    frame.locator("#toggle_names").click()
    for student in STUDENTS:
        frame.locator("a.name-shown", has_text=student).wait_for()
    shot(page, "formgrader-submissions")
    frame.locator("a.name-shown", has_text="sample-flawed").click()
    frame.locator(".nbgrader_cell").first.wait_for()
    # the written answers wait for a grade; the flawed answer is there
    assert frame.locator("input.score").count() >= 3
    assert frame.locator("#q1_written").count() == 1
    assert "trainable_share = 0.807 * 100" in frame.locator("body").inner_text()
    shot(page, "formgrader-manual-grading")


def test_attacks_are_inert_for_the_instructor_and_the_student(page, instructor, graded, listener, tmp_path):
    login(page, instructor)
    before, titles = course_files(graded), {}
    # formgrader's manual grading page, with the instructor's login
    url = f"{instructor.url}/formgrader/submissions/{submission_id(graded, 'attaque')}/"
    titles["formgrader"] = visit(page, url, "#notebook-container")
    assert page.locator("#notebook-container").first.inner_text().count("onerror") >= 1  # shown, as text
    shot(page, "attack-formgrader")
    # the graded notebook in JupyterLab
    page.goto(f"{instructor.url}/lab/workspaces/attack/tree/autograded/attaque/tp3/tp3_partie1.ipynb")
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    time.sleep(SETTLE_S)
    titles["jupyterlab"] = page.title()
    instructor.shutdown_kernels()
    # the student's feedback pages, with and without their Content-Security-Policy
    for name in ("tp3_partie1.html",):
        page_path = graded / "feedback" / "attaque" / "tp3" / name
        titles["feedback"] = visit(page, page_path.as_uri(), "main")
        shot(page, "attack-feedback")
        no_csp = tmp_path / f"no-csp-{name}"
        no_csp.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page_path.read_text()))
        titles["feedback without CSP"] = visit(page, no_csp.as_uri(), "main")
    assert_nothing_fired(listener, graded, before, titles)


@pytest.mark.full  # tests/test_sanitize.py proves the same in seconds without a server
def test_the_same_attacks_fire_unsanitised(page, instructor, graded, listener, tmp_path):
    """The control: the attack notebook as the student's kernel leaves it, not sanitised."""
    import nbformat

    work = tmp_path / "executed"
    work.mkdir()
    shutil.copy(graded / "submitted" / "attaque" / "tp3" / "tp3_partie1.ipynb", work)
    grading_course.course.execute_as_student(work)
    executed = work / "tp3_partie1.ipynb"
    graded_nb = graded / "autograded" / "attaque" / "tp3" / "tp3_partie1.ipynb"
    kept = graded_nb.read_bytes()
    fired: dict[str, set[str]] = {}
    login(page, instructor)
    try:
        listener.hits.clear()
        shutil.copy(executed, graded_nb)  # formgrader renders whatever autograded/ holds
        page.goto(f"{instructor.url}/formgrader/submissions/{submission_id(graded, 'attaque')}/")
        page.wait_for_load_state("load")
        time.sleep(SETTLE_S + 2)
        fired["formgrader"] = listener.names()
        title = page.title()
        written = sorted(p.name for p in graded.glob("pwned-*.txt"))
        listener.hits.clear()
        stock = tmp_path / "stock-feedback.html"
        stock.write_text(html_attacks.render(nbformat.read(str(executed), as_version=4), "feedback"))
        page.goto(stock.as_uri())
        page.wait_for_load_state("load")
        time.sleep(SETTLE_S)
        fired["nbgrader's feedback"] = listener.names()
    finally:
        graded_nb.write_bytes(kept)
        for path in graded.glob("pwned-*.txt"):
            path.unlink()
        listener.hits.clear()
    print("fired without sanitising:", *(f"{k}: {sorted(v)}" for k, v in fired.items()), sep="\n  ")
    assert html_attacks.MUST_FIRE_UNSANITISED <= fired["formgrader"] | fired["nbgrader's feedback"]
    assert "PWNED" in title
    assert written, "no payload wrote a file through the contents API"


def test_french_feedback_page_of_the_flawed_submission(page, graded):
    texts = {}
    for name in ("tp3_partie1", "tp3_partie2"):
        path = graded / "feedback" / "sample-flawed" / "tp3" / f"{name}.html"
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        shot(page, f"feedback-sample-flawed-{name}")
        assert page.evaluate("document.scripts.length") == 0
        texts[name] = page.locator("body").inner_text()
        if name == "tp3_partie1":
            assert page.locator("math").count() >= 5  # maths as MathML, no MathJax, no network
            assert page.locator("table.summary tbody tr").count() == 3  # Q1, Q2, Q3
    text = "\n".join(texts.values())
    for forbidden in ("BEGIN HIDDEN TESTS", "BEGIN SOLUTION", "END SOLUTION", "Traceback", "$r=8$", "$\\alpha"):
        assert forbidden not in text, forbidden
    for label in ENGLISH_LABELS:
        assert label not in text, label
    for path in (str(graded), str(REPO), "/tmp/", "/root/", "/home/", "site-packages"):
        assert path not in text, path
    assert re.search(r"trainable_share : attendu 0,807\d* \(à 0,01 près\), obtenu 80,7", texts["tp3_partie1"])
    assert "Indice :" in texts["tp3_partie1"]
    assert "attendu" in texts["tp3_partie2"] and "obtenu" in texts["tp3_partie2"]
    assert "Résumé" in text and "Note :" in text and "à corriger" in text
    # hidden tests stay hidden: no line of them is on the page
    assert not [line for line in hidden_test_lines(graded) if line in text]


def hidden_test_lines(root: Path) -> list[str]:
    """Lines (20 characters or more) of the hidden tests of the source notebooks that the
    release does not show anyway."""
    public = "".join((root / "release" / "tp3" / f"{name}.ipynb").read_text() for name in ("tp3_partie1", "tp3_partie2"))
    lines = []
    for nb in sorted((root / "source" / "tp3").glob("*.ipynb")):
        for cell in grading_course.load(nb)["cells"]:
            inside = False
            for line in "".join(cell["source"]).splitlines():
                if "BEGIN HIDDEN TESTS" in line or "END HIDDEN TESTS" in line:
                    inside = "BEGIN" in line
                elif inside and len(line.strip()) >= 20 and json.dumps(line.strip())[1:-1] not in public:
                    lines.append(line.strip())
    assert len(lines) > 10
    return lines
