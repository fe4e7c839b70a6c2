"""Make a graded notebook inert for every HTML renderer that shows it.

Graded notebooks are read by nbconvert's HTML exporter (``course.py feedback``), by
nbgrader's formgrader (``formgrade/index.html.j2``, opened with the instructor's login) and
by JupyterLab. Anything a student controls must reach them as text, checked images or
allowlisted HTML: :func:`sanitize_notebook` rewrites the notebook in place.

- markdown and raw cells: stored as one line of allowlisted HTML (:mod:`autograder.safe_markdown`);
  attachments: PNG, JPEG and GIF only, bytes checked;
- outputs: text/plain, image/png and image/jpeg (bytes checked), text/html cleaned with an
  allowlist fit for pandas tables (nh3); every other type (JavaScript, SVG, markdown, LaTeX,
  widget views...) dropped; errors as text, capped; streams capped;
- metadata: allowlisted and type-checked, for cells, outputs and the notebook (kernelspec,
  language_info and the grader's own ``tp3_grading``; never ``title`` or ``widgets``, which
  nbconvert writes into the page).
"""

from __future__ import annotations

import html
import re
import uuid
from collections import Counter

import nh3
from nbformat import NotebookNode

from . import safe_markdown
from .notes import META_KEY, NOTE_KEY

TABLE_TAGS = {"table", "thead", "tbody", "tfoot", "tr", "th", "td", "caption", "div", "span", "p", "br",
              "b", "i", "strong", "em", "code", "pre", "ul", "ol", "li", "sub", "sup", "hr", "small"}
TABLE_ATTRIBUTES = {"table": {"border"}, "tr": {"style"}, "th": {"colspan", "rowspan", "style"},
                    "td": {"colspan", "rowspan", "style"}}
IMAGE_TYPES = ("image/png", "image/jpeg")
MAX_TEXT = 200_000          # characters kept of one stream or text/plain output
MAX_HTML = 500_000          # characters of one text/html output
MAX_ERROR = 20_000          # characters of one error (evalue + traceback)
MAX_SOURCE = 1_000_000      # characters of one cell's source
_GRADE_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,100}$")
_CELL_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TAG = re.compile(r"^[\w-]{1,64}$")
NBGRADER_KEYS = {"grade": bool, "solution": bool, "locked": bool, "task": bool, "points": (int, float),
                 "grade_id": str, "schema_version": int, "checksum": str, "cell_type": str}


def _text(value) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else ""


