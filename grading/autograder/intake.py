"""What of a submission is taken in: the expected files only, as plain files, within limits.

A submission is two notebooks and the run folder (:data:`EXPECTED`). Whatever else an
archive or a submission folder holds (other files, folders, links, devices, nested
archives) is left out and listed, never extracted or followed. Files are written by this
code alone, under names it chooses (never an entry's path), as regular files with modes
0644 (folders 0755): no path from a student reaches the file system, no setuid bit
survives. Sizes are counted on the bytes actually read, not on what an archive declares,
so a zip bomb stops at the first cap it reaches.
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

NOTEBOOKS = ("tp3_partie1.ipynb", "tp3_partie2.ipynb")
RUN_FILES = ("tp3_run/adapter.safetensors", "tp3_run/history.json", "tp3_run/run.json")
EXPECTED = NOTEBOOKS + RUN_FILES
CHUNK = 1 << 16


@dataclass(frozen=True)
class Limits:
    """Caps on what one submission may bring in (sizes in MB)."""

    archive_mb: int = 200  # the archive file itself
    entries: int = 1000  # entries listed in an archive
    total_mb: int = 100  # all files kept (nbgrader's own cap on a submission)
    notebook_mb: int = 25
    adapter_mb: int = 64  # GPT-2 small's adapter is about 5 MB
    json_mb: int = 8
    ratio: int = 200  # uncompressed / compressed size of one entry

    def file_cap(self, name: str) -> int:
        if name.endswith(".ipynb"):
            return self.notebook_mb << 20
        if name.endswith(".safetensors"):
            return self.adapter_mb << 20
        return self.json_mb << 20


class Refused(Exception):
    """The whole archive or folder is unusable (the reason is the message)."""


@dataclass
class Intake:
    """What was taken in (expected names), left out and refused, with reasons."""

    kept: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "name: why"

    def summary(self) -> str:
        parts = [f"{len(self.kept)} file(s) kept"]
        if self.ignored:
            parts.append(f"ignored {_short(self.ignored)}")
        if self.refused:
            parts.append(f"refused {_short(self.refused)}")
        return "; ".join(parts)


def _short(items: list[str], n: int = 6) -> str:
    shown = ", ".join(repr(i[:80]) for i in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def expected_name(path: str) -> str | None:
    """The expected file an entry path stands for, at the top level or inside one folder
    (``tp3_run/history.json``, ``TP3 rendu/tp3_run/history.json``), else None."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or parts[0] == "__MACOSX":
        return None
    for start in (0, 1):
        name = "/".join(parts[start:])
        if name in EXPECTED:
            return name
    return None


def _write(dest: Path, name: str, chunks, cap: int, what: str) -> int:
    """Write ``chunks`` to ``dest/name`` (0644, new file), stopping past ``cap`` bytes."""
    path = dest / name
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    os.fchmod(fd, 0o644)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > cap:
                    raise Refused(f"{what} is larger than {cap >> 20} MB")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return size


def _pick(names: dict[str, list[str]], intake: Intake) -> dict[str, str]:
    """One source per expected name: the shallowest; two at the same depth are ambiguous."""
    chosen = {}
    for name, sources in names.items():
        depth = min(s.count("/") for s in sources)
        best = [s for s in sources if s.count("/") == depth]
        if len(best) > 1:
            intake.refused.append(f"{name}: found {len(best)} times ({_short(best, 3)})")
            continue
        chosen[name] = best[0]
        intake.ignored += [s for s in sources if s != best[0]]
    return chosen


def extract_zip(archive: Path, dest: Path, limits: Limits = Limits()) -> Intake:
    """Extract the expected files of ``archive`` into ``dest`` (a new, empty folder)."""
    size = archive.stat().st_size
    if size > limits.archive_mb << 20:
        raise Refused(f"the archive is larger than {limits.archive_mb} MB")
    intake = Intake()
    try:
        with zipfile.ZipFile(archive) as z:
            infos = z.infolist()
            if len(infos) > limits.entries:
                raise Refused(f"the archive lists {len(infos)} entries (at most {limits.entries})")
            names: dict[str, list[str]] = {}
            by_name = {}
            for info in infos:
                mode = info.external_attr >> 16
                name = expected_name(info.filename)
                if info.is_dir():
                    continue
                if name is None:
                    intake.ignored.append(info.filename)
                elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                    intake.refused.append(f"{info.filename}: not a regular file")
                elif info.flag_bits & 0x1:
                    intake.refused.append(f"{info.filename}: encrypted")
                else:
                    names.setdefault(name, []).append(info.filename)
                    by_name[info.filename] = info
            total = 0
            for name, source in sorted(_pick(names, intake).items()):
                info = by_name[source]
                cap = limits.file_cap(name)
                if info.file_size > cap:
                    intake.refused.append(f"{source}: {info.file_size >> 20} MB, at most {cap >> 20} MB")
                    continue
                ratio_cap = max(CHUNK, info.compress_size * limits.ratio)
                try:
                    with z.open(info) as stream:
                        chunks = iter(lambda: stream.read(CHUNK), b"")
                        total += _write(dest, name, chunks, min(cap, ratio_cap, (limits.total_mb << 20) - total),
                                        f"{source} (uncompressed)")
                except Refused as err:
                    intake.refused.append(f"{source}: {err} (or compressed more than {limits.ratio}:1)")
                    continue
                except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError,
                        RuntimeError, ValueError) as err:
                    intake.refused.append(f"{source}: unreadable ({type(err).__name__}: {str(err)[:100]})")
                    (dest / name).unlink(missing_ok=True)
                    continue
                intake.kept.append(name)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as err:
        raise Refused(f"not a readable zip archive ({type(err).__name__}: {str(err)[:100]})") from None
    return intake


def copy_submission(folder: Path, dest: Path, limits: Limits = Limits(), names: tuple[str, ...] = EXPECTED) -> Intake:
    """Copy the files ``names`` (default: all expected files) of a submission folder into
    ``dest`` (a new, empty folder): regular files only (a link is never followed), within
    the size caps; what else the folder holds is listed as ignored."""
    intake = Intake()
    if folder.is_symlink() or not folder.is_dir():
        raise Refused(f"{folder.name} is not a folder")
    total = 0
    for name in names:
        path = folder / name
        if path.parent.is_symlink():
            intake.refused.append(f"{name}: inside a link")
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            continue
        except OSError as err:
            intake.refused.append(f"{name}: {'a link' if path.is_symlink() else err.strerror}")
            continue
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                intake.refused.append(f"{name}: not a regular file")
                continue
            try:
                total += _write(dest, name, iter(lambda: src.read(CHUNK), b""),
                                min(limits.file_cap(name), (limits.total_mb << 20) - total), name)
            except Refused as err:
                intake.refused.append(f"{name}: {err}")
                continue
        intake.kept.append(name)
    for top, dirs, files in os.walk(folder):  # never follows links
        for name in sorted(dirs + files):
            rel = os.path.relpath(os.path.join(top, name), folder)
            if rel not in EXPECTED + ("tp3_run", "timestamp.txt", "submission_secret.txt"):
                intake.ignored.append(rel)
        if len(intake.ignored) > limits.entries:
            break
        dirs[:] = [d for d in dirs if d == "tp3_run" and top == str(folder)]
    return intake
