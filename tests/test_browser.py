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
  cells that use the answers), never with an import error or another crash; Validate
  then lists the failing test cells.

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
from browser_support import (UI_TIMEOUT_MS, browser, free_port, isolated_jupyter_env,  # noqa: F401 (fixture)
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


def _source(cell: dict) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def saved_errors(nb: dict) -> dict[int, str]:
    """Index among code cells -> exception name, from the saved notebook's error outputs."""
    errors = {}
    for i, cell in enumerate(code_cells(nb)):
        for out in cell.get("outputs", []):
            if out["output_type"] == "error":
                errors[i] = out["ename"]
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
        write_json(root / "completed" / f"{name}.ipynb", course.completed_release(f"{name}.ipynb"))

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
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
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
            m = _TRACEBACK.search(out["text"]) if out["mime"] == "application/vnd.jupyter.stderr" else None
            if m:
                errors[i] = m.group(1)
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
          const failed = s.cells.some(c => c.outputs.some(o => /Traceback \\(most recent call last\\)/.test(o.text)));
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
    """File > Save Notebook; returns the notebook as saved on disk."""
    menu(page, "File", "docmanager:save")
    page.wait_for_function("() => !document.querySelector('.jp-NotebookPanel.jp-mod-dirty, .lm-TabBar-tab.jp-mod-dirty')")
    return json.loads((lab.root / path).read_text())


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


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_completed_notebook_runs_and_validates(page, lab, name):
    path = f"completed/{name}.ipynb"
    expected = open_notebook(page, lab, path, f"completed-{name}")
    t0 = time.monotonic()
    state = run_all(page, len(code_cells(expected)))
    run_s = time.monotonic() - t0
    screenshot(page, f"{name}-completed")

    assert dom_errors(state) == {}, f"errors shown in the page: {dom_errors(state)}"
    counts = [_EXECUTED.match(c["prompt"]) for c in state["cells"]]
    assert all(counts), f"cells not run: {[i for i, m in enumerate(counts) if not m]}"
    numbers = [int(m.group(1)) for m in counts]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), numbers
    assert len(state["cells"]) == len(code_cells(expected))

    # nbgrader gives zero to a test cell that writes to stderr: none may, in the browser either.
    cells = code_cells(expected)
    noisy = [cells[i]["metadata"]["nbgrader"]["grade_id"] for i, c in enumerate(state["cells"])
             if is_test_cell(cells[i]) and any(o["mime"] == "application/vnd.jupyter.stderr" for o in c["outputs"])]
    assert noisy == [], f"test cells writing to stderr: {noisy}"
    # Every cell that draws (lab.plot_*) shows its figure as an image, not as the text
    # "<Figure size 800x400 with 1 Axes>". Checked last, once everything else has run.
    plot_cells = [i for i, c in enumerate(cells) if _DRAWS.search(_source(c))]
    assert plot_cells
    figures_as_text = [
        f"{cells[i]['metadata']['nbgrader']['grade_id']}: {' | '.join(o['text'].strip() for o in state['cells'][i]['outputs'])}"
        for i in plot_cells if not any(o["img"] for o in state["cells"][i]["outputs"])]
    if name == "tp3_partie2":
        # The training progress bar is a live ipywidget, not "Error displaying widget".
        train = next(i for i, c in enumerate(cells) if c["metadata"]["nbgrader"]["grade_id"] == "train")
        outputs = state["cells"][train]["outputs"]
        assert any(o["widget"] for o in outputs), f"no progress widget in the training cell: {outputs}"
        assert not any("Error displaying widget" in o["text"] for o in outputs)

    # The saved notebook (what the student hands in) says the same as the page.
    saved = save(page, lab, path)
    assert saved_errors(saved) == {}
    assert [c.get("execution_count") for c in code_cells(saved)] == numbers
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
    shown = {cells[i]["metadata"]["nbgrader"]["grade_id"]: e for i, e in errors.items()}
    print(f"{name}: errors shown: {shown}")
    answers = {i for i, c in enumerate(cells) if is_answer_cell(c)}
    for i in answers:
        assert errors.get(i) == "NotImplementedError", (cells[i]["metadata"]["nbgrader"]["grade_id"], errors.get(i))
    unexpected = {k: e for k, e in shown.items() if e not in EXPECTED_RELEASE_ERRORS}
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
