"""JupyterLab in a real browser: the two notebooks as a student runs and validates them.

A JupyterLab server (this venv, the ci profile) serves a temporary copy of ``notebooks/``;
headless Debian Chromium, driven by Playwright, does what a student does with the mouse
and keyboard:

* a notebook completed with the instructor's solutions (code and written answers), run
  with Run > Run All Cells, shows no error, every cell has run, in order, figures are
  images and the training progress bar is a live widget; nbgrader's Validate button then
  says it passes all the tests;
* the release notebook as handed out, run cell by cell, fails only where an answer is
  missing (NotImplementedError in the answer cells, then NameError/AssertionError in the
  cells that use the answers, and the submission cell asking for the student's id), never
  with an import error or another crash; Validate then lists the failing test cells;
* the last cell of part 2 makes the submission archive: it first asks (a French message,
  without stack frames) to save the notebook, then shows a link whose download is exactly
  the two notebooks and tp3_run/ as they are on disk;
* opening a notebook and starting its kernel leaves nothing to save.

What the page shows is read from the DOM and checked against the notebook that JupyterLab
saved (an independent reading of the same outputs). Screenshots go to
``test-artifacts/browser/``. Needs /usr/bin/chromium and the playwright package
(``.ci/setup-browser.sh`` installs both); skipped without them. Playwright's own browser
download is never used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
from browser_support import (UI_TIMEOUT_MS, Lab, browser, free_port, isolated_jupyter_env,  # noqa: F401 (fixture)
                             new_token, server_args, start_lab, stop, write_json)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "grading"))
import course  # noqa: E402
ARTIFACTS = REPO / "test-artifacts" / "browser"
NOTEBOOKS = ("tp3_partie1", "tp3_partie2")
RUN_TIMEOUT_S = 420  # one notebook, all cells (measured: well under a minute in the ci profile)
VALIDATE_TIMEOUT_S = 420

# Errors a release notebook may show: the stub, then what follows from the missing answers.
EXPECTED_RELEASE_ERRORS = {"NotImplementedError", "NameError", "AssertionError"}
STUDENT_ID = "etu-42"  # what the student writes in the submission cell of the completed notebooks
# lab_utils' own errors show as their French message alone ("Erreur : ..."), without a traceback
# header: the page cannot tell which one it is, the saved notebook can.
from lab_utils.errors import LabError  # noqa: E402
from lab_utils.submission import SUBMISSION_FILES  # noqa: E402


def _lab_error_names(cls=LabError) -> set[str]:
    return {cls.__name__}.union(*(_lab_error_names(sub) for sub in cls.__subclasses__()))


LAB_ERRORS = _lab_error_names()
VALIDATE_SUCCESS = "Success! Your notebook passes all the tests."


# ---------------------------------------------------------------------------------------
# Notebooks: the release versions, and the same completed by a student


def _nbgrader(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_answer_cell(cell: dict) -> bool:
    """A code cell the student fills in (nbgrader: solution, not graded)."""
    meta = _nbgrader(cell)
    return cell["cell_type"] == "code" and bool(meta.get("solution")) and not meta.get("grade")


def is_test_cell(cell: dict) -> bool:
    return cell["cell_type"] == "code" and bool(_nbgrader(cell).get("grade"))


def gid(cell: dict) -> str:
    """The cell's nbgrader grade id, or its cell id (the submission cell has no grade id)."""
    return _nbgrader(cell).get("grade_id") or cell.get("id", "?")


def is_submission_cell(cell: dict) -> bool:
    return cell["cell_type"] == "code" and "make_submission(" in _source(cell)


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def saved_errors(nb: dict) -> dict[int, str]:
    """Index among code cells -> exception name, from the saved notebook's error outputs
    (any error of lab_utils: "LabError", as the page shows them)."""
    errors = {}
    for i, cell in enumerate(code_cells(nb)):
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                errors[i] = "LabError" if out["ename"] in LAB_ERRORS else out["ename"]
    return errors


# ---------------------------------------------------------------------------------------
# JupyterLab server


