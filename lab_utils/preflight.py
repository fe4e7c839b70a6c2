"""Is everything the lab needs already here? Checked without any network access.

For one profile, :func:`check` looks where the lab reads them at the SMS data file, the
tokenizer's two files and (profile ``full``) GPT-2's weights, and verifies each one as a
download would (size, SHA-256). Every missing or invalid piece comes with the exact
commands or variables that provide it. ``python -m lab_utils check`` prints the result;
``dev.py lab`` and the course's own preflight (``grading/autograder/preflight.py``) call it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, DownloadError

PREFETCH = "python -m lab_utils prefetch"
ENV_OFFLINE = "TP3_OFFLINE"  # 1: prefetch (and dev.py lab) never download, they only check


@dataclass(frozen=True)
class Piece:
    """One thing the lab reads: where it is (or was looked for) and, if it is not usable,
    what is wrong (``problem``, French) and what provides it (``fixes``: commands or
    variables, the first one the usual one)."""

    kind: str  # "profile", "data", "tokenizer" or "weights"
    name: str
    path: Path | None
    problem: str = ""
    fixes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problem


def check(profile: str | None = None, suggest_ci: bool = True) -> list[Piece]:
    """Every piece the ``profile`` (default ``$TP3_PROFILE``) needs, present or not.

    ``suggest_ci``: offer ``TP3_PROFILE=ci`` when the weights are missing (right for trying
    the lab, wrong for grading work trained with the real weights).
    """
    from .profiles import ENV_PROFILE, PROFILES, get_profile

    pieces = [_data(), *_tokenizer()]
    try:
        chosen = get_profile(profile)
    except ConfigError as err:
        return [Piece("profile", "Profil", None, str(err), tuple(f"{ENV_PROFILE}={name}" for name in PROFILES)), *pieces]
    if chosen.pretrained:
        pieces.append(_weights(chosen.model_name, suggest_ci))
    return pieces


def missing(profile: str | None = None, suggest_ci: bool = True) -> list[Piece]:
    return [p for p in check(profile, suggest_ci) if not p.ok]


def _data() -> Piece:
    from .data import SMS_SPAM
    from .paths import ENV_DATA_DIR, data_dir

    name = f"Données SMS ({SMS_SPAM.filename})"
    try:
        folder = data_dir()
    except ConfigError as err:
        return Piece("data", name, None, str(err), (f"{ENV_DATA_DIR}=/dossier/contenant/{SMS_SPAM.filename}",))
    path = folder / SMS_SPAM.filename
    own = not os.environ.get(ENV_DATA_DIR, "").strip()
    problem = _verify(path, SMS_SPAM)
    if not problem:
        return Piece("data", name, path)
    fixes = [f"{PREFETCH}  (avec internet)", f"{ENV_DATA_DIR}=/dossier/contenant/{SMS_SPAM.filename}",
             f"téléchargez {SMS_SPAM.url}, décompressez-le et copiez {SMS_SPAM.member} dans {folder}"]
    if not own and path.exists():  # the user's file: never replaced for them
        fixes = [f"remplacez {path} par le fichier publié, ou retirez {ENV_DATA_DIR} puis « {PREFETCH} »"]
    return Piece("data", name, path, problem, tuple(fixes))


def _tokenizer() -> list[Piece]:
    from .tokenizer import TIKTOKEN_FILES
    from .paths import tiktoken_dir

    env = "TIKTOKEN_CACHE_DIR"
    if env in os.environ and not os.environ[env]:
        return [Piece("tokenizer", "Tokenizer GPT-2", None, f"{env} est vide : le cache de tiktoken est désactivé, il "
                      "téléchargerait le tokenizer à chaque fois", (f"unset {env}", f"{env}=/dossier/du/tokenizer"))]
    folder = tiktoken_dir()
    pieces = []
    for remote in TIKTOKEN_FILES:
        original = remote.url.rsplit("/", 1)[1]
        path = folder / remote.filename
        problem = _verify(path, remote)
        fixes = (f"{PREFETCH}  (avec internet)",
                 f"{env}=/dossier/contenant/{remote.filename}",
                 f"téléchargez {remote.url} et copiez-le dans {folder} sous le nom {remote.filename}")
        pieces.append(Piece("tokenizer", f"Tokenizer GPT-2 ({original})", path, problem, fixes if problem else ()))
    return pieces


def _weights(model_name: str, suggest_ci: bool) -> Piece:
    from .paths import hf_hub_dir
    from .weights import ENV_WEIGHTS_FILE, _checkpoint, _verified

    ckpt = _checkpoint(model_name)
    name = f"Poids GPT-2 ({ckpt.filename}, {ckpt.size / 1e6:.0f} Mo)"
    fixes = [f"{PREFETCH}  (avec internet, {ckpt.size / 1e6:.0f} Mo)",
             f"{ENV_WEIGHTS_FILE}=/chemin/vers/{ckpt.filename}  (téléchargé depuis {ckpt.url})"]
    if suggest_ci:
        fixes.append("TP3_PROFILE=ci  (petit GPT-2 aléatoire, sans poids : pour essayer le TP hors ligne, "
                     "pas pour le rendre)")
    manual = os.environ.get(ENV_WEIGHTS_FILE, "").strip()
    if manual:
        path = Path(manual).expanduser()
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(ckpt.repo_id, ckpt.filename, cache_dir=hf_hub_dir(), revision=ckpt.revision)
        if not isinstance(found, str):
            return Piece("weights", name, hf_hub_dir(), f"absents du cache {hf_hub_dir()}", tuple(fixes))
        path = Path(found)
    if not path.is_file():
        return Piece("weights", name, path, f"{ENV_WEIGHTS_FILE}={manual} : fichier introuvable", tuple(fixes))
    try:
        _verified(path, ckpt)
    except DownloadError as err:
        return Piece("weights", name, path, str(err), tuple(fixes))
    return Piece("weights", name, path)


def _verify(path: Path, remote) -> str:
    """'' if ``path`` holds the published file, else what is wrong (French)."""
    from .download import verify

    if not path.exists():
        return f"absent de {path.parent}"
    try:
        verify(path, remote)
    except DownloadError as err:
        return str(err)
    return ""


def fetch_missing(profile: str | None = None, weights: bool = True) -> list[Piece]:
    """Download what :func:`check` finds missing (each piece tried even when another failed;
    a host that does not answer within seconds is skipped, not retried), then check again.
    With ``$TP3_OFFLINE`` set to 1, nothing is downloaded: only the check."""
    import sys

    from .download import reachable
    from .errors import LabError

    pieces = [p for p in check(profile) if weights or p.kind != "weights"]
    if os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes"):
        return pieces
    for kind in dict.fromkeys(p.kind for p in pieces if not p.ok):
        if kind not in _FETCHERS:
            continue
        url, fetch = _FETCHERS[kind](profile)
        if fetch is None:
            continue
        if not reachable(url):
            print(f"{url} ne répond pas (pas d'internet ?) : rien n'a été téléchargé depuis ce site.", file=sys.stderr)
            continue
        try:
            fetch()
        except LabError as err:
            print(f"Échec du téléchargement : {err}", file=sys.stderr)
    return [p for p in check(profile) if weights or p.kind != "weights"]


def _fetch_data(profile):
    from .data import SMS_SPAM, sms_spam_path

    return SMS_SPAM.url, sms_spam_path


def _fetch_tokenizer(profile):
    from .tokenizer import TIKTOKEN_FILES, get_tokenizer

    return TIKTOKEN_FILES[0].url, get_tokenizer


def _fetch_weights(profile):
    from .profiles import get_profile
    from .weights import HUB, _checkpoint, download_gpt2_weights

    name = get_profile(profile).model_name
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return None, None  # only the cache, which check() has already looked at
    return _checkpoint(name).url_at(os.environ.get("HF_ENDPOINT") or HUB), lambda: download_gpt2_weights(name)


_FETCHERS = {"data": _fetch_data, "tokenizer": _fetch_tokenizer, "weights": _fetch_weights}


def report(pieces: list[Piece], profile: str | None = None, downloaded: bool = False) -> str:
    """One French message: what is there, then every missing piece with what provides it."""
    from .profiles import PROFILES

    name = profile or os.environ.get("TP3_PROFILE") or "full"
    lines = [f"{p.name} : {p.path}" for p in pieces if p.ok]
    if name in PROFILES and not PROFILES[name].pretrained:
        lines.append(f"Poids GPT-2 : non nécessaires (profil {name}).")
    bad = [p for p in pieces if not p.ok]
    how = "" if downloaded else " (vérifié sans rien télécharger)"
    if not bad:
        return "\n".join([*lines, f"Tout est prêt pour le profil {name}{how}."])
    lines.append(f"Il manque {len(bad)} élément{'s' if len(bad) > 1 else ''} pour le profil {name}{how} :")
    lines += [describe(p) for p in bad]
    return "\n".join(lines)


def describe(piece: Piece) -> str:
    """``- name : problem`` then one ``-> fix`` line per fix."""
    return "\n".join([f"  - {piece.name} : {piece.problem}", *(f"      -> {fix}" for fix in piece.fixes)])