def _cap(text: str, limit: int, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    cut = f"\n[… {len(text) - limit} caractères retirés …]\n"
    return cut + text[-limit:] if keep_end else text[:limit] + cut


def _plain(value, limit: int = 200) -> str | None:
    return value[:limit] if isinstance(value, str) and _NAME.match(value[:limit]) else None


def _notebook_metadata(nb: NotebookNode, said: list[str]) -> None:
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    kept = NotebookNode()
    spec = meta.get("kernelspec")
    if isinstance(spec, dict):
        kept.kernelspec = NotebookNode({k: spec[k][:100] for k in ("name", "display_name", "language")
                                        if isinstance(spec.get(k), str)})
    info = meta.get("language_info")
    if isinstance(info, dict):
        kept.language_info = NotebookNode({k: v for k in ("name", "version", "pygments_lexer", "file_extension")
                                           if (v := _plain(info.get(k))) is not None})
    if isinstance(meta.get(META_KEY), dict):
        kept[META_KEY] = meta[META_KEY]
    dropped = sorted(set(meta) - set(kept))
    if dropped:
        said.append(f"notebook metadata removed: {', '.join(dropped)}")
    nb.metadata = kept


def _grade_id(meta) -> str | None:
    nbgrader = meta.get("nbgrader") if isinstance(meta, dict) else None
    gid = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
    return gid if isinstance(gid, str) and _GRADE_ID.match(gid) else None


def _nbgrader_meta(value) -> NotebookNode | None:
    if _grade_id({"nbgrader": value}) is None:
        return None
    kept = NotebookNode()
    for key, kind in NBGRADER_KEYS.items():
        item = value.get(key)
        if key in value and isinstance(item, kind) and (kind is not int or not isinstance(item, bool)):
            kept[key] = item
    if "checksum" in kept and not re.fullmatch(r"[0-9a-f]{0,128}", kept.checksum):
        del kept["checksum"]
    if "cell_type" in kept and kept.cell_type not in ("code", "markdown"):
        del kept["cell_type"]
    return kept


_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z?")
_TIMING_KEY = re.compile(r"^(iopub|shell)\.[a-z_]{1,32}$")


def _cell_metadata(cell: NotebookNode, where: str, dropped: Counter, said: list[str]) -> None:
    meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
    kept = NotebookNode()
    if "nbgrader" in meta:
        nbgrader = _nbgrader_meta(meta["nbgrader"])
        if nbgrader is None:
            said.append(f"{where}: invalid nbgrader metadata removed")
        else:
            kept.nbgrader = nbgrader
    for key in ("editable", "deletable", NOTE_KEY):
        if isinstance(meta.get(key), bool):
            kept[key] = meta[key]
    if isinstance(meta.get("tags"), list):
        kept.tags = [t for t in meta["tags"] if isinstance(t, str) and _TAG.match(t)]
    timing = meta.get("execution")
    if isinstance(timing, dict):  # nbclient's timestamps of the grading run (benchmarks read them)
        stamps = {k: v for k, v in timing.items() if isinstance(k, str) and _TIMING_KEY.match(k) and isinstance(v, str)
                  and _STAMP.fullmatch(v)}
        if stamps:
            kept.execution = NotebookNode(stamps)
    dropped.update(k for k in meta if k not in kept)
    cell.metadata = kept


def _attachments(cell: NotebookNode, where: str, said: list[str]) -> dict:
    """Checked image attachments of a cell: name -> (mime, base64); the cell keeps only those."""
    found = cell.get("attachments")
    checked: dict = {}
    kept = NotebookNode()
    if isinstance(found, dict):
        for name, bundle in found.items():
            image = None
            if isinstance(name, str) and _NAME.match(name) and isinstance(bundle, dict):
                for mime, data in bundle.items():
                    if (b64 := safe_markdown.check_image(mime, data)) is not None:
                        image = (mime, b64)
                        break
            if image is None:
                said.append(f"{where}: attachment {str(name)[:60]!r} removed (not a checked PNG/JPEG/GIF)")
                continue
            checked[name] = image
            kept[name] = NotebookNode({image[0]: image[1]})
    cell.pop("attachments", None)
    if kept:
        cell.attachments = kept
    return checked


def clean_table_html(fragment: str) -> str:
    """HTML output with only what a pandas table needs (no style sheet, script, link or form)."""
    return nh3.clean(safe_markdown.defang_tex(fragment), tags=TABLE_TAGS, attributes=TABLE_ATTRIBUTES,
                     allowed_classes={"table": {"dataframe"}}, clean_content_tags={"script", "style"},
                     url_schemes=set(), link_rel=None, attribute_filter=_table_attribute, strip_comments=True)


def _table_attribute(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return value if re.fullmatch(r"\s*text-align:\s*(left|right|center);?\s*", value) else None
    if attribute in ("colspan", "rowspan", "border"):
        return value if value.isdigit() and len(value) < 4 else None
    return value


def _image_metadata(meta) -> NotebookNode:
    kept = NotebookNode()
    if not isinstance(meta, dict):
        return kept
    for mime in IMAGE_TYPES:
        item = meta.get(mime)
        if isinstance(item, dict):
            sizes = {k: v for k in ("width", "height")
                     if isinstance(v := item.get(k), int) and not isinstance(v, bool) and 0 < v < 100_000}
            if sizes:
                kept[mime] = NotebookNode(sizes)
    return kept


def _output(out, where: str, said: list[str]) -> NotebookNode | None:
    """The output made inert, or None to drop it."""
    kind = out.get("output_type") if isinstance(out, dict) else None
    if kind == "stream":
        name = out.get("name") if out.get("name") in ("stdout", "stderr") else "stdout"
        return NotebookNode(output_type="stream", name=name, text=_cap(_text(out.get("text")), MAX_TEXT))
    if kind == "error":
        ename = _text(out.get("ename"))[:200]
        evalue = _cap(_text(out.get("evalue")), MAX_ERROR // 2)
        lines = [str(line) for line in out.get("traceback", [])] if isinstance(out.get("traceback"), list) else []
        traceback = _cap("\n".join(lines), MAX_ERROR // 2, keep_end=True).split("\n")
        return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=traceback)
    if kind not in ("display_data", "execute_result"):
        said.append(f"{where}: output of type {str(kind)[:40]!r} removed")
        return None
    data = out.get("data") if isinstance(out.get("data"), dict) else {}
    kept = NotebookNode()
    if "text/plain" in data:
        kept["text/plain"] = _cap(_text(data["text/plain"]), MAX_TEXT)
    for mime in IMAGE_TYPES:
        if mime in data:
            b64 = safe_markdown.check_image(mime, data[mime])
            if b64 is None:
                said.append(f"{where}: {mime} removed (bytes are not a {mime.split('/')[1].upper()})")
            else:
                kept[mime] = b64
    if "text/html" in data:
        raw = _text(data["text/html"])
        cleaned = clean_table_html(raw[:MAX_HTML])
        kept["text/html"] = cleaned
        if len(raw) - len(cleaned) > 0 and _removed_markup(raw, cleaned):
            said.append(f"{where}: text/html cleaned ({len(raw) - len(cleaned)} characters removed)")
    dropped = sorted(set(data) - set(kept))
    if dropped:
        said.append(f"{where}: output types removed: {', '.join(str(d)[:60] for d in dropped)}")
    if not kept:
        return None
    result = NotebookNode(output_type=kind, data=kept, metadata=_image_metadata(out.get("metadata")))
    if kind == "execute_result":
        count = out.get("execution_count")
        result.execution_count = count if isinstance(count, int) and not isinstance(count, bool) else None
    return result


_LOOKS = re.compile(r"""\s+(?:id|class|scope|style|border|colspan|rowspan|align|valign|width|height)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)""",
                    re.IGNORECASE)


def _removed_markup(raw: str, cleaned: str) -> bool:
    """More was removed than the looks of a table (pandas' style sheet, ids, classes, inline
    styles): what is worth a log line, such as a script, a handler or a link."""
    def shape(text: str) -> str:
        text = re.sub(r"<style[^>]*>.*?</style>", "", text, flags=re.DOTALL | re.IGNORECASE)
        text = re.sub(r"\s+>", ">", _LOOKS.sub("", text))
        return re.sub(r"\s+", "", html.unescape(text))

    return shape(raw) != shape(cleaned)


def sanitize_notebook(nb: NotebookNode) -> list[str]:
    """Make every student-controlled part of ``nb`` inert, in place; returns what was removed
    or changed, one line each, for the log (empty for a notebook with nothing active)."""
    said: list[str] = []
    dropped_meta: Counter = Counter()
    _notebook_metadata(nb, said)
    cells = []
    for index, cell in enumerate(nb.get("cells") if isinstance(nb.get("cells"), list) else []):
        kind = cell.get("cell_type") if isinstance(cell, dict) else None
        if kind not in ("code", "markdown", "raw"):
            said.append(f"cell {index}: not a cell, removed")
            continue
        gid = _grade_id(cell.get("metadata"))
        where = f"cell {index}" + (f" ({gid})" if gid else "")
        _cell_metadata(cell, where, dropped_meta, said)
        source = _text(cell.get("source"))
        if len(source) > MAX_SOURCE:
            said.append(f"{where}: source cut to {MAX_SOURCE} characters")
            source = _cap(source, MAX_SOURCE)
        if not isinstance(cell.get("id"), str) or not _CELL_ID.match(cell["id"]):
            if "id" in cell or nb.get("nbformat_minor", 0) >= 5:
                cell.id = uuid.uuid4().hex[:16]
        if kind == "code":
            cell.source = source
            outputs = cell.get("outputs") if isinstance(cell.get("outputs"), list) else []
            cell.outputs = [kept for j, o in enumerate(outputs) if (kept := _output(o, f"{where} output {j}", said))]
            count = cell.get("execution_count")
            cell.execution_count = count if isinstance(count, int) and not isinstance(count, bool) else None
            cell.pop("attachments", None)
        else:
            attachments = _attachments(cell, where, said)
            if kind == "raw":  # nbconvert may paste a raw cell into the page: shown as text instead
                cell.cell_type, stored, inert = "markdown", safe_markdown.as_text(source), ["raw cell shown as text"]
            else:
                stored, inert = safe_markdown.render(source, attachments)
            cell.source = stored
            said += [f"{where}: {line}" for line in inert]
            for key in ("outputs", "execution_count"):
                cell.pop(key, None)
        cells.append(cell)
    nb.cells = cells
    if dropped_meta:
        said.append("cell metadata removed: " + ", ".join(f"{k[:40]} ×{n}" for k, n in sorted(dropped_meta.items())))
    return said
