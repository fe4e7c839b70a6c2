"""French feedback pages: nbgrader's ``generate_feedback`` with the course's steps and template.

Each step is one nbgrader preprocessor (configured in ``grading/nbgrader_config.py``; nbgrader's
``GetGrades`` runs after the first); the page is ``grading/templates/tp3_feedback`` (French labels,
a summary of the points per question at the top, no JavaScript, no network):

1. :class:`SanitizeForFeedback`: the notebook made inert (:mod:`autograder.sanitize`), even if
   grading did not do it already;
2. :class:`RemoveSolutionMarkers`: no ``BEGIN SOLUTION`` / ``BEGIN HIDDEN TESTS`` line anywhere;
3. :class:`ReportTests`: each test cell reduced to its title (first line of its docstring),
   its points and, when it failed, the one-line French message of each error (never its
   source, never a traceback; hidden tests stay hidden);
4. :class:`SimplifyErrors`: the other cells' errors as one line, no traceback, and no absolute
   path in any output;
5. :class:`RenderMath`: ``$...$`` pre-rendered as MathML (latex2mathml), so maths need neither
   MathJax nor the network;
6. :class:`Summarize`: the points per question (automatic tests and written answers).
"""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path

import nh3

from . import safe_markdown
from .notes import is_test_cell

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
TEMPLATE_NAME = "tp3_feedback"
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
# errors written by the grader itself (autograder/notes.py): their message is already French
GRADER_ERRORS = {"VerificationEchouee", "CelluleNonExecutee", "NoyauArrete", "TempsDepasse",
                 "CorrectionInterrompue", "NotebookIllisible"}
MAX_MESSAGE = 500
MATHML_TAGS = {"math", "mrow", "mi", "mo", "mn", "ms", "mtext", "mspace", "msub", "msup", "msubsup", "mfrac",
               "msqrt", "mroot", "munder", "mover", "munderover", "mtable", "mtr", "mtd", "mstyle", "mpadded",
               "mphantom", "menclose", "mmultiscripts", "mprescripts", "none", "semantics"}
