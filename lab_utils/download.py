"""Atomic, verified, resumable downloads with retries and a file lock.

A file is only ever visible under its final name once its SHA-256 matched: the
bytes go to a ``.part`` file first, which an interrupted download resumes (HTTP
Range) and a corrupt one restarts. A lock keeps two kernels from writing the
same file at once. Network faults (refused connection, timeout, cut connection,
HTTP 408/429/5xx) are retried with exponential back-off; other HTTP errors (404...)
and local write errors (disk full) are reported at once, since retrying cannot help.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from filelock import FileLock, Timeout

from .errors import ChecksumError, DownloadError
from .french import fr_number
from .progress import notice, progress_bar


@dataclass(frozen=True)
class RemoteFile:
    """A file published at ``url`` (or inside the zip archive at ``url``)."""

    url: str
    filename: str  # name of the verified file in the cache folder
    sha256: str  # of the verified file (the extracted member for an archive)
    size: int | None = None
    member: str | None = None  # path inside the zip archive, if ``url`` is a zip
    env_var: str = ""  # environment variable that points at another folder holding the file


def sha256sum(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})  # worth another try
LOCAL_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES})


REDOWNLOAD = "supprimez-le, il sera retéléchargé."


def verify(path: Path, remote: RemoteFile, advice: str = REDOWNLOAD) -> None:
    """Raise ChecksumError unless ``path`` has the published size and SHA-256; the
    message ends with ``advice`` (what the user should do about it)."""
    if not path.is_file():
        raise ChecksumError(f"{path} existe mais n'est pas un fichier : déplacez-le ou supprimez-le.")
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise ChecksumError(
            f"{path} : taille attendue {fr_number(remote.size)} octets, obtenu {fr_number(size)}. Le fichier "
            f"est incomplet ou modifié : {advice}"
        )
    digest = sha256sum(path)
    if digest != remote.sha256:
        raise ChecksumError(
            f"{path} : SHA-256 attendu {remote.sha256}, obtenu {digest}. Le fichier est "
            f"corrompu ou n'est pas le bon : {advice}"
        )


def reachable(url: str, timeout: float = 5.0) -> bool:
    """True if ``url``'s server answers at all (any HTTP status) within ``timeout``: one try,
    so that an offline machine learns it in seconds instead of after every retry."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "tp3-lab-utils"})
    try:
        urllib.request.urlopen(request, timeout=timeout).close()
    except urllib.error.HTTPError:
        return True
    except (OSError, http.client.HTTPException, ValueError):
        return False
    return True


def manual_steps(remote: RemoteFile, dest: Path) -> str:
    what = (f"décompressez-le et copiez le fichier {remote.member} " if remote.member
            else f"copiez-le sous le nom {remote.filename} ")
    alt = f" (ou définissez {remote.env_var} vers le dossier qui le contient)" if remote.env_var else ""
    return (
        f"Étapes manuelles : téléchargez {remote.url} depuis une machine connectée, "
        f"{what}dans {dest.parent}{alt}, puis relancez la cellule."
    )


def fetch(
    remote: RemoteFile,
    dest_dir: Path,
    *,
    retries: int = 4,
    timeout: float = 30.0,
    backoff: float = 1.0,
    lock_timeout: float = 600.0,
    progress: bool | None = None,
    replace_corrupt: bool = False,
    sleep: Callable[[float], None] | None = None,
) -> Path:
    """Return the path of the verified file in ``dest_dir``, downloading it if needed.

    Up to ``retries`` more attempts follow a network fault, after ``backoff``, then
    twice as long each time (``sleep`` waits, ``time.sleep`` by default; tests pass a
    recorder). A file already in ``dest_dir`` that fails verification raises
    ChecksumError, unless ``replace_corrupt`` (our own cache folder, never a folder the
    user gave): then it is moved aside to ``.<name>.corrupt`` (one slot, for diagnosis)
    and downloaded again.
    """
    dest = Path(dest_dir) / remote.filename
    if dest.exists() and _usable(dest, remote, replace_corrupt):
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(dest.with_name(f".{dest.name}.lock")), timeout=lock_timeout)
        lock.acquire()
    except Timeout:
        raise DownloadError(
            f"Un autre processus télécharge {dest} depuis plus de {lock_timeout:.0f} s. "
            f"Attendez qu'il finisse, ou arrêtez les autres noyaux et relancez."
        ) from None
    except OSError as err:
        raise DownloadError(f"Impossible d'écrire dans {dest.parent} ({err}). {manual_steps(remote, dest)}") from err
    try:
        if dest.exists():  # another process may have finished it while we waited for the lock
            if _usable(dest, remote, replace_corrupt):
                return dest
            _move_aside(dest)
        _download_verified(remote, dest, retries=retries, timeout=timeout, backoff=backoff,
                           progress=progress, sleep=sleep)
        return dest
    finally:
        lock.release()


