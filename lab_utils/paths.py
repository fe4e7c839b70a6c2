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

ENV_CACHE_DIR = "TP3_CACHE_DIR"
ENV_DATA_DIR = "TP3_DATA_DIR"


def cache_dir() -> Path:
    """Root of the lab's caches."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg).expanduser() / "tp3"


def data_dir() -> Path:
    """Folder holding ``SMSSpamCollection``."""
    env = os.environ.get(ENV_DATA_DIR)
    return Path(env).expanduser() if env else cache_dir() / "data"


def tiktoken_dir() -> Path:
    env = os.environ.get("TIKTOKEN_CACHE_DIR")
    return Path(env).expanduser() if env else cache_dir() / "tiktoken"


def hf_hub_dir() -> Path:
    env = os.environ.get("HF_HUB_CACHE")
    return Path(env).expanduser() if env else cache_dir() / "huggingface"
