"""Where the lab keeps downloaded files.

Everything lives under one cache folder (default ``~/.cache/tp3``, or ``$TP3_CACHE_DIR``)
so that it is easy to find and to clear:

- ``data/``: the SMS Spam Collection (or ``$TP3_DATA_DIR``, e.g. a read-only copy);
- ``tiktoken/``: the GPT-2 tokenizer files (or ``$TIKTOKEN_CACHE_DIR``);
- ``huggingface/``: the GPT-2 weights (or ``$HF_HUB_CACHE``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

ENV_CACHE_DIR = "TP3_CACHE_DIR"
ENV_DATA_DIR = "TP3_DATA_DIR"


def _env_dir(name: str) -> Path | None:
    """The folder named by environment variable ``name`` (None if unset or empty).

    It may not exist yet (it is created when needed), but must not be a file.
    """
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"{name} doit désigner un dossier, obtenu {value!r}, qui est un fichier. "
            f"Donnez le dossier qui le contient ({str(path.parent)!r}) ou supprimez {name}."
        )
    return path


def cache_dir() -> Path:
    """Root of the lab's caches."""
    env = _env_dir(ENV_CACHE_DIR)
    if env:
        return env
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "tp3"


def data_dir() -> Path:
    """Folder holding ``SMSSpamCollection``."""
    return _env_dir(ENV_DATA_DIR) or cache_dir() / "data"


def tiktoken_dir() -> Path:
    env = os.environ.get("TIKTOKEN_CACHE_DIR")
    return Path(env).expanduser() if env else cache_dir() / "tiktoken"


def hf_hub_dir() -> Path:
    env = os.environ.get("HF_HUB_CACHE")
    return Path(env).expanduser() if env else cache_dir() / "huggingface"


def usual_mode(folder: bool = False) -> int:
    """The mode ``open()`` (or ``mkdir``) would give a new file (folder) under the current
    umask: temporary files (``mkstemp``, ``mkdtemp``) are 0600/0700 until given this one."""
    mask = os.umask(0o022)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask
