"""Sanitising graded notebooks (grading/autograder/sanitize.py) and the French feedback steps
(grading/autograder/feedback.py), without a browser.

The oracle is the HTML the real renderers produce, read by Python's own HTML parser: nbconvert's
classic exporter, nbgrader's formgrader template (``formgrade``, what the instructor opens) and
nbgrader's stock feedback template. Every attack of ``html_attacks`` leaves active content in
those pages when nothing is sanitised (so the check can fail) and none once sanitised.
(``test_instructor_browser.py`` proves the same in Chromium.)
"""

from __future__ import annotations

import base64
import copy
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "grading"))
import html_attacks  # noqa: E402
from autograder import feedback, safe_markdown  # noqa: E402
from autograder.sanitize import sanitize_notebook  # noqa: E402

PORT = 9  # the payloads' listener: never contacted here
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "srcdoc", "data", "xlink:href", "background", "poster"}
ACTIVE_TAGS = {"script", "iframe", "object", "embed", "form", "style", "link", "meta", "base", "svg", "frame"}
SAFE_URL = re.compile(r"^(#[\w.-]*|data:image/(png|jpeg|gif);base64,[A-Za-z0-9+/=]+)$")


class ActiveContent(HTMLParser):
    """Everything in a page that could run script or reach the network."""

    def __init__(self, allowed_tags=frozenset(), allowed_urls=lambda url: False):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.allowed_tags, self.allowed_urls = allowed_tags, allowed_urls

    def handle_starttag(self, tag, attrs):
        self._open = None
        if tag in ACTIVE_TAGS and tag not in self.allowed_tags:
            self.found.append(f"<{tag}>")
            self._open = len(self.found) - 1
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}={(value or '')[:100]!r}>")
            elif name in URL_ATTRIBUTES and not (SAFE_URL.match(value or "") or self.allowed_urls(value or "")):
                shown = value or ""
                if shown.startswith("data:text/html;base64,"):  # an isolated output: say what it holds
                    shown = base64.b64decode(shown.split(",", 1)[1]).decode(errors="replace")
                self.found.append(f"<{tag} {name}={shown[:300]!r}>")

    def handle_data(self, data):
        if getattr(self, "_open", None) is not None:  # what an active element holds (a script's code)
            self.found[self._open] += data[:100]
            self._open = None


def active_in(page: str, **kwargs) -> list[str]:
    parser = ActiveContent(**kwargs)
    parser.feed(page)
    return parser.found


def executed_attack() -> nbformat.NotebookNode:
    """The attack notebook as nbgrader leaves it (outputs as its code produces them, written here)."""
    nb = html_attacks.attack(json.loads((REPO / "grading" / "source" / "tp3" / "tp3_partie1.ipynb").read_text()), PORT)
    j = lambda name: html_attacks.js(PORT, name)  # noqa: E731
    img = lambda name: f'<img src=x onerror="{j(name)}">'  # noqa: E731
    outputs = [
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": img("out-html"), "text/plain": "HTML"}},
        {"output_type": "display_data", "metadata": {}, "data": {"text/html": f"<script>{j('out-html-script')}</script>"}},
        {"output_type": "display_data", "metadata": {}, "data": {"application/javascript": j("out-javascript")}},
        {"output_type": "display_data", "metadata": {}, "data": {
            "image/svg+xml": f'<svg xmlns="http://www.w3.org/2000/svg" onload="{j("out-svg")}"/>'}},
        {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": img("out-markdown")}},
        {"output_type": "display_data", "metadata": {"text/html": {"isolated": True}},
         "data": {"text/html": img("out-isolated")}},
        {"output_type": "display_data", "data": {"image/png": html_attacks.PNG_1PX, "text/plain": "image"},
         "metadata": {"filenames": {"image/png": f"http://127.0.0.1:{PORT}/hit/out-png-filenames"}}},
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": base64.b64encode(
            f"<script>{j('out-fake-png')}</script>".encode()).decode()}},
        {"output_type": "stream", "name": "stdout", "text": img("out-stream")},
        {"output_type": "error", "ename": "ValueError", "evalue": img("error"), "traceback": [img("error-traceback")]},
    ]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "IPython.display" in "".join(cell["source"]):
            cell["outputs"] = outputs
    return nbformat.reads(json.dumps(nb), as_version=4)


