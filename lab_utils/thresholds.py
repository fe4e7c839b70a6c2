"""Minimum scores the hidden tests ask of a student's saved model, and where they come from.

The grader sets ``TP3_THRESHOLDS`` to a JSON object (``{"test_acc": 0.9,
"instructor_texts": 0.8}``), taken from the thresholds file that the instructor's
reference run writes (``python -m lab_utils train --thresholds-out FILE``). Without it,
each profile has defaults (``DEFAULTS``).

Rule (``derive``): a threshold is the reference run's measured value minus a margin,
rounded down to a hundredth, and never below chance (0.5):

- ``test_acc`` (test accuracy, 262 messages): margin 0.05, about 13 messages;
- ``instructor_texts`` (share of the instructor's unambiguous messages classified right,
  10 messages): margin 0.2, two messages.

The margin absorbs what differs between a student's run and the reference run with the
same code and seed: another CPU or a GPU, another number of threads, another PyTorch.

Thresholds file (JSON), one entry per profile, written and merged by the reference run::

    {"ci": {"thresholds": {"test_acc": 0.79, "instructor_texts": 0.5},
            "measured": {"test_acc": 0.8473, "instructor_texts": 0.7},
            "rule": "...", "run_dir": "...", "created": "...", "lab_utils": "1.0.0"},
     "full": {...}}

``thresholds`` is exactly what goes into ``TP3_THRESHOLDS`` for that profile.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

from .errors import ConfigError

ENV_THRESHOLDS = "TP3_THRESHOLDS"
NAMES = ("test_acc", "instructor_texts")
MARGINS = {"test_acc": 0.05, "instructor_texts": 0.2}
CHANCE = 0.5
RULE = ("measured value minus a margin (test_acc 0.05, instructor_texts 0.2), "
        "rounded down to 0.01, at least 0.5")

# ci: the rule applied to the ci reference run of lab_utils 1.0.0 (measured: test_acc
# 0.8473, instructor_texts 0.7; grading/thresholds.json). full: NOT measured (no GPT-2
# weights where this was written); provisional values until the instructor's reference
# run writes grading/thresholds.json. random-small: random weights, chance level.
DEFAULTS = {
    "ci": {"test_acc": 0.79, "instructor_texts": 0.5},
    "full": {"test_acc": 0.85, "instructor_texts": 0.7},
    "random-small": {"test_acc": CHANCE, "instructor_texts": CHANCE},
}


def _check_value(name: str, value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{where} : le seuil {name!r} doit être un nombre entre 0 et 1, obtenu {value!r}.")
    return float(value)


def threshold(name: str, profile_name: str | None = None) -> float:
    """The minimum for ``name`` (``test_acc``, ``instructor_texts``): from
    ``$TP3_THRESHOLDS`` if it names it, else the profile's default."""
    if name not in NAMES:
        raise ConfigError(f"Seuil inconnu {name!r} : attendu l'un de {NAMES}.")
    raw = os.environ.get(ENV_THRESHOLDS, "").strip()
    if raw:
        try:
            given = json.loads(raw)
        except ValueError as err:
            raise ConfigError(f"{ENV_THRESHOLDS} n'est pas du JSON lisible ({err}).") from None
        if not isinstance(given, dict):
            raise ConfigError(f"{ENV_THRESHOLDS} : attendu un objet JSON, obtenu {raw[:60]!r}.")
        if name in given:
            return _check_value(name, given[name], ENV_THRESHOLDS)
    if profile_name is None:
        from .profiles import get_profile

        profile_name = get_profile().name
    return DEFAULTS.get(profile_name, DEFAULTS["random-small"])[name]


def derive(measured: dict[str, float]) -> dict[str, float]:
    """Thresholds from a reference run's measured values, by ``RULE``."""
    out = {}
    for name in NAMES:
        value = measured[name] - MARGINS[name]
        out[name] = max(CHANCE, math.floor(round(value * 100, 6)) / 100)
    return out


def write(path: str | Path, profile_name: str, measured: dict[str, float], run_dir: str | Path,
          version: str) -> dict:
    """Merge this profile's entry into the thresholds file at ``path``; returns the entry."""
    path = Path(path)
    data = json.loads(path.read_text()) if path.exists() else {}
    entry = {
        "thresholds": derive(measured),
        "measured": {name: round(measured[name], 4) for name in NAMES},
        "rule": RULE,
        "run_dir": str(run_dir),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "lab_utils": version,
    }
    data[profile_name] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return entry


def read_instructor_texts(path: str | Path) -> list[tuple[str, str]]:
    """The instructor's messages (a JSON list of ``[text, "spam" | "ham"]`` pairs)."""
    path = Path(path)
    try:
        pairs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path} : fichier de messages illisible ({err}).") from None
    if not isinstance(pairs, list) or not pairs or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and p[1] in ("spam", "ham") for p in pairs):
        raise ConfigError(f"{path} : attendu une liste non vide de paires [texte, \"spam\" ou \"ham\"].")
    return [(text, label) for text, label in pairs]
