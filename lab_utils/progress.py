"""Progress bars and notices that stay in French and switch themselves off where they would harm.

nbgrader gives zero to a test cell that writes anything to stderr, and tqdm writes
there; bars are therefore off while nbgrader executes a notebook
(``NBGRADER_EXECUTION`` is set) or when ``TP3_PROGRESS=0``. A bar shows the share done,
the count, the elapsed and remaining time and the postfix: no rate, whose decimal point
tqdm does not let us write the French way.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm

BAR_FORMAT = "{desc} : {percentage:3.0f} %|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
BYTES_FORMAT = "{desc} : {percentage:3.0f} %|{bar}| [{elapsed}<{remaining}]"  # no "12.3MB" in English


def is_grading() -> bool:
    """True while nbgrader executes the notebook (autograde or validate)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def progress_enabled(enable: bool | None = None) -> bool:
    if enable is not None:
        return enable
    return not is_grading() and os.environ.get("TP3_PROGRESS", "1") not in ("0", "false", "no")


def progress_bar(iterable=None, *, enable: bool | None = None, **kwargs) -> tqdm:
    """A tqdm bar (a widget in JupyterLab), or a silent one when disabled."""
    kwargs.setdefault("bar_format", BYTES_FORMAT if kwargs.get("unit_scale") else BAR_FORMAT)
    return tqdm(iterable, disable=not progress_enabled(enable), **kwargs)


def notice(message: str) -> None:
    """A French line for the user (stdout: never stderr, which nbgrader counts as a failure)."""
    print(message, flush=True)
