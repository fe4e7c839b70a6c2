"""Progress bars that switch themselves off where they would do harm.

nbgrader gives zero to a test cell that writes anything to stderr, and tqdm writes
there; bars are therefore off while nbgrader executes a notebook
(``NBGRADER_EXECUTION`` is set) or when ``TP3_PROGRESS=0``.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def is_grading() -> bool:
    """True while nbgrader executes the notebook (autograde or validate)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def progress_enabled(enable: bool | None = None) -> bool:
    if enable is not None:
        return enable
    return not is_grading() and os.environ.get("TP3_PROGRESS", "1") not in ("0", "false", "no")


def progress_bar(iterable=None, *, enable: bool | None = None, **kwargs) -> tqdm:
    """A tqdm bar (a widget in JupyterLab), or a silent one when disabled."""
    return tqdm(iterable, disable=not progress_enabled(enable), **kwargs)