@pytest.fixture(scope="module")
def lab(shared, tmp_path_factory):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # only this run's screenshots
    tmp = tmp_path_factory.mktemp("browser")
    root = tmp / "notebooks"
    for folder in ("release", "completed"):
        (root / folder).mkdir(parents=True)
    for name in NOTEBOOKS:
        write_json(root / "release" / f"{name}.ipynb", json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text()))
        completed = course.completed_release(f"{name}.ipynb")
        for cell in completed["cells"]:  # the student writes their id, as the cell asks
            if is_submission_cell(cell):
                cell["source"] = _source(cell).replace('student_id=""', f'student_id="{STUDENT_ID}"')
        write_json(root / "completed" / f"{name}.ipynb", completed)

    env = isolated_jupyter_env(tmp)
    env.pop("TP3_PROGRESS", None)  # progress bars on: they are widgets in the browser
    env.pop("NBGRADER_EXECUTION", None)
    env.update({
        "TP3_PROFILE": "ci",
        "TP3_CACHE_DIR": str(tmp / "tp3-cache"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
    })
    port, token = free_port(), new_token()
    log = tmp / "jupyter-server.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", *server_args(port, token), f"--ServerApp.root_dir={root}"]
    server = start_lab(cmd, env, root, log, port, token)
    try:
        yield server
    finally:
        stop(server.proc)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, ARTIFACTS / "jupyter-server.log")


# ---------------------------------------------------------------------------------------
# Browser


