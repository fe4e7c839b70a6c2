"""The class overview after ``autograde``: one HTML page for the instructor, with PNG figures.

``reports/overview.html`` shows the score histogram, the pass rate of each test cell, the time
each submission took, and every incident (repair, timeout, kernel crash, memory, withdrawn
points, grader error, notebook not graded to the end) with links to the student's graded
notebook and feedback page. It reads the gradebook, the ``tp3_grading`` metadata the grader
writes into each graded notebook, and ``reports/autograde.json`` (``course.py autograde``).

Everything in the page that comes from a submission (ids, messages) is HTML-escaped, and the
page runs no script: it holds none, and its Content-Security-Policy forbids any (figures are
embedded as data: URIs, also written as PNG files beside the page).
"""

from __future__ import annotations

import base64
import html
import json
import statistics
from pathlib import Path
from urllib.parse import quote

from autograder import ASSIGNMENT

REPORTS = "reports"
PAGE = "overview.html"
FIGURES = "figures"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def build(root: Path) -> Path:
    """Write ``reports/overview.html`` and ``reports/figures/*.png``; return the page's path."""
    from autograder.same_loss import same_loss_warning
    from autograder.scores import test_cells, test_scores, totals

    root = Path(root)
    out = root / REPORTS
    (out / FIGURES).mkdir(parents=True, exist_ok=True)
    report = read_report(root)
    cells, scores, total = test_cells(root), test_scores(root), totals(root)
    runs = {r["student"]: r for r in report.get("students", [])}
    students = sorted(total)
    incidents = [i for s in students for i in student_incidents(root, s, runs.get(s))]
    warning = same_loss_warning([runs.get(s, {"student": s}) for s in students], scores)
    figures = {
        "scores.png": _histogram([total[s]["auto"] for s in students], max((t["auto_max"] for t in total.values()),
                                                                            default=0)),
        "pass_rate.png": _pass_rates(cells, pass_rates(cells, scores)),
        "time.png": _times([(s, runs[s]["seconds"]) for s in students if s in runs]),
    }
    for name, png in figures.items():
        (out / FIGURES / name).write_bytes(png)
    page = out / PAGE
    page.write_text(render(report, cells, scores, total, runs, incidents, warning, figures, root), encoding="utf-8")
    return page


def read_report(root: Path) -> dict:
    """``reports/autograde.json`` ({} if absent or unreadable: the page still shows the gradebook)."""
    try:
        report = json.loads((Path(root) / REPORTS / "autograde.json").read_text())
        return report if isinstance(report, dict) else {}
    except (OSError, ValueError):
        return {}


def pass_rates(cells, scores) -> dict[str, tuple[int, int]]:
    """{test cell: (submissions with every point of it, submissions graded)}."""
    rates = {}
    for _, cell, _ in cells:
        got = [scores[s][cell] for s in scores if cell in scores[s]]
        rates[cell] = (sum(1 for score, worth in got if (score or 0) >= worth), len(got))
    return rates


# ----------------------------------------------------------------------------- incidents

def _kind(text: str) -> str:
    """A label for an incident the grader wrote (French, from execute.py)."""
    lowered = text.lower()
    if "mémoire" in lowered:
        return "memory"
    if "noyau python s'est arrêté" in lowered or "plantage" in lowered:
        return "kernel crash"
    if "limite de" in lowered and " s" in lowered:
        return "timeout"
    return "incident"


def student_incidents(root: Path, student: str, run: dict | None) -> list[dict]:
    """Every incident of one student: {student, notebook, kind, text}."""
    found = []
    folder = Path(root) / "autograded" / student / ASSIGNMENT
    for path in sorted(folder.glob("*.ipynb")):
        try:
            meta = json.loads(path.read_text()).get("metadata", {}).get("tp3_grading", {})
        except (OSError, ValueError, AttributeError):
            found.append(_incident(student, path.stem, "grader error", "graded notebook unreadable"))
            continue
        if not isinstance(meta, dict):
            continue
        found += [_incident(student, path.stem, "repair", t) for t in meta.get("repairs") or []]
        found += [_incident(student, path.stem, _kind(str(t)), t) for t in meta.get("incidents") or []]
        verification = meta.get("verification") or {}
        for cell, why in (verification.get("withdrawn") or {}).items():
            found.append(_incident(student, path.stem, "withdrawn points", f"{cell}: {why}"))
        if verification.get("error"):
            found.append(_incident(student, path.stem, "grader error", f"verification: {verification['error']}"))
        if meta.get("complete") is False:
            found.append(_incident(student, path.stem, "not graded to the end",
                                   "its test cells got zero (see the note at the top of the graded notebook)"))
    for line in (run or {}).get("status", []):
        text = str(line)
        if text.startswith("cut at"):
            found.append(_incident(student, "", "timeout", f"wall-clock limit: {text}"))
        elif "GRADER ERROR" in text or "nbgrader failed" in text:
            found.append(_incident(student, "", "grader error", text))
        elif text.startswith("unreadable") or "symlink" in text:
            found.append(_incident(student, "", "repair", text))
    return found


def _incident(student: str, notebook: str, kind: str, text) -> dict:
    return {"student": student, "notebook": notebook, "kind": kind, "text": str(text)}


# ----------------------------------------------------------------------------- figures

