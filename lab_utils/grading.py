"""Helpers for the notebooks' test cells: French feedback and independent recomputation.

Test cells compare a student's answer with an oracle computed another way (a formula,
or the saved run reloaded into a fresh model), and fail with a message of the form
"attendu X, obtenu Y" plus a hint. Every correct form of an answer passes: Python,
numpy and torch numbers, 0-d tensors, integral floats for counts, a confidence rounded
to 3 decimals. Numbers in messages are written the French way. Nothing here writes to
stderr: nbgrader gives zero to a test cell that does; and no ``check_*`` returns a value,
since a test cell ending in a number would be read by nbgrader as partial credit.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from .errors import LabError
from .french import fr_number, plain_number
from .run import RUN_DIR, load_run
from .thresholds import threshold

CONFIDENCE_TOL = 5e-4 + 1e-9  # a confidence rounded to 3 decimals is still the model's


def _show(value) -> str:
    if plain_number(value) is None:
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    return fr_number(value)


def _kind(value) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None and len(shape) > 0:
        return f"un tableau de forme {tuple(shape)}"
    return f"{type(value).__name__} {_show(value)}"


def fail(message: str, hint: str = "") -> None:
    raise AssertionError(message + (f" Indice : {hint}" if hint else ""))


def check(condition: bool, message: str, hint: str = "") -> None:
    """Échoue avec ``message`` (et l'indice ``hint``) si ``condition`` est fausse."""
    if not condition:
        fail(message, hint)


def number(name: str, got, hint: str = "") -> int | float:
    """``got`` as a Python number (any numeric type, a 0-d or one-element tensor), or a
    failure that says a single number was expected."""
    value = plain_number(got)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        fail(f"{name} : attendu un nombre, obtenu {_kind(got)}.", hint)
    return value


def check_number(name: str, got, expected, hint: str = "", abs_tol: float = 0.0) -> None:
    """``got`` doit être un nombre égal à ``expected`` (à ``abs_tol`` près)."""
    value = number(name, got, hint)
    if isinstance(expected, int) and abs_tol == 0 and value != int(value):
        fail(f"{name} : attendu un nombre entier ({_show(expected)}), obtenu {_show(value)}.", hint)
    tol = f" (à {fr_number(abs_tol)} près)" if abs_tol else ""
    check(abs(value - expected) <= abs_tol, f"{name} : attendu {_show(expected)}{tol}, obtenu {_show(value)}.", hint)


def check_integer(name: str, got, low: int | None = None, high: int | None = None, what: str = "",
                  hint: str = "") -> None:
    """``got`` doit être un nombre entier (de n'importe quel type), entre ``low`` et ``high``
    s'ils sont donnés ; ``what`` dit ce qu'il compte."""
    value = number(name, got, hint)
    bounds = " ".join(filter(None, [f"d'au moins {_show(low)}" if low is not None else "",
                                    f"d'au plus {_show(high)}" if high is not None else ""]))
    expected = "un nombre entier" + (f" {bounds}" if bounds else "") + (f" ({what})" if what else "")
    if value != int(value):
        fail(f"{name} : attendu {expected}, obtenu {_show(value)}, qui n'est pas entier.", hint)
    value = int(value)
    check((low is None or value >= low) and (high is None or value <= high),
          f"{name} : attendu {expected}, obtenu {_show(value)}.", hint)


def truth(got) -> bool | None:
    """``got`` as a Python bool if it is one (numpy bool, 0-d torch bool tensor), else None."""
    if isinstance(got, bool):
        return got
    if tuple(getattr(got, "shape", (0,))) == () and hasattr(got, "item"):
        value = got.item()
        return value if isinstance(value, bool) else None
    return None


def check_equal(name: str, got, expected, hint: str = "") -> None:
    """``got`` doit être égal à ``expected`` (un nombre ou un booléen de n'importe quel type compte)."""
    if isinstance(expected, bool):
        value = truth(got)
        if value is None:
            fail(f"{name} : attendu un booléen ({expected!r}), obtenu {_kind(got)}.", hint)
        check(value is expected, f"{name} : attendu {expected!r}, obtenu {value!r}.", hint)
        return
    if plain_number(expected) is not None and plain_number(got) is not None:
        got = plain_number(got)
    check(got == expected, f"{name} : attendu {_show(expected)}, obtenu {_show(got)}.", hint)


def check_between(name: str, got, low, high, hint: str = "") -> None:
    """``got`` doit être un nombre entre ``low`` et ``high`` (inclus)."""
    value = number(name, got, hint)
    check(low <= value <= high,
          f"{name} : attendu une valeur entre {_show(low)} et {_show(high)}, obtenu {_show(value)}.", hint)


def check_fraction(name: str, got, hint: str = "") -> None:
    """``got`` doit être une proportion entre 0 et 1 (une exactitude) ; un pourcentage est
    signalé comme tel."""
    value = number(name, got, hint)
    if 1 < value <= 100:
        fail(f"{name} : attendu une proportion entre 0 et 1, obtenu {_show(value)}, qui ressemble à un "
             "pourcentage : divisez par 100.", hint)
    check(0 <= value <= 1, f"{name} : attendu une proportion entre 0 et 1, obtenu {_show(value)}.", hint)


def check_percent(name: str, got, expected: float, abs_tol: float, hint: str = "") -> None:
    """``got`` doit être le pourcentage ``expected`` (à ``abs_tol`` près) ; une proportion
    (100 fois trop petite) est signalée comme telle."""
    value = number(name, got, hint)
    if abs(value * 100 - expected) <= abs_tol and abs(value - expected) > abs_tol:
        fail(f"{name} : attendu un pourcentage ({_show(expected)} environ), obtenu {_show(value)}, "
             "qui est une proportion : multipliez par 100.", hint)
    check_number(name, value, expected, hint, abs_tol)


def prediction(name: str, got, hint: str = "") -> tuple[str, float]:
    """``got`` as (label, confidence): a ``Prediction``, a pair or a list of two; the label
    ``"spam"`` or ``"ham"`` (any case), the confidence a number between 0.5 and 1."""
    try:
        label, confidence = (got.label, got.confidence) if hasattr(got, "label") else tuple(got)
    except (TypeError, ValueError):
        fail(f"{name} : attendu une prédiction (classe, confiance), obtenu {_show(got)}.", hint)
    label = label.strip().lower() if isinstance(label, str) else label
    value = plain_number(confidence)
    check(label in ("spam", "ham") and value is not None and 0.5 <= value <= 1.0,
          f"{name} : attendu (\"spam\" ou \"ham\", confiance entre 0,5 et 1), obtenu {_show(got)}.", hint)
    return label, value


def check_prediction(name: str, got, want, hint: str = "") -> None:
    """``got`` doit être la prédiction ``want`` : même classe, même confiance à 0,0005
    près (une confiance arrondie à 3 décimales est acceptée)."""
    label, confidence = prediction(name, got, hint)
    check(label == want.label and abs(confidence - want.confidence) <= CONFIDENCE_TOL,
          f"{name} : le modèle sauvegardé donne {want.label} ({fr_number(want.confidence, 4)}), "
          f"obtenu {label} ({fr_number(confidence, 4)}) ; attendu la même classe et la même confiance "
          "à 0,0005 près.", hint)


def text_pairs(name: str, got, minimum: int = 3, hint: str = "") -> list[tuple[str, str]]:
    """``got`` doit être une liste d'au moins ``minimum`` couples (texte non vide, classe
    ``"spam"`` ou ``"ham"``, en minuscules ou non). Renvoie les couples, classe en minuscules."""
    example = '[("Txt WIN to 80086 now!", "spam"), ("See you at lunch?", "ham"), ...]'
    if not isinstance(got, (list, tuple)) or len(got) < minimum:
        fail(f"{name} : attendu une liste d'au moins {minimum} couples (texte, classe attendue), comme "
             f"{example} ; obtenu {_show(got)}.", hint)
    pairs = []
    for i, item in enumerate(got):
        ok = isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str) and bool(item[0].strip())
        label = item[1].strip().lower() if ok and isinstance(item[1], str) else None
        if label not in ("spam", "ham"):
            fail(f"{name}[{i}] : attendu un couple (texte non vide, \"spam\" ou \"ham\"), obtenu {_show(item)}.", hint)
        pairs.append((item[0], label))
    return pairs