@pytest.fixture
def page(browser, lab, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    context.set_default_timeout(UI_TIMEOUT_MS)
    pg = context.new_page()
    page_errors: list[str] = []
    pg.on("pageerror", lambda exc: page_errors.append(str(exc)))
    failed_before = request.session.testsfailed
    try:
        yield pg
    finally:
        if request.session.testsfailed > failed_before:  # the call's report is already counted
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / f"FAILED-{re.sub(r'[^A-Za-z0-9_.-]+', '_', request.node.name)}.png"
            try:
                pg.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the failure: {shot}")
            except Exception as exc:  # the page may be gone
                print(f"no screenshot of the failure: {exc}")
        if page_errors:
            print(f"uncaught errors in the page during {request.node.name}:", *page_errors, sep="\n  ")
        context.close()
        lab.shutdown_kernels()


# JS run in the page. The notebook panel is the only one open (one workspace per test).
_CELLS_STATE = """() => {
  const panel = document.querySelector('.jp-NotebookPanel');
  if (!panel) return null;
  const indicator = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell.jp-CodeCell')].map(cell => ({
    prompt: (cell.querySelector('.jp-InputArea-prompt')?.textContent || '').trim(),
    outputs: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => ({
      mime: o.getAttribute('data-mime-type') || '',
      text: o.textContent || '',  // not innerText: off-screen cells are not laid out
      widget: !!o.querySelector('.jupyter-widgets, .widget-hprogress, .widget-hbox'),
      img: !!o.querySelector('img'),
    })),
  }));
  return {status: indicator ? indicator.getAttribute('data-status') : null, cells};
}"""

_EXECUTED = re.compile(r"^\[(\d+)\]:$")
_DRAWS = re.compile(r"^(\w+\s*=\s*)?lab\.plot_\w+\(", re.MULTILINE)  # a code line drawing a figure
_TRACEBACK = re.compile(r"^(\w+)\s+Traceback \(most recent call last\)", re.MULTILINE)
_LAB_ERROR = re.compile(r"^\s*Erreur : ")  # errors.LabError._render_traceback_


def cells_state(page) -> dict:
    return page.evaluate(_CELLS_STATE)


def dom_errors(state: dict) -> dict[int, str]:
    """Index among code cells -> exception name, from the tracebacks the page shows.

    JupyterLab 4 renders an error output with the stderr renderer: the element carries
    data-mime-type="application/vnd.jupyter.stderr", like a plain stderr stream, and no
    class of its own. What sets it apart is IPython's traceback header
    ("NameError      Traceback (most recent call last)").
    """
    errors = {}
    for i, cell in enumerate(state["cells"]):
        for out in cell["outputs"]:
            if out["mime"] != "application/vnd.jupyter.stderr":
                continue
            m = _TRACEBACK.search(out["text"])
            if m:
                errors[i] = m.group(1)
            elif _LAB_ERROR.match(out["text"]):
                errors[i] = "LabError"
    return errors


def open_notebook(page, lab: Lab, path: str, workspace: str) -> dict:
    """Open ``path`` and wait until all its cells are in the page and its kernel is idle;
    returns the notebook as read from disk."""
    nb = json.loads((lab.root / path).read_text())
    # A workspace of its own: only this notebook open, whatever earlier tests left.
    page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{path}?token={lab.token}")
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(state="visible")
    assert page.locator(".jp-NotebookPanel").count() == 1
    # Cells are attached to the page a few at a time: wait for all of them.
    wait_for(page, "n => document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell').length === n",
             arg=len(nb["cells"]), timeout=UI_TIMEOUT_MS)
    # Close the file browser: the notebook gets the page's width (and the screenshots).
    left_tab = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if left_tab.count():
        left_tab.first.click()
    wait_kernel_idle(page, UI_TIMEOUT_MS)
    return nb


def wait_kernel_idle(page, timeout_ms: int) -> None:
    """Wait for a kernel, connected and idle. The toolbar's indicator already says "idle"
    while the notebook has no kernel yet: the kernel's name must be there too."""
    page.wait_for_function("""() => {
      const panel = document.querySelector('.jp-NotebookPanel');
      const status = panel?.querySelector('.jp-Notebook-ExecutionIndicator')?.getAttribute('data-status');
      const kernel = (panel?.querySelector('.jp-Toolbar-kernelName')?.textContent || '').trim();
      return status === 'idle' && kernel !== '' && kernel !== 'No Kernel';
    }""", timeout=timeout_ms, polling=100)


def menu(page, top: str, command: str) -> None:
    """Open the menu bar's ``top`` menu and click the entry bound to ``command``."""
    page.locator(".lm-MenuBar-item", has=page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{top}$"))).click()
    page.locator(f'.lm-Menu .lm-Menu-item[data-command="{command}"]').click()


def _summary(state: dict | None) -> str:
    if not state:
        return "no notebook panel"
    return f"kernel {state['status']}, prompts {[c['prompt'] for c in state['cells']]}"


def wait_for(page, predicate: str, **kwargs) -> None:
    """page.wait_for_function, and on time-out the notebook's state in the message."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(predicate, **kwargs)
    except PlaywrightTimeout as exc:
        raise AssertionError(f"{exc}\nnotebook: {_summary(cells_state(page))}") from None


def run_all(page, n_code: int) -> dict:
    """Run > Run All Cells, then wait until every code cell has run (or one failed and the
    kernel stopped there) and the kernel is idle."""
    menu(page, "Run", "runmenu:run-all")
    wait_for(page, 
        """([getState, n]) => {
          const s = (eval(getState))();
          if (!s || s.status !== 'idle' || s.cells.length !== n) return false;
          if (s.cells.some(c => c.prompt.includes('*'))) return false;
          const done = s.cells.every(c => /^\\[\\d+\\]:$/.test(c.prompt));
          const failed = s.cells.some(c => c.outputs.some(o => /Traceback \\(most recent call last\\)|^\\s*Erreur : /.test(o.text)));
          return done || failed;
        }""",
        arg=[_CELLS_STATE, n_code], timeout=RUN_TIMEOUT_S * 1000, polling=500)
    return cells_state(page)


def run_cell_by_cell(page) -> dict:
    """Run each code cell in turn (click it, Ctrl+Enter), waiting for it to finish, as a
    student does; unlike Run All, an error does not stop the cells after it."""
    cells = page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell.jp-CodeCell")
    for i in range(cells.count()):
        cells.nth(i).locator(".jp-InputArea-prompt").click()
        page.keyboard.press("Control+Enter")
        wait_for(page,
            """([getState, i]) => {
              const s = (eval(getState))();
              return s && s.status === 'idle' && /^\\[\\d+\\]:$/.test(s.cells[i].prompt);
            }""",
            arg=[_CELLS_STATE, i], timeout=RUN_TIMEOUT_S * 1000, polling=250)
    return cells_state(page)


def save(page, lab: Lab, path: str) -> dict:
    """File > Save Notebook; returns the notebook as saved on disk, once the server has
    written it (a notebook that was not dirty shows no change to wait for in the page, and
    the file is rewritten in place: read too early, it is empty or cut)."""
    import time

    file = lab.root / path
    before = file.stat().st_mtime_ns if file.exists() else None
    menu(page, "File", "docmanager:save")
    page.wait_for_function("() => !document.querySelector('.jp-NotebookPanel.jp-mod-dirty, .lm-TabBar-tab.jp-mod-dirty')")
    start = time.monotonic()
    while True:
        waited = time.monotonic() - start
        try:
            written = file.stat().st_mtime_ns != before
            if written or waited > 10:
                return json.loads(file.read_text())
        except (OSError, ValueError):
            if waited > 30:
                raise
        time.sleep(0.2)


_MISSING_HEIGHT = """async () => {
  // two frames: the layout after the last resize is done
  await new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)));
  const scroller = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
  if (!scroller) return 0;
  scroller.scrollTop = 0;
  const cells = scroller.querySelectorAll('.jp-Cell');
  const last = cells[cells.length - 1];
  return Math.ceil(last.getBoundingClientRect().bottom - scroller.getBoundingClientRect().bottom);
}"""
MAX_SCREENSHOT_HEIGHT = 16000


def screenshot(page, name: str) -> Path:
    """The whole notebook: the viewport grows until the last cell is in view, then a capture.

    Off-screen cells only get their real height once shown (JupyterLab's content-visibility
    windowing), hence a few rounds."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    size = dict(page.viewport_size)
    height = size["height"]
    for _ in range(8):
        missing = page.evaluate(_MISSING_HEIGHT)
        new_height = min(height + missing + 40, MAX_SCREENSHOT_HEIGHT)
        if missing <= 0 or new_height == height:
            break
        height = new_height
        page.set_viewport_size({"width": size["width"], "height": height})
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(size)
    print(f"screenshot: {path}")
    return path


