"""French number formatting: the one place every student-facing number goes through.

French typography: a narrow no-break space (U+202F) between groups of thousands and
before "%", a decimal comma: ``1 327 104``, ``0,807``, ``81,54 %``. Prints, figures,
tables, test messages and the command line all call these functions.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

NNBSP = "\u202f"  # narrow no-break space


def plain_number(value):
    """``value`` as a Python int or float if it is one number (numpy scalar, 0-d or
    one-element array or tensor included), else None. Booleans are not numbers here."""
    if isinstance(value, bool):
        return None
    if not isinstance(value, (Integral, Real)):
        size = getattr(value, "numel", None) or getattr(value, "size", None)
        size = size() if callable(size) else size
        if size != 1 or not hasattr(value, "item"):
            return None
        value = value.item()
        if isinstance(value, bool):
            return None
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    return None


def fr_number(value, decimals: int | None = None) -> str:
    """Un nombre écrit à la française : « 1 327 104 », « 0,807 », « 0,69 ».

    ``decimals`` : nombre de décimales (par défaut : un entier sans décimale, un réel
    avec au plus 6 chiffres significatifs, et tous ceux de sa partie entière). Les booléens et les non-nombres sont
    écrits tels quels.
    """
    number = plain_number(value)
    if number is None:
        return str(value)
    if isinstance(number, float) and not math.isfinite(number):
        return "NaN" if math.isnan(number) else ("-∞" if number < 0 else "∞")
    if decimals is not None:
        text = f"{number:,.{decimals}f}"
    elif isinstance(number, int):
        text = f"{number:,}"
    else:  # 6 significant digits, and every digit of the integer part
        digits = max(6, len(str(int(abs(number)))) + 1)
        text = f"{number:,.{digits}g}"
    return text.replace(",", "\0").replace(".", ",").replace("\0", NNBSP)


def fr_percent(value, decimals: int = 2, scale: float = 100.0) -> str:
    """Un pourcentage à la française : ``fr_percent(0.8154)`` donne « 81,54 % ».

    ``value`` est une proportion (multipliée par ``scale`` = 100) ; pour une valeur
    déjà en pourcentage, passez ``scale=1`` : ``fr_percent(0.807, 3, scale=1)`` donne
    « 0,807 % ».
    """
    number = plain_number(value)
    if number is None:
        return str(value)
    return f"{fr_number(number * scale, decimals)}{NNBSP}%"


def fr_table(df, decimals: int | dict | None = None):
    """Un tableau pandas affiché avec les nombres à la française (pour les notebooks).

    ``decimals`` : décimales de toutes les colonnes (un entier) ou par colonne
    (un dictionnaire) ; par défaut, comme ``fr_number``.
    """
    def fmt(digits):
        return lambda v: fr_number(v, digits) if plain_number(v) is not None else v

    per_column = decimals if isinstance(decimals, dict) else {}
    default = None if isinstance(decimals, dict) else decimals
    return df.style.format({column: fmt(per_column.get(column, default)) for column in df.columns})


__all__ = ["NNBSP", "fr_number", "fr_percent", "fr_table", "plain_number"]