def notebook_part(page: str) -> str:
    """The rendered cells (the templates' own scripts and styles are the page's, not the student's)."""
    start = page.index('id="notebook"') if 'id="notebook"' in page else 0
    return page[start:]


@pytest.mark.parametrize("template", ["classic", "formgrade", "feedback"])
def test_attacks_are_active_unsanitised_and_inert_sanitised(template):
    nb = executed_attack()
    before = active_in(notebook_part(html_attacks.render(nb, template)))
    fired = {name for name in html_attacks.MUST_FIRE_UNSANITISED if any(f"hit/{name}" in item for item in before)}
    print(template, "active before sanitising:", *before, sep="\n  ")
    assert fired == html_attacks.MUST_FIRE_UNSANITISED, f"missing: {html_attacks.MUST_FIRE_UNSANITISED - fired}"

    said = sanitize_notebook(nb)
    nbformat.validate(nb)
    after = active_in(notebook_part(html_attacks.render(nb, template)))
    assert after == [], after
    assert any("raw HTML shown as text" in line for line in said)
    assert any("application/javascript" in line for line in said)
    assert any("image/png removed" in line for line in said)  # the fake PNG
    # notebook metadata that nbconvert writes into the page is gone
    assert set(nb.metadata) <= {"kernelspec", "language_info", "tp3_grading"}


def test_sanitised_notebook_keeps_text_images_tables_and_maths():
    nb = executed_attack()
    sanitize_notebook(nb)
    written = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "q1_written")
    assert '<span class="tp3-math">$r=8$</span>' in written.source
    assert "&lt;script&gt;" in written.source  # the student's text is still there, as text
    assert "http://127.0.0.1:9/hit/md-httplink" in written.source  # a link's address stays readable
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert any(o.get("data", {}).get("image/png") == html_attacks.PNG_1PX for o in outputs)
    assert any(o.output_type == "error" and "onerror" in o.evalue for o in outputs)  # as text
    # idempotent: a second pass changes nothing and says nothing
    again = copy.deepcopy(nb)
    assert sanitize_notebook(again) == [] and again == nb