def click_validate(page) -> tuple[str, str]:
    """nbgrader's Validate toolbar button; returns the verdict's CSS class and text."""
    page.locator(".jp-NotebookPanel-toolbar jp-button.validate-button").click()
    message = page.locator(".jp-Dialog #validation-message")
    message.wait_for(state="visible", timeout=VALIDATE_TIMEOUT_S * 1000)
    verdict = next((c for c in (message.get_attribute("class") or "").split() if c.startswith("validation-")), "")
    text = page.locator(".jp-Dialog").inner_text()
    return verdict, text


# ---------------------------------------------------------------------------------------
# Tests


def run_cell(page, index: int) -> dict:
    """Click code cell ``index`` and run it (Ctrl+Enter), as a student does; wait until it ran."""
    before = cells_state(page)["cells"][index]["prompt"]
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell.jp-CodeCell").nth(index) \
        .locator(".jp-InputArea-prompt").click()
    page.keyboard.press("Control+Enter")
    wait_for(page,
        """([getState, i, before]) => {
          const s = (eval(getState))();
          const p = s && s.cells[i].prompt;
          return s && s.status === 'idle' && /^\\[\\d+\\]:$/.test(p) && p !== before;
        }""",
        arg=[_CELLS_STATE, index, before], timeout=RUN_TIMEOUT_S * 1000, polling=250)
    return cells_state(page)


