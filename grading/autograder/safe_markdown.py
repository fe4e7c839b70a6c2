"""Markdown written by a student, turned into HTML that no renderer can make active.

A markdown cell is rendered here once (markdown-it-py, raw HTML off) and stored as one line
of allowlisted HTML: ``<div class="tp3-md">...</div>``. Every CommonMark renderer (nbconvert's
mistune for the feedback and formgrader, marked in JupyterLab) passes a one-line ``<div>``
block through untouched, so what a browser finally sees is exactly what nh3 let through:

- raw HTML in the source is shown as text;
- links are not clickable: their text is followed by the address, in plain text;
- images only from the cell's checked attachments or ``data:image/(png|jpeg|gif)``;
- maths stays as ``$...$`` text in ``<span class="tp3-math">`` (``tp3-math-display`` for
  ``$$...$$``), for MathJax or for :func:`autograder.feedback` to render; TeX commands that
  make links, styles or load code (``\\href``, ``\\style``, ``\\require``...) are broken.

Whatever nbconvert's renderer makes of the result is checked; a cell it would not pass
through verbatim is shown as preformatted text instead.
"""

from __future__ import annotations

import base64
import binascii
import html
import re

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from mdit_py_plugins.dollarmath import dollarmath_plugin

WRAP_OPEN, WRAP_CLOSE = '<div class="tp3-md">', "</div>"
MATH_CLASS, DISPLAY_MATH_CLASS = "tp3-math", "tp3-math-display"

TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "s", "del",
        "code", "pre", "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td",
        "span", "div", "img", "sub", "sup"}
ATTRIBUTES = {"img": {"src", "alt"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}}
CLASSES = {"div": {"tp3-md", DISPLAY_MATH_CLASS}, "span": {MATH_CLASS}}

IMAGE_MAGIC = {"image/png": (b"\x89PNG\r\n\x1a\n",), "image/jpeg": (b"\xff\xd8\xff",),
               "image/gif": (b"GIF87a", b"GIF89a")}
MAX_IMAGE_BYTES = 5 * 1024 * 1024
_DATA_URI = re.compile(r"^data:(image/(?:png|jpeg|gif));base64,([A-Za-z0-9+/=\s]+)$")
# TeX commands MathJax turns into links, styles, HTML ids or extension loading
_ACTIVE_TEX = re.compile(r"\\(href|url|class|cssId|style|require|html\w*|data\w*|mmlToken|unicode|bbox"
                         r"|toggle|mathtip|texttip|action|fbox)(?![A-Za-z])")


