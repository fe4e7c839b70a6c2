"""Functions run in child processes (multiprocessing "spawn") by the download fault tests.

A child imports lab_utils/download.py on its own, without the package's __init__
(which imports torch: seconds per child on a 2-core machine); the code under test is
the same file. Arguments are plain values, so unpickling them imports nothing.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _download_module():
    if "lab_utils" not in sys.modules:  # a bare package: submodules load, __init__ does not run
        package = types.ModuleType("lab_utils")
        package.__path__ = [str(REPO / "lab_utils")]
        sys.modules["lab_utils"] = package
    from lab_utils import download

    return download


def fetch_in_child(remote: dict, dest_dir: str, barrier, results) -> None:
    """Wait for the other children, fetch ``remote``, report (sha256, seconds) or the error."""
    download = _download_module()
    barrier.wait(timeout=60)
    start = time.monotonic()
    try:
        path = download.fetch(download.RemoteFile(**remote), Path(dest_dir), timeout=10, progress=False)
        results.put(("ok", download.sha256sum(path), time.monotonic() - start))
    except Exception as err:  # reported to the parent, which fails the test
        results.put(("error", f"{type(err).__name__}: {err}", time.monotonic() - start))


def fetch_forever(remote: dict, dest_dir: str) -> None:
    """Fetch with a long timeout: the parent kills this process mid-download."""
    download = _download_module()
    download.fetch(download.RemoteFile(**remote), Path(dest_dir), timeout=60, retries=0, progress=False)