def submit(page, lab: Lab, folder: str, index: int, tmp_path: Path) -> None:
    """Run the submission cell (the notebook is saved), click the link it shows, and check the
    download against the files on disk: exactly the five expected names, byte for byte."""
    import zipfile

    state = run_cell(page, index)
    text = " ".join(o["text"] for o in state["cells"][index]["outputs"])
    assert dom_errors(state).get(index) is None, text
    link = page.locator(".jp-NotebookPanel a.tp3-submission")
    link.wait_for(state="visible")
    assert link.inner_text() == f"Télécharger {STUDENT_ID}.zip"
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == f"{STUDENT_ID}.zip"
    path = tmp_path / download.suggested_filename
    download.save_as(str(path))
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == list(SUBMISSION_FILES)
        for name in SUBMISSION_FILES:
            assert archive.read(name) == (lab.root / folder / name).read_bytes(), name
    assert path.read_bytes() == (lab.root / folder / f"{STUDENT_ID}.zip").read_bytes()


@pytest.mark.parametrize("name", [pytest.param(NOTEBOOKS[0], marks=pytest.mark.full), *NOTEBOOKS[1:]])
def test_completed_notebook_runs_and_validates(page, lab, name, tmp_path):
    path = f"completed/{name}.ipynb"
    expected = open_notebook(page, lab, path, f"completed-{name}")
    cells = code_cells(expected)
    t0 = time.monotonic()
    state = run_all(page, len(cells))
    run_s = time.monotonic() - t0
    screenshot(page, f"{name}-completed")

    # Run All reaches the submission cell before the student saved: it asks to save first,
    # in French and without a traceback. Everything else runs without error.
    submission = [i for i, c in enumerate(cells) if is_submission_cell(c)]
    assert len(submission) == (1 if name == "tp3_partie2" else 0)
    assert dom_errors(state) == {i: "LabError" for i in submission}, f"errors shown in the page: {dom_errors(state)}"
    for i in submission:
        (out,) = [o for o in state["cells"][i]["outputs"] if o["mime"] == "application/vnd.jupyter.stderr"]
        assert out["text"].strip().startswith("Erreur : ") and "enregistré depuis l'entraînement" in out["text"]
        assert "Traceback" not in out["text"] and 'File "' not in out["text"] and len(out["text"].splitlines()) == 1
    counts = [_EXECUTED.match(c["prompt"]) for c in state["cells"]]
    assert all(counts), f"cells not run: {[i for i, m in enumerate(counts) if not m]}"
    numbers = [int(m.group(1)) for m in counts]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    assert len(state["cells"]) == len(cells)

    # nbgrader gives zero to a test cell that writes to stderr: none may, in the browser either.
    noisy = [gid(cells[i]) for i, c in enumerate(state["cells"])
             if is_test_cell(cells[i]) and any(o["mime"] == "application/vnd.jupyter.stderr" for o in c["outputs"])]
    assert noisy == [], f"test cells writing to stderr: {noisy}"
    # Every cell that draws (lab.plot_*) shows its figure as an image, not as the text
    # "<Figure size 800x400 with 1 Axes>". Checked last, once everything else has run.
    plot_cells = [i for i, c in enumerate(cells) if _DRAWS.search(_source(c))]
    assert plot_cells
    figures_as_text = [
        f"{gid(cells[i])}: {' | '.join(o['text'].strip() for o in state['cells'][i]['outputs'])}"
        for i in plot_cells if not any(o["img"] for o in state["cells"][i]["outputs"])]
    if name == "tp3_partie2":
        # The training progress bar is a live ipywidget, not "Error displaying widget".
        train = next(i for i, c in enumerate(cells) if gid(c) == "train")
        outputs = state["cells"][train]["outputs"]
        assert any(o["widget"] for o in outputs), f"no progress widget in the training cell: {outputs}"
        assert not any("Error displaying widget" in o["text"] for o in outputs)

    # The student saves, runs the submission cell again and downloads the archive.
    saved = save(page, lab, path)
    assert saved_errors(saved) == {i: "LabError" for i in submission}
    assert [c.get("execution_count") for c in code_cells(saved)] == numbers
    for i in submission:
        submit(page, lab, "completed", i, tmp_path)
    saved = save(page, lab, path)  # what the student hands in says the same as the page
    assert saved_errors(saved) == {}
    if name == "tp3_partie2":
        assert (lab.root / "completed" / "tp3_run" / "adapter.safetensors").is_file()
    print(f"{name}: Run All took {run_s:.1f} s in the browser")

    t0 = time.monotonic()
    verdict, text = click_validate(page)
    validate_s = time.monotonic() - t0
    dialog_shot = ARTIFACTS / f"{name}-completed-validate.png"
    page.screenshot(path=str(dialog_shot))  # the viewport, where the dialog is
    print(f"screenshot: {dialog_shot}")
    print(f"{name}: Validate took {validate_s:.1f} s; dialog: {text!r}")
    assert verdict == "validation-success", text
    assert VALIDATE_SUCCESS in text
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(".jp-Dialog").wait_for(state="detached")

    assert figures_as_text == [], f"figures not shown as images: {figures_as_text}"