def _png(fig) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _histogram(values: list[float], maximum: float) -> bytes:
    fig, ax = _figure(6, 3)
    top = int(maximum) if maximum else int(max(values, default=1))
    ax.hist([v or 0 for v in values], bins=[b - 0.5 for b in range(top + 2)], color="#4472c4", edgecolor="white")
    ax.set(xlabel=f"automatic points (out of {maximum:g})", ylabel="submissions", title="Automatic scores")
    ax.set_xlim(-0.5, top + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.yaxis.get_major_locator().set_params(integer=True)
    return _png(fig)


def _pass_rates(cells, rates: dict[str, tuple[int, int]]) -> bytes:
    fig, ax = _figure(6, 0.3 * len(cells) + 1)
    names = [cell for _, cell, _ in cells]
    shares = [100 * rates[c][0] / rates[c][1] if rates[c][1] else 0 for c in names]
    ax.barh(range(len(names)), shares, color="#70ad47")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set(xlim=(0, 100), xlabel="% of submissions with every point", title="Pass rate per test cell")
    return _png(fig)


def _times(times: list[tuple[str, float]]) -> bytes:
    times = sorted(times, key=lambda t: t[1], reverse=True)
    fig, ax = _figure(6, 0.25 * min(len(times), 40) + 1.2)
    ax.barh(range(len(times)), [t for _, t in times], color="#ed7d31")
    if len(times) <= 40:
        ax.set_yticks(range(len(times)), [s for s, _ in times])
    ax.invert_yaxis()
    ax.set(xlabel="seconds", title="Grading time per submission")
    return _png(fig)


# ----------------------------------------------------------------------------- page

def e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _link(path: str, label: str) -> str:
    return f'<a href="{e(quote(path))}">{e(label)}</a>'


def _links(root: Path, student: str, notebook: str) -> str:
    """Graded notebook and, when it exists, its feedback page (relative to the page)."""
    parts = []
    if (root / "autograded" / student / ASSIGNMENT / f"{notebook}.ipynb").is_file():
        parts.append(_link(f"../autograded/{student}/{ASSIGNMENT}/{notebook}.ipynb", f"{notebook}.ipynb"))
    if (root / "feedback" / student / ASSIGNMENT / f"{notebook}.html").is_file():
        parts.append(_link(f"../feedback/{student}/{ASSIGNMENT}/{notebook}.html", "feedback"))
    return " ".join(parts)


def render(report, cells, scores, total, runs, incidents, warning, figures, root: Path) -> str:
    root = Path(root)
    students = sorted(total)
    notebooks = sorted({nb for nb, _, _ in cells})
    autos = [total[s]["auto"] or 0 for s in students]
    auto_max = max((total[s]["auto_max"] for s in students), default=0)
    rates = pass_rates(cells, scores)
    head = (f"{len(students)} submission(s)"
            + (f", automatic points: mean {statistics.mean(autos):.2f}, median {statistics.median(autos):g} "
               f"out of {auto_max:g}" if autos else ""))
    meta = ", ".join(f"{k} {e(report[k])}" for k in ("profile", "mode", "finished") if k in report)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
           f"<title>{e(ASSIGNMENT)}: class overview</title>",
           "<style>body{font-family:sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;margin:1em 0}"
           "td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}"
           "td.n{text-align:right}.warn{background:#fff3cd;border:1px solid #e0b000;padding:.5em 1em}"
           "img{max-width:100%;display:block;margin:1em 0}</style></head><body>",
           f"<h1>{e(ASSIGNMENT)}: class overview</h1>",
           f"<p>{e(head)}{'. Last autograde: ' + meta if meta else ''}.</p>"]
    if warning:
        out.append(f'<p class="warn" id="warning">{e(warning)}</p>')
    for name, title in (("scores.png", "Automatic scores"), ("pass_rate.png", "Pass rate per test cell"),
                        ("time.png", "Grading time per submission")):
        data = base64.b64encode(figures[name]).decode()
        out.append(f'<img src="data:image/png;base64,{data}" alt="{e(title)}" title="{FIGURES}/{name}">')

    out += ["<h2>Submissions</h2>", '<table id="submissions"><tr><th>student</th><th>automatic</th>'
            "<th>graded so far</th><th>time (s)</th><th>notebooks</th><th>status</th></tr>"]
    for s in students:
        t, run = total[s], runs.get(s, {})
        manual = " (manual grading to do)" if t["needs_manual"] else ""
        status = "; ".join(map(str, run.get("status", []))) or ("grader failed" if run.get("failed") else "ok")
        seconds = f"{run['seconds']:.1f}" if isinstance(run.get("seconds"), (int, float)) else ""
        links = "<br>".join(filter(None, (_links(root, s, nb) for nb in notebooks)))
        out.append(f'<tr><td class="student">{e(s)}</td><td class="n auto">{t["auto"] or 0:g} / {t["auto_max"]:g}</td>'
                   f'<td class="n">{t["score"] or 0:g} / {t["max"]:g}{e(manual)}</td><td class="n">{seconds}</td>'
                   f"<td>{links}</td><td>{e(status)}</td></tr>")
    out.append("</table>")

    out += ["<h2>Test cells</h2>", '<table id="tests"><tr><th>notebook</th><th>test cell</th><th>points</th>'
            "<th>every point</th></tr>"]
    for nb, cell, points in cells:
        ok, n = rates[cell]
        out.append(f'<tr><td>{e(nb)}</td><td class="cell">{e(cell)}</td><td class="n">{points:g}</td>'
                   f'<td class="n rate">{ok} / {n}</td></tr>')
    out.append("</table>")

    out += [f"<h2>Incidents ({len(incidents)})</h2>"]
    if incidents:
        out.append('<table id="incidents"><tr><th>student</th><th>notebook</th><th>kind</th><th>what happened</th>'
                   "<th>open</th></tr>")
        for i in incidents:
            links = _links(root, i["student"], i["notebook"]) if i["notebook"] else ""
            out.append(f'<tr><td>{e(i["student"])}</td><td>{e(i["notebook"])}</td><td class="kind">{e(i["kind"])}</td>'
                       f"<td>{e(i['text'])}</td><td>{links}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>None.</p>")
    out.append("</body></html>")
    return "\n".join(out)
