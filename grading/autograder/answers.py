"""Which of the student's answers a test cell reads, and a value-only codec to carry them
out of the student's kernel.

A test cell reads two kinds of names: those the instructor's locked cells define (``model``,
``history``, ``check_number``...) and the student's answers (``n_wrapped``, ``test_acc``...).
:func:`answer_names` tells them apart from the notebook itself, so no list is kept by hand.

Just before each test cell runs, the grader asks the student's kernel for those answers,
encoded by :func:`encode_answers` (JSON: numbers, strings, containers, figures as their
plotted data; never pickle). Whatever comes back is only the student's claim: the trusted
checker (``verify``) decodes it with :func:`decode_answers` into plain values and runs the
test cell again on them, outside the student's kernel.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import json
import math

MAX_CHARS = 256_000  # a claim larger than this is refused (encoded answers of TP3: ~2 kB per test cell)
ENCODER_NAME = "_tp3_grader_encode_answers"


# ----------------------------------------------------------------------------- names

def parse(source: str) -> ast.AST | None:
    """The syntax tree of a cell's code (IPython syntax allowed), or None."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        source = TransformerManager().transform_cell(source)
    except Exception:  # IPython missing or a transform error: parse as is
        pass
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def bound_names(tree: ast.AST) -> set[str]:
    """Names a piece of code binds anywhere (assignments, imports, loops, defs, ...)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def loaded_names(tree: ast.AST) -> set[str]:
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}


def answer_names(cells: list[dict]) -> dict[str, list[str]]:
    """For each locked code cell (test cells, and instructor cells such as a plot of the
    answers), by grade id, the student's answers it reads (cells reading none are left out).

    ``cells``: the notebook's cells in order, as dicts with ``grade_id``, ``cell_type``,
    ``source``, ``locked``. Answers are the names a locked cell reads that it does not bind
    itself, that no locked cell bound before it and that are not builtins.
    """
    instructor: set[str] = set(dir(builtins))
    result: dict[str, list[str]] = {}
    for cell in cells:
        if cell["cell_type"] != "code" or not cell.get("locked"):
            continue
        tree = parse(cell["source"])
        if tree is None:
            continue
        bound = bound_names(tree)
        answers = sorted(loaded_names(tree) - bound - instructor)
        if answers and cell.get("grade_id"):
            result[cell["grade_id"]] = answers
        instructor |= bound
    return result


# ----------------------------------------------------------------------------- encoding

def encode_answers(namespace, names, max_chars=MAX_CHARS):
    """JSON text of ``namespace[name]`` for each name present (runs in the student's kernel:
    self-contained, standard library only; its source is sent to the kernel)."""
    import json
    import math
    import sys

    def enc(x, depth=0):
        if depth > 12:
            return {"__opaque__": "too deep"}
        if x is None or isinstance(x, bool):
            return x if x is None else bool(x)
        if isinstance(x, int):
            return int(x)
        if isinstance(x, float):
            x = float(x)
            return x if math.isfinite(x) else {"__float__": repr(x)}
        if isinstance(x, str):
            return str(x)
        np = sys.modules.get("numpy")
        if np is not None and isinstance(x, np.generic):
            return {"__numpy__": [str(x.dtype), enc(x.item(), depth + 1)]}
        if np is not None and isinstance(x, np.ndarray) and x.size <= 100_000:
            return {"__ndarray__": [str(x.dtype), enc(x.tolist(), depth + 1)]}
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(x, torch.Tensor) and x.numel() <= 100_000:
            return {"__tensor__": [str(x.dtype).replace("torch.", ""), enc(x.detach().cpu().tolist(), depth + 1)]}
        if isinstance(x, tuple) and hasattr(type(x), "_fields"):
            return {"__namedtuple__": [type(x).__name__, [str(f) for f in type(x)._fields],
                                       [enc(v, depth + 1) for v in x]]}
        if isinstance(x, tuple):
            return {"__tuple__": [enc(v, depth + 1) for v in x]}
        if isinstance(x, list):
            return [enc(v, depth + 1) for v in x]
        if isinstance(x, (set, frozenset)):
            return {"__set__": [enc(v, depth + 1) for v in x]}
        if isinstance(x, dict):
            return {"__dict__": [[enc(k, depth + 1), enc(v, depth + 1)] for k, v in x.items()]}
        if any(k.__module__ == "matplotlib.figure" and k.__name__ == "Figure" for k in type(x).__mro__):
            # Figure and its subclasses (lab_utils.plots.LabFigure)
            axes = []
            for ax in x.axes:
                lines = []
                for line in ax.get_lines():
                    lines.append({"x": enc([float(v) for v in line.get_xdata()], depth + 1),
                                  "y": enc([float(v) for v in line.get_ydata()], depth + 1)})
                axes.append(lines)
            return {"__figure__": axes}
        return {"__opaque__": type(x).__qualname__}

    out = {}
    for name in names:
        if name in namespace:
            try:
                out[name] = enc(namespace[name])
            except Exception as err:  # a hostile __len__, __iter__...
                out[name] = {"__opaque__": f"{type(err).__name__}"}
    text = json.dumps(out, allow_nan=False)
    return text if len(text) <= max_chars else json.dumps({"__error__": "too large"})


def encoder_source() -> str:
    """Code that defines the encoder in the kernel's namespace (under ENCODER_NAME)."""
    source = inspect.getsource(encode_answers).replace("def encode_answers(", f"def {ENCODER_NAME}(", 1)
    return source.replace("max_chars=MAX_CHARS", f"max_chars={MAX_CHARS}", 1)