@pytest.mark.full
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_release_notebook_fails_only_where_answers_are_missing(page, lab, name):
    path = f"release/{name}.ipynb"
    release = open_notebook(page, lab, path, f"release-{name}")
    cells = code_cells(release)
    t0 = time.monotonic()
    state = run_cell_by_cell(page)
    run_s = time.monotonic() - t0
    screenshot(page, f"{name}-release")
    print(f"{name}: cell by cell took {run_s:.1f} s in the browser")

    errors = dom_errors(state)
    shown = {gid(cells[i]): e for i, e in errors.items()}
    print(f"{name}: errors shown: {shown}")
    answers = {i for i, c in enumerate(cells) if is_answer_cell(c)}
    for i in answers:
        assert errors.get(i) == "NotImplementedError", (gid(cells[i]), errors.get(i))
    submission = {i for i, c in enumerate(cells) if is_submission_cell(c)}
    for i in submission:  # no identifier written yet: the cell asks for it, in French
        assert errors.get(i) == "LabError", (gid(cells[i]), errors.get(i))
        assert "Écrivez votre identifiant" in " ".join(o["text"] for o in state["cells"][i]["outputs"])
    unexpected = {gid(cells[i]): e for i, e in errors.items()
                  if e not in EXPECTED_RELEASE_ERRORS and i not in submission}
    assert unexpected == {}, f"unexpected errors in the release notebook: {unexpected}"
    first_answer = min(answers)
    assert all(i >= first_answer for i in errors), f"a cell before the first answer failed: {shown}"
    assert all(_EXECUTED.match(c["prompt"]) for c in state["cells"])

    saved = save(page, lab, path)
    assert saved_errors(saved) == errors, "the page and the saved notebook disagree"

    # The same Validate button as above must be able to say no.
    verdict, text = click_validate(page)
    page.screenshot(path=str(ARTIFACTS / f"{name}-release-validate.png"))
    assert verdict == "validation-failed", text
    # It lists the failing test cells, which fail on the names the answers never defined.
    assert "The following cell failed" in text and "NameError" in text, text
    assert VALIDATE_SUCCESS not in text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_opens_unmodified(page, lab, name):
    """Opening a notebook and starting its kernel changes nothing but, at most, the Python
    version JupyterLab writes in ``language_info`` (when the kernel's differs from the one
    the notebook records); with the recorded Python, nothing at all."""
    import platform

    original = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
    write_json(lab.root / "opened" / f"{name}.ipynb", original)
    open_notebook(page, lab, f"opened/{name}.ipynb", f"opened-{name}")
    page.wait_for_timeout(2000)  # metadata updates arrive just after the kernel is ready
    dirty = page.evaluate("() => !!document.querySelector('.jp-NotebookPanel.jp-mod-dirty, .lm-TabBar-tab.jp-mod-dirty')")
    recorded = original["metadata"]["language_info"]["version"]
    assert dirty == (platform.python_version() != recorded), (dirty, platform.python_version(), recorded)
    saved = save(page, lab, f"opened/{name}.ipynb")
    saved["metadata"]["language_info"]["version"] = recorded
    assert saved["metadata"] == original["metadata"]
    assert [_source(c) for c in saved["cells"]] == [_source(c) for c in original["cells"]]