MATHML_ATTRIBUTES = {
    "math": {"display", "xmlns"}, "mi": {"mathvariant"}, "mn": {"mathvariant"}, "mtext": {"mathvariant"},
    "mo": {"stretchy", "fence", "separator", "lspace", "rspace", "form", "largeop", "movablelimits", "accent",
           "minsize", "maxsize", "symmetric", "mathvariant"},
    "mspace": {"width", "height", "depth"}, "mfrac": {"linethickness"},
    "mstyle": {"displaystyle", "scriptlevel", "mathvariant"}, "munder": {"accentunder"}, "mover": {"accent"},
    "munderover": {"accent", "accentunder"}, "mtable": {"columnalign", "rowspacing", "columnspacing"},
    "mtd": {"columnalign"}, "menclose": {"notation"}, "mpadded": {"width", "lspace", "voffset"},
}
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~+=-])/(?:[^\s/'\"<>]+/)+[^\s/'\"<>]*")


def nbgrader_args() -> list[str]:
    """Options of ``nbgrader generate_feedback`` that select the course's template."""
    return [f"--HTMLExporter.template_name={TEMPLATE_NAME}",
            f"--HTMLExporter.extra_template_basedirs={TEMPLATES}"]


def scrub_paths(text: str) -> str:
    """Absolute paths (the grader's folders) shortened to their last two parts."""
    def short(match):
        parts = [p for p in match.group(0).split("/") if p]
        return "…/" + "/".join(parts[-2:])
    return _ABSOLUTE_PATH.sub(short, text)


def french_number(value) -> str:
    """1.5 -> "1,5"; 2.0 -> "2"."""
    if value is None:
        return "—"
    text = f"{float(value):.2f}".rstrip("0").rstrip(".")
    return text.replace(".", ",").replace("-", "−")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def _without_markers(text: str) -> str:
    return "\n".join(line for line in text.split("\n") if not any(m in line for m in MARKERS))


def _hidden_lines(source: str) -> list[str]:
    lines, inside = [], False
    for line in source.splitlines():
        if "BEGIN HIDDEN TESTS" in line:
            inside = True
        elif "END HIDDEN TESTS" in line:
            inside = False
        elif inside and len(line.strip()) >= 12:
            lines.append(line.strip())
    return lines


def test_title(source: str) -> str:
    """First line of the test cell's docstring (what the release shows students), else ""."""
    try:
        doc = ast.get_docstring(ast.parse(source)) or ""
    except (SyntaxError, ValueError):
        return ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def error_message(ename: str, evalue: str) -> str:
    """One line of French for an error a test or an answer raised."""
    evalue = " ".join(scrub_paths(evalue).split())
    if ename in ("AssertionError", *GRADER_ERRORS):
        message = evalue or "le test a échoué."
    elif ename == "NameError" and (m := re.search(r"name '(\w+)' is not defined", evalue)):
        message = (f"la variable « {m.group(1)} » n'est pas définie : la cellule qui la calcule n'a pas "
                   "été exécutée sans erreur.")
    else:
        message = f"{ename} : {evalue}" if evalue else ename
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " […]"


def _mathml(tex: str, display: bool) -> str:
    try:
        import latex2mathml.converter

        markup = latex2mathml.converter.convert(tex, display="block" if display else "inline")
    except Exception:  # noqa: BLE001 (any TeX it cannot read is shown as code)
        return f"<code>{html.escape(tex)}</code>"
    return nh3.clean(markup, tags=MATHML_TAGS, attributes=MATHML_ATTRIBUTES, clean_content_tags={"script", "style"},
                     url_schemes=set(), link_rel=None, strip_comments=True)


def render_math(stored: str) -> str:
    """A stored markdown cell (safe_markdown) with its maths as MathML, cleaned again."""
    out, last = [], 0
    for match, tex, display in safe_markdown.math_spans(stored):
        out += [stored[last:match.start()], _mathml(tex, display)]
        last = match.end()
    out.append(stored[last:])
    return nh3.clean("".join(out), tags=safe_markdown.TAGS | MATHML_TAGS,
                     attributes={**safe_markdown.ATTRIBUTES, **MATHML_ATTRIBUTES},
                     allowed_classes=safe_markdown.CLASSES, clean_content_tags={"script", "style"},
                     url_schemes={"data"}, link_rel=None, strip_comments=True)


def heading(stored: str) -> str | None:
    """Text of the first level-2 heading of a stored markdown cell."""
    match = re.search(r"<h2>(.*?)</h2>", stored, re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).strip() if match else None


try:
    from nbgrader.preprocessors import NbGraderPreprocessor
except ImportError:  # nbgrader missing: the functions above still work
    NbGraderPreprocessor = None

if NbGraderPreprocessor is not None:

    class SanitizeForFeedback(NbGraderPreprocessor):
        """Step 1: nothing a student wrote can be active in the page."""

        def preprocess(self, nb, resources):
            from .sanitize import sanitize_notebook

            for line in sanitize_notebook(nb):
                self.log.info("sanitize: %s", line)
            return nb, resources

    class RemoveSolutionMarkers(NbGraderPreprocessor):
        """Step 2: lines holding a solution or hidden-test marker removed everywhere."""

        def preprocess_cell(self, cell, resources, index):
            if cell.cell_type == "code":
                cell.source = _without_markers(cell.source)
                for out in cell.get("outputs", []):
                    if out.output_type == "stream":
                        out.text = _without_markers(_text(out.text))
                    elif "text/plain" in out.get("data", {}):
                        out.data["text/plain"] = _without_markers(_text(out.data["text/plain"]))
            else:
                source = cell.source
                for marker in MARKERS:
                    source = re.sub(rf"<(h[1-6]|p)>[#\s]*{marker}\s*</\1>", "", source)
                    source = source.replace(marker, "")
                cell.source = source
            return cell, resources

    class ReportTests(NbGraderPreprocessor):
        """Step 3: a test cell shows its title, its points and its French failure messages only."""

        def preprocess_cell(self, cell, resources, index):
            if not is_test_cell(cell):
                return cell, resources
            hidden = _hidden_lines(cell.source)
            messages = []
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    message = error_message(str(out.get("ename", "")), _text(out.get("evalue")))
                    if any(line in message for line in hidden):
                        message = "le test a échoué (détail masqué)."
                    messages.append(message)
            meta = cell.metadata.nbgrader
            score, points = meta.get("score"), meta.get("points")
            if not messages and score is not None and points and score < points:
                messages.append("ce test n'a pas obtenu tous ses points.")
            cell.metadata["tp3_feedback"] = {"title": test_title(cell.source), "messages": messages,
                                             "passed": bool(points) and score == points}
            cell.source, cell.outputs = "", []
            return cell, resources

    class SimplifyErrors(NbGraderPreprocessor):
        """Step 4: errors as one French line, no traceback; no absolute path in any output."""

        def preprocess_cell(self, cell, resources, index):
            for out in cell.get("outputs", []):
                if out.output_type == "error":
                    out.evalue = error_message(str(out.get("ename", "")), _text(out.get("evalue")))
                    out.traceback = []
                elif out.output_type == "stream":
                    out.text = scrub_paths(_text(out.text))
                elif "text/plain" in out.get("data", {}):
                    out.data["text/plain"] = scrub_paths(_text(out.data["text/plain"]))
            return cell, resources

    class RenderMath(NbGraderPreprocessor):
        """Step 5: maths of markdown cells and of the grader's comments as MathML."""

        def preprocess_cell(self, cell, resources, index):
            if cell.cell_type == "markdown":
                cell.source = render_math(cell.source)
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("comment"):
                stored, _ = safe_markdown.render(str(meta["comment"]))
                meta["comment"] = render_math(stored)
            return cell, resources

    class Summarize(NbGraderPreprocessor):
        """Step 6: ``resources["tp3_summary"]``: per question (the level-2 heading above), the
        automatic tests and the written answers with their points."""

        def preprocess(self, nb, resources):
            from nbgrader.api import Gradebook

            info = resources["nbgrader"]
            groups: list[dict] = []
            title = "Début du notebook"
            with Gradebook(info["db_url"]) as gb:
                for cell in nb.cells:
                    meta = cell.metadata.get("nbgrader", {})
                    if cell.cell_type == "markdown" and meta.get("locked") and heading(cell.source):
                        title = heading(cell.source)
                    if not (meta.get("grade") or meta.get("task")):
                        continue
                    grade = gb.find_grade(meta["grade_id"], info["notebook"], info["assignment"], info["student"])
                    meta["pending"] = bool(grade.needs_manual_grade)
                    if not groups or groups[-1]["title"] != title:
                        groups.append({"title": title, "tests": [], "written": []})
                    kind = "tests" if is_test_cell(cell) else "written"
                    name = cell.metadata.get("tp3_feedback", {}).get("title") if kind == "tests" else None
                    groups[-1][kind].append({"id": meta["grade_id"], "name": name or meta["grade_id"],
                                             "score": None if meta["pending"] else grade.score,
                                             "points": grade.max_score})
            for group in groups:
                for kind in ("tests", "written"):
                    rows = group[kind]
                    group[kind + "_points"] = sum(float(r["points"] or 0) for r in rows)
                    group[kind + "_score"] = sum(float(r["score"] or 0) for r in rows)
                    group[kind + "_pending"] = any(r["score"] is None for r in rows)
            resources["tp3_summary"] = groups
            resources["tp3_pending"] = any(g["written_pending"] or g["tests_pending"] for g in groups)
            return nb, resources
