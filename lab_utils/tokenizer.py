"""GPT-2's byte-pair-encoding tokenizer (tiktoken), cached in the lab's cache folder."""

from __future__ import annotations

import os
from functools import lru_cache

import tiktoken

from .errors import DownloadError
from .paths import tiktoken_dir

PAD_TOKEN_ID = 50256  # <|endoftext|>, used as padding
TIKTOKEN_FILES = (
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
)


@lru_cache(maxsize=1)
def get_tokenizer() -> tiktoken.Encoding:
    """The ``gpt2`` encoding (50,257 tokens); downloads its two files on first use.

    tiktoken verifies their SHA-256 and writes them atomically.
    """
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tiktoken_dir()))
    try:
        return tiktoken.get_encoding("gpt2")
    except Exception as err:  # requests' network errors, tiktoken's hash mismatch
        raise DownloadError(
            "Impossible de charger le tokenizer GPT-2 "
            f"({type(err).__name__}: {err}). Il faut internet la première fois. "
            f"Étapes manuelles : téléchargez {' et '.join(TIKTOKEN_FILES)}, puis placez-les dans "
            f"{os.environ['TIKTOKEN_CACHE_DIR']} sous le nom du SHA-1 de leur URL "
            "(voir le README, section « Hors ligne »), ou définissez TIKTOKEN_CACHE_DIR."
        ) from err