def check_image(mime: str, b64) -> str | None:
    """Canonical base64 of an image whose bytes really are ``mime`` (PNG, JPEG, GIF), else None."""
    if mime not in IMAGE_MAGIC:
        return None
    if isinstance(b64, list):
        b64 = "".join(str(part) for part in b64)
    if not isinstance(b64, str) or len(b64) > MAX_IMAGE_BYTES * 4 // 3 + 1024:
        return None
    try:
        raw = base64.b64decode("".join(b64.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(IMAGE_MAGIC[mime]) or len(raw) > MAX_IMAGE_BYTES:
        return None
    return base64.b64encode(raw).decode("ascii")


def defang_tex(text: str) -> str:
    """Break TeX commands that MathJax would turn into links, styles or code loading."""
    return _ACTIVE_TEX.sub(lambda m: "\\\u200b" + m.group(1), text)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.use(dollarmath_plugin, allow_labels=False, allow_digits=False, double_inline=True)

    def math_inline(self, tokens, idx, options, env):
        return f'<span class="{MATH_CLASS}">${escapeHtml(tokens[idx].content)}$</span>'

    def math_display(self, tokens, idx, options, env):
        return f'<div class="{DISPLAY_MATH_CLASS}">$${escapeHtml(tokens[idx].content.strip())}$$</div>\n'

    def link_open(self, tokens, idx, options, env):
        env.setdefault("links", []).append(tokens[idx])
        env["made_inert"].append("link made plain text")
        return ""

    def link_close(self, tokens, idx, options, env):
        opening = env["links"].pop()
        if opening.markup == "autolink":  # its text is the address already
            return ""
        return f" ({escapeHtml(str(opening.attrGet('href') or ''))})"

    def image(self, tokens, idx, options, env):
        token = tokens[idx]
        alt = self.renderInlineAsText(token.children or [], options, env)
        src = str(token.attrGet("src") or "")
        data = None
        if src.startswith("attachment:"):
            data = env["attachments"].get(src[len("attachment:"):])
        elif match := _DATA_URI.match(src):
            checked = check_image(match.group(1), match.group(2))
            data = (match.group(1), checked) if checked else None
        if data is None:
            env["made_inert"].append("external or invalid image removed")
            return f"[image : {escapeHtml(alt)}]"
        return f'<img src="data:{data[0]};base64,{data[1]}" alt="{escapeHtml(alt)}">'

    md.add_render_rule("math_inline", math_inline)
    md.add_render_rule("math_inline_double", math_display)
    md.add_render_rule("math_block", math_display)
    md.add_render_rule("link_open", link_open)
    md.add_render_rule("link_close", link_close)
    md.add_render_rule("image", image)
    return md


_MD = _parser()


def _style_filter(tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return value if re.fullmatch(r"text-align:\s*(left|right|center);?", value) else None
    if attribute == "src":
        match = _DATA_URI.match(value)
        return value if match and check_image(match.group(1), match.group(2)) else None
    return value


def clean(fragment: str) -> str:
    """The fragment with only the allowlisted tags, attributes and classes (nh3)."""
    return nh3.clean(fragment, tags=TAGS, attributes=ATTRIBUTES, allowed_classes=CLASSES,
                     clean_content_tags={"script", "style"}, url_schemes={"data"},
                     attribute_filter=_style_filter, link_rel=None, strip_comments=True)


def _one_line(fragment: str) -> str:
    """No line break left (a blank line would end the HTML block for markdown renderers):
    kept as ``&#10;`` inside ``<pre>``, a space elsewhere (the same in HTML)."""
    parts = re.split(r"(<pre>.*?</pre>)", fragment, flags=re.DOTALL)
    return "".join(part.replace("\r", "").replace("\n", "&#10;" if part.startswith("<pre>") else " ")
                   for part in parts)


def is_safe_html(source: str) -> bool:
    """``source`` is already the stored form (one line of allowlisted HTML in our wrapper)."""
    return (source.startswith(WRAP_OPEN) and source.endswith(WRAP_CLOSE) and "\n" not in source
            and "\r" not in source and _one_line(clean(source)) == source)


def _passes_through(stored: str) -> bool:
    """nbconvert's markdown renderer (feedback, formgrader) leaves ``stored`` as it is."""
    try:
        from nbconvert.filters.markdown_mistune import markdown2html_mistune
    except ImportError:  # no nbconvert, no renderer to fool
        return True
    return markdown2html_mistune(stored).strip() == stored


def as_text(text: str) -> str:
    """``text`` shown verbatim, preformatted, in the stored form."""
    return WRAP_OPEN + _one_line(f"<pre>{escapeHtml(defang_tex(text))}</pre>") + WRAP_CLOSE


def render(source: str, attachments: dict | None = None) -> tuple[str, list[str]]:
    """(stored HTML, what was made inert) for a markdown cell. ``attachments``: name ->
    (mime, checked base64)."""
    if is_safe_html(source) and _passes_through(source):
        return source, []
    env = {"attachments": attachments or {}, "made_inert": []}
    tokens = _MD.parse(defang_tex(source), env)
    if _raw_html(tokens):
        env["made_inert"].append("raw HTML shown as text")
    body = _MD.renderer.render(tokens, _MD.options, env)
    stored = WRAP_OPEN + _one_line(clean(body)) + WRAP_CLOSE
    if not _passes_through(stored):
        env["made_inert"].append("whole cell shown as preformatted text")
        stored = as_text(source)
    return stored, sorted(set(env["made_inert"]))


def _raw_html(tokens) -> bool:
    """The source holds markup outside code spans and blocks (``html`` is off: it is text)."""
    for token in tokens:
        for part in token.children or [token]:
            if part.type == "text" and re.search(r"<[A-Za-z!/?]", part.content):
                return True
    return False


def math_spans(stored: str):
    """(match, TeX, display) for each maths span of a stored cell."""
    pattern = re.compile(rf'<span class="{MATH_CLASS}">\$(.*?)\$</span>|<div class="{DISPLAY_MATH_CLASS}">\$\$(.*?)\$\$</div>',
                         re.DOTALL)
    for match in pattern.finditer(stored):
        inline, display = match.group(1), match.group(2)
        yield match, html.unescape(inline if inline is not None else display), display is not None
