"""GPT-2's byte-pair-encoding tokenizer (tiktoken), cached in the lab's cache folder."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import tiktoken

from .download import RemoteFile, fetch
from .errors import DownloadError
from .paths import cache_dir, tiktoken_dir

PAD_TOKEN_ID = 50256  # <|endoftext|>, used as padding


def _tiktoken_file(url: str, sha256: str) -> RemoteFile:
    # tiktoken looks for a cached file under the SHA-1 of its URL
    return RemoteFile(url, hashlib.sha1(url.encode()).hexdigest(), sha256, env_var="TIKTOKEN_CACHE_DIR")


# The two files of tiktoken's "gpt2" encoding, with the SHA-256 tiktoken pins.
TIKTOKEN_FILES = (
    _tiktoken_file("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
                   "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"),
    _tiktoken_file("https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
                   "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"),
)


@lru_cache(maxsize=1)
def get_tokenizer() -> tiktoken.Encoding:
    """Le tokenizer BPE de GPT-2 (50 257 tokens) ; ``tokenizer.encode(texte)`` donne les
    identifiants des tokens. Télécharge ses deux fichiers la première fois.
    """
    # We fetch them ourselves (timeout, retries, resume, SHA-256, atomic write: see
    # download.py), since tiktoken's own download has no timeout; tiktoken then
    # finds them in its cache and checks their SHA-256 again.
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(tiktoken_dir()))
    folder = Path(os.environ["TIKTOKEN_CACHE_DIR"]).expanduser()
    try:
        if os.environ["TIKTOKEN_CACHE_DIR"]:  # "" turns tiktoken's cache off
            for remote in TIKTOKEN_FILES:  # a corrupt copy in our own cache is replaced
                fetch(remote, folder, replace_corrupt=folder == cache_dir() / "tiktoken")
        return tiktoken.get_encoding("gpt2")
    except DownloadError as err:  # our message already gives the manual steps
        raise type(err)(f"Impossible de charger le tokenizer GPT-2. {err}") from err
    except Exception as err:  # requests' network errors, tiktoken's hash mismatch
        raise DownloadError(
            "Impossible de charger le tokenizer GPT-2 "
            f"({type(err).__name__}: {err}). Il faut internet la première fois. "
            f"Étapes manuelles : téléchargez {' et '.join(f.url for f in TIKTOKEN_FILES)}, puis placez-les "
            f"dans {folder} sous les noms {' et '.join(f.filename for f in TIKTOKEN_FILES)} "
            "(le SHA-1 de leur URL), ou définissez TIKTOKEN_CACHE_DIR."
        ) from err