def test_pandas_table_survives():
    pd = pytest.importorskip("pandas")
    table = pd.DataFrame({"texte": ["a<b>", "c"], "n": [1, 2]})._repr_html_()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("df", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/html": table, "text/plain": "df"}, execution_count=1)])])
    assert sanitize_notebook(nb) == []
    html = nb.cells[0].outputs[0].data["text/html"]
    assert '<table border="1" class="dataframe">' in html and "<td>a&lt;b&gt;</td>" in html
    assert '<tr style="text-align: right;">' in html and "<style" not in html


def test_markdown_stored_form_passes_every_commonmark_renderer_verbatim():
    from markdown_it import MarkdownIt
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    stored, _ = safe_markdown.render(html_attacks.markdown_payloads(PORT) + "\n\n```\n<b>\n\n\n[x](javascript:1)\n```")
    assert "\n" not in stored
    assert markdown2html_mistune(stored).strip() == stored
    assert MarkdownIt("commonmark").render(stored).strip() == stored  # markdown-it with raw HTML on
    assert active_in(stored) == []


def test_images_are_checked_by_their_bytes():
    png = html_attacks.PNG_1PX
    assert safe_markdown.check_image("image/png", png) == png
    assert safe_markdown.check_image("image/jpeg", png) is None
    assert safe_markdown.check_image("image/png", base64.b64encode(b"<svg onload=x>").decode()) is None
    assert safe_markdown.check_image("image/png", "not base64 !") is None
    assert safe_markdown.check_image("image/svg+xml", png) is None


def test_error_messages_are_one_french_line_without_paths():
    message = feedback.error_message("FileNotFoundError", "[Errno 2] No such file: '/tmp/tp3-grade-x/course/tp3_run/a.json'\nsuite")
    assert "/tmp" not in message and "tp3_run/a.json" in message and "\n" not in message
    assert feedback.error_message("NameError", "name 'total_params' is not defined").startswith(
        "la variable « total_params » n'est pas définie")
    assert feedback.error_message("AssertionError", "x : attendu 1, obtenu 2. Indice : y") == \
        "x : attendu 1, obtenu 2. Indice : y"


def test_maths_become_mathml_and_active_tex_is_broken():
    stored, _ = safe_markdown.render(r"Injectons LoRA ($r=8$, $\alpha=16$) : $r\,(d_{in}+d_{out})$ et "
                                     r"$\href{javascript:alert(1)}{x}$ $\text{<script>alert(1)</script>}$")
    page = feedback.render_math(stored)
    assert page.count("<math") == 5 and "$" not in page
    assert "javascript" not in re.sub(r"<[^>]+>", "", page).replace("\u200b", "") or "href" not in page
    assert "<script" not in page and active_in(page) == []
    assert "<mi>α</mi>" in page or "<mi>&#x003B1;</mi>" in page


def test_test_title_is_the_docstring_first_line():
    source = '"""Q1.1 — nombre de couches.\n\nSuite."""\ncheck(1)\n### BEGIN HIDDEN TESTS\nsecret()\n'
    assert feedback.test_title(source) == "Q1.1 — nombre de couches."
    assert feedback.french_number(1.5) == "1,5" and feedback.french_number(2.0) == "2"


@pytest.mark.nbgrader
@pytest.mark.slow
def test_checksum_warnings_of_an_honest_submission_are_the_hidden_tests(tmp_path):
    """nbgrader's OverwriteCells warns "Attribute 'checksum' ... has changed!" for each locked
    cell whose checksum differs from the gradebook's. For the release a student hands in, that
    is exactly the test cells with hidden tests (grading/README.md explains why)."""
    import shutil

    import grading_course
    from nbgrader.api import Gradebook
    from nbgrader.utils import compute_checksum

    root = tmp_path / "course"
    root.mkdir()
    shutil.copy2(REPO / "grading" / "nbgrader_config.py", root)
    shutil.copytree(REPO / "grading" / "source", root / "source")
    out = grading_course.course_cli(root, "generate", "--no-copy")
    assert out.returncode == 0, out.stderr[-2000:]
    differing, hidden = set(), set()
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for path in sorted((root / "release" / "tp3").glob("*.ipynb")):
            source_cells = {c.name: c for c in gb.find_notebook(path.stem, "tp3").source_cells}
            for cell in nbformat.read(str(path), as_version=4).cells:
                gid = cell.metadata.get("nbgrader", {}).get("grade_id")
                if gid and source_cells[gid].locked and compute_checksum(cell) != source_cells[gid].checksum:
                    differing.add(gid)
        for path in sorted((root / "source" / "tp3").glob("*.ipynb")):
            hidden |= {c.metadata.nbgrader.grade_id for c in nbformat.read(str(path), as_version=4).cells
                       if "BEGIN HIDDEN TESTS" in c.source}
    assert differing == hidden and len(hidden) == 15


def test_an_honest_notebook_has_nothing_to_report():
    """The grader's summary flags active or invalid content only: the course's own notebooks
    (markdown with `<identifiant>` in code spans) and the French tables the lab shows (pandas
    Styler: a style sheet, ids and classes) are cleaned without a log line; a handler is not."""
    import pandas as pd

    from lab_utils import fr_table

    for path in sorted((REPO / "grading" / "source" / "tp3").glob("*.ipynb")):
        assert sanitize_notebook(nbformat.read(str(path), as_version=4)) == [], path.name
    table = fr_table(pd.DataFrame({"texte": ["a"], "confiance": [0.961]}), 3)._repr_html_()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("t", outputs=[nbformat.v4.new_output(
        "execute_result", data={"text/html": table, "text/plain": "t"}, execution_count=1)])]
    assert sanitize_notebook(copy.deepcopy(nb)) == []
    nb.cells[0].outputs[0].data["text/html"] = table.replace("<td ", '<td onmouseover="alert(1)" ', 1)
    assert any("text/html cleaned" in line for line in sanitize_notebook(nb))