def _usable(dest: Path, remote: RemoteFile, replace_corrupt: bool) -> bool:
    """True if ``dest`` verifies; False if it is corrupt and may be replaced; else raise."""
    try:
        verify(dest, remote)
        return True
    except ChecksumError:
        if replace_corrupt:
            return False
        raise


def _move_aside(dest: Path) -> None:
    aside = dest.with_name(f".{dest.name}.corrupt")
    try:
        os.replace(dest, aside)
    except OSError as err:
        raise ChecksumError(f"{dest} est corrompu et ne peut pas être déplacé ({err}) : supprimez-le.") from err
    notice(f"{dest} était corrompu (SHA-256 différent) : déplacé vers {aside}, nouveau téléchargement.")


def _download_verified(remote, dest, *, retries, timeout, backoff, progress, sleep) -> None:
    part = dest.with_name(f".{dest.name}.part")
    last_error: Exception | None = None
    for attempt in range(retries + 1):
        if attempt:
            (sleep or time.sleep)(backoff * 2 ** (attempt - 1))
        try:
            _download(remote.url, part, timeout=timeout, progress=progress)
            _finalise(part, remote, dest)
            return
        except urllib.error.HTTPError as err:
            if err.code not in RETRY_STATUSES:
                raise DownloadError(
                    f"{remote.url} : le serveur répond HTTP {err.code} ({err.reason}) ; le fichier "
                    f"n'est pas (ou plus) à cette adresse, réessayer n'y changera rien. "
                    f"{manual_steps(remote, dest)}"
                ) from err
            last_error = err
        except (ChecksumError, zipfile.BadZipFile) as err:
            part.unlink(missing_ok=True)  # wrong bytes: resuming would keep them
            last_error = err
        except OSError as err:
            if err.errno in LOCAL_WRITE_ERRORS:  # disk full, read-only: retrying cannot help
                where = f" (ou définissez {remote.env_var} vers un autre dossier)" if remote.env_var else ""
                raise DownloadError(
                    f"Impossible d'écrire {part} ({err}). Libérez de la place ou donnez les droits "
                    f"d'écriture sur {dest.parent}{where}, puis relancez : le téléchargement reprendra."
                ) from err
            last_error = err  # network (refused, timeout, cut): keep .part, resume next time
        except http.client.HTTPException as err:  # malformed answer
            last_error = err
    if isinstance(last_error, (ChecksumError, zipfile.BadZipFile)):
        error, hint = ChecksumError, ("Le serveur a envoyé un contenu différent du fichier attendu "
                                      "(proxy ou portail de connexion Wi-Fi ?).")
    else:
        error, hint = DownloadError, "Vérifiez la connexion internet."
    raise error(
        f"Échec du téléchargement de {remote.url} après {retries + 1} tentatives "
        f"({type(last_error).__name__}: {last_error}). {hint} {manual_steps(remote, dest)}"
    ) from last_error


def _download(url: str, part: Path, *, timeout: float, progress: bool | None) -> None:
    """Append the missing bytes of ``url`` to ``part`` (restart if the server ignores Range)."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "tp3-lab-utils"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to fetch: the part file is whole
            return
        raise
    with response:
        if offset and response.status != 206:
            offset = 0  # the server sent the whole file
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(part, "ab" if offset else "wb") as f, progress_bar(
            total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[1:-5], enable=progress
        ) as bar:
            while chunk := response.read(1 << 16):
                f.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size < total:
        raise OSError(f"connexion interrompue à {part.stat().st_size} octets sur {total}")


def _finalise(part: Path, remote: RemoteFile, dest: Path) -> None:
    """Verify ``part`` (or its archive member) and move it to ``dest`` atomically."""
    if remote.member is None:
        verify(part, remote)
        os.replace(part, dest)
        return
    with zipfile.ZipFile(part) as archive:
        try:
            info = archive.getinfo(remote.member)
        except KeyError:
            raise ChecksumError(f"{remote.url} ne contient pas {remote.member}.") from None
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out, archive.open(info) as src:
                shutil.copyfileobj(src, out)
            verify(Path(tmp), remote)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    part.unlink()