# While the grader's trusted replay re-runs the hidden tests outside the student's kernel, it
# sets this in the kernel: values recomputed from the adapter are then deferred to the replay.
ORACLES_ENV = "TP3_ORACLES"


def deferred() -> bool:
    """True in a student's kernel whose hidden tests the trusted replay runs again: the
    recomputations from the saved adapter are done there, once, where they can be trusted."""
    import os

    return os.environ.get(ORACLES_ENV) == "replay"


class Deferred(float):
    """Stands, in the student's kernel, for a number the trusted replay recomputes from the
    adapter: it compares equal (and close, and above any minimum) to every number, so the
    kernel's check passes provisionally; the replay, which gets real numbers, decides."""

    def __new__(cls):
        return super().__new__(cls, "nan")

    def __eq__(self, other):
        return True

    __le__ = __ge__ = __eq__

    def __ne__(self, other):
        return False

    def __lt__(self, other):
        return False

    __gt__ = __lt__

    def __sub__(self, other):
        return 0.0

    __rsub__ = __sub__
    __hash__ = float.__hash__


class DeferredLabel(str):
    """A class label the trusted replay recomputes (see :class:`Deferred`)."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = str.__hash__


@lru_cache(maxsize=2)
def _cached_run(path: str, stamp: float):
    if deferred():  # only the history, checked against the adapter: the model is the replay's
        from .run import HISTORY_FILE, check_run_files
        from .train import History

        check_run_files(path)
        return None, History.load(Path(path) / HISTORY_FILE)
    return load_run(path)


def reference_run(run_dir: str | Path = RUN_DIR):
    """The saved run reloaded into a fresh model: (model, history), cached per kernel.

    Independent of the notebook's own ``model`` object, so it shows what the adapter
    on disk really does. While the replay re-runs the tests (:func:`deferred`), the model
    is None: only the replay evaluates it.
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
    return Deferred() if deferred() else evaluate(model, loader).accuracy


def recompute_predictions(texts, tokenizer, run_dir: str | Path = RUN_DIR):
    """Predictions of the saved run for ``texts``."""
    from .classify import Prediction, classify_texts

    model, _ = reference_run(run_dir)
    if deferred():
        return [Prediction(DeferredLabel(""), Deferred()) for _ in texts]
    return classify_texts(list(texts), model, tokenizer)


__all__ = ["check", "check_between", "check_equal", "check_fraction", "check_integer", "check_number",
           "check_percent", "check_prediction", "fail", "number", "prediction", "recompute_accuracy",
           "recompute_predictions", "reference_run", "text_pairs", "threshold", "truth"]
