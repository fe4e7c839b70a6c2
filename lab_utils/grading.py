"""Helpers for the notebooks' test cells: French feedback and independent recomputation.

Test cells compare a student's answer with an oracle computed another way (a formula,
or the saved run reloaded into a fresh model), and fail with a message of the form
"attendu X, obtenu Y" plus a hint. Nothing here writes to stderr: nbgrader gives
zero to a test cell that does.
"""

from __future__ import annotations

import math
from functools import lru_cache
from numbers import Number
from pathlib import Path

from .errors import LabError
from .run import RUN_DIR, load_run


def _show(value) -> str:
    if isinstance(value, bool) or not isinstance(value, Number):
        return repr(value)
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u202f")
    return f"{value:.6g}"


def fail(message: str, hint: str = "") -> None:
    raise AssertionError(message + (f" Indice : {hint}" if hint else ""))


def check(condition: bool, message: str, hint: str = "") -> None:
    """Fail with ``message`` (and ``hint``) unless ``condition`` holds."""
    if not condition:
        fail(message, hint)


def check_number(name: str, got, expected, hint: str = "", abs_tol: float = 0.0) -> None:
    """``got`` must be a number equal to ``expected`` (within ``abs_tol``)."""
    if isinstance(got, bool) or not isinstance(got, Number) or (isinstance(got, float) and math.isnan(got)):
        fail(f"{name} : attendu un nombre, obtenu {got!r}.", hint)
    if isinstance(expected, int) and abs_tol == 0 and got != int(got):
        fail(f"{name} : attendu un entier ({_show(expected)}), obtenu {_show(got)}.", hint)
    check(abs(got - expected) <= abs_tol, f"{name} : attendu {_show(expected)}, obtenu {_show(got)}.", hint)


def check_equal(name: str, got, expected, hint: str = "") -> None:
    check(got == expected, f"{name} : attendu {_show(expected)}, obtenu {_show(got)}.", hint)


def check_between(name: str, got, low, high, hint: str = "") -> None:
    ok = isinstance(got, Number) and not isinstance(got, bool) and low <= got <= high
    check(ok, f"{name} : attendu une valeur entre {_show(low)} et {_show(high)}, obtenu {_show(got)}.", hint)


@lru_cache(maxsize=2)
def _cached_run(path: str, stamp: float):
    return load_run(path)


def reference_run(run_dir: str | Path = RUN_DIR):
    """The saved run reloaded into a fresh model: (model, history), cached per kernel.

    Independent of the notebook's own ``model`` object, so it shows what the adapter
    on disk really does.
    """
    path = Path(run_dir)
    adapter = path / "adapter.safetensors"
    stamp = adapter.stat().st_mtime if adapter.exists() else -1.0
    try:
        return _cached_run(str(path.resolve()), stamp)
    except LabError as err:
        fail(f"Impossible de recharger l'exécution sauvegardée {path}/ : {err}",
             "entraînez le modèle dans ce notebook et rendez le dossier tp3_run/ avec lui.")


def recompute_accuracy(loader, run_dir: str | Path = RUN_DIR) -> float:
    """Accuracy of the saved run on ``loader``'s messages."""
    from .train import evaluate

    model, _ = reference_run(run_dir)
    return evaluate(model, loader).accuracy


def recompute_predictions(texts, tokenizer, run_dir: str | Path = RUN_DIR):
    """Predictions of the saved run for ``texts``."""
    from .classify import classify_texts

    model, _ = reference_run(run_dir)
    return classify_texts(list(texts), model, tokenizer)