def capture_expression(names: list[str]) -> str:
    return f"{ENCODER_NAME}(globals(), {list(names)!r})"


# ----------------------------------------------------------------------------- decoding

class Opaque:
    """Stands for a value the codec could not carry: equal to nothing, usable for nothing."""

    def __init__(self, kind: str):
        self.kind = kind

    def __repr__(self) -> str:
        return f"<valeur non transmissible : {self.kind}>"

    def __eq__(self, other):
        return False

    __hash__ = object.__hash__


class ClaimError(ValueError):
    """The claim is not a well-formed encoding."""


def _dec(x, depth=0):
    if depth > 14:
        raise ClaimError("nesting too deep")
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, list):
        return [_dec(v, depth + 1) for v in x]
    if not isinstance(x, dict) or len(x) != 1:
        raise ClaimError(f"unexpected {type(x).__name__}")
    (tag, value), = x.items()
    if tag == "__float__":
        return float({"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(value, "nan"))
    if tag == "__tuple__":
        return tuple(_dec(v, depth + 1) for v in value)
    if tag == "__set__":
        return set(_dec(v, depth + 1) for v in value)
    if tag == "__dict__":
        return {_dec(k, depth + 1): _dec(v, depth + 1) for k, v in value}
    if tag == "__namedtuple__":
        from collections import namedtuple

        name, fields, items = value
        names = [name, *fields] if isinstance(fields, list) else [None]
        if not all(isinstance(n, str) and n.isidentifier() for n in names):
            raise ClaimError("bad namedtuple")
        return namedtuple(name, fields, rename=True)(*[_dec(v, depth + 1) for v in items])
    if tag == "__numpy__":
        import numpy as np

        dtype, item = value
        return np.dtype(str(dtype)).type(_dec(item, depth + 1))
    if tag == "__ndarray__":
        import numpy as np

        dtype, data = value
        return np.array(_dec(data, depth + 1), dtype=np.dtype(str(dtype)))
    if tag == "__tensor__":
        import torch

        dtype, data = value
        kind = getattr(torch, str(dtype), None)
        if not isinstance(kind, torch.dtype):
            raise ClaimError("bad tensor dtype")
        return torch.tensor(_dec(data, depth + 1), dtype=kind)
    if tag == "__figure__":
        from matplotlib.figure import Figure

        fig = Figure()
        for i, lines in enumerate(value):
            ax = fig.add_subplot(1, len(value), i + 1)
            for line in lines:
                ax.plot(_dec(line["x"], depth + 1), _dec(line["y"], depth + 1))
        return fig
    if tag == "__opaque__":
        return Opaque(str(value))
    raise ClaimError(f"unknown tag {tag!r}")


def restrict_claim(text, names) -> str | None:
    """The claim ``text`` reduced to the answers ``names`` (JSON in, JSON out; nothing is
    decoded into values here), or None when it is not a JSON object within size."""
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        return None
    try:
        raw = json.loads(text, parse_constant=lambda c: None)
    except (ValueError, RecursionError):
        return None
    if not isinstance(raw, dict):
        return None
    if "__error__" in raw:
        return json.dumps({"__error__": str(raw["__error__"])[:200]})
    return json.dumps({name: raw[name] for name in names if name in raw})


def decode_answers(text: str) -> dict:
    """The answers of a claim, as plain values (raises ClaimError on anything malformed)."""
    if not isinstance(text, str) or len(text) > MAX_CHARS:
        raise ClaimError("missing or too large")
    try:
        raw = json.loads(text, parse_constant=lambda c: math.nan)
    except ValueError as err:
        raise ClaimError(str(err)) from None
    if not isinstance(raw, dict) or "__error__" in raw:
        raise ClaimError(str(raw.get("__error__", "not an object")) if isinstance(raw, dict) else "not an object")
    try:
        return {str(name): _dec(value) for name, value in raw.items()}
    except (TypeError, ValueError, KeyError) as err:
        raise ClaimError(f"{type(err).__name__}: {err}") from None
