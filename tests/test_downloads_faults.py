"""Faults injected into lab_utils.download.fetch and sms_spam_path, against a local server.

Every test serves files from 127.0.0.1 (tests/http_server.py), injects one kind of
fault and checks three things: the outcome (verified file, or a French error that
says what is missing and what to do), the number of requests the server saw, and
that no unverified file is ever visible under the final name.

Faults (one per test or per parameter): connection refused; HTTP 408, 429, 500, 502,
503, 504 (retried); HTTP 400, 401, 403, 404, 410 (not retried); persistent 503;
garbage instead of HTTP; connection cut mid-body (server honours Range / ignores it);
stall; truncated file; wrong bytes (same size); wrong bytes once, then right; HTML
page instead of the zip; zip with a bad CRC; zip without the member; stale .part of
another version; .part already complete (416); process killed mid-download; disk
full (RLIMIT_FSIZE); two threads and two processes at once; lock held by another
process; corrupt file in our cache; corrupt file in the user's folder; 503 then a
cut on the SMS archive; data folder under a file, or read-only (skipped as root);
tokenizer files cut and 503, or unreachable. Also two bad settings: TP3_DATA_DIR
and TP3_CACHE_DIR naming a file.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import random
import signal
import socket
import threading
import time
import zipfile
from dataclasses import asdict, replace

import pytest
from filelock import FileLock

import download_worker
from http_server import FileServer, Route
from lab_utils import data as data_module
from lab_utils.data import SMS_SPAM, sms_spam_path
from lab_utils.download import RemoteFile, fetch, sha256sum
from lab_utils.errors import ChecksumError, ConfigError, DownloadError

PAYLOAD = random.Random(0).randbytes(256 * 1024)  # 4 reads of 64 KiB
PATH = "/files/payload.bin"


def _remote(server, path=PATH, body=PAYLOAD, **changes) -> RemoteFile:
    remote = RemoteFile(url=server.url(path), filename="payload.bin",
                        sha256=hashlib.sha256(body).hexdigest(), size=len(body), env_var="TP3_DATA_DIR")
    return replace(remote, **changes)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _visible(folder) -> list[str]:
    """Files a user would see (the lock file aside)."""
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


def _fetch(remote, folder, **kwargs):
    kwargs = {"retries": 3, "backoff": 0.01, "timeout": 5, "progress": False, **kwargs}
    return fetch(remote, folder, **kwargs)


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


# ----------------------------------------------------------------------------- network down, HTTP errors

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_retries_with_backoff_then_gives_manual_steps(tmp_path):
    remote = RemoteFile(f"http://127.0.0.1:{_closed_port()}/sms.zip", "SMSSpamCollection", SMS_SPAM.sha256,
                        member="SMSSpamCollection", env_var="TP3_DATA_DIR")
    delays = []
    with pytest.raises(DownloadError) as err:
        fetch(remote, tmp_path, retries=3, backoff=0.5, progress=False, sleep=delays.append)
    assert delays == [0.5, 1.0, 2.0]  # 4 attempts, exponential back-off between them
    message = str(err.value)
    for part in ("après 4 tentatives", "Vérifiez la connexion internet", "Étapes manuelles", remote.url,
                 "copiez le fichier SMSSpamCollection", str(tmp_path), "TP3_DATA_DIR"):
        assert part in message
    assert _visible(tmp_path) == []


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_http_errors_are_retried(server, tmp_path, status):
    server.routes[PATH] = Route(PAYLOAD, failures=[status, status])
    delays = []
    path = _fetch(_remote(server), tmp_path, backoff=0.25, sleep=delays.append)
    assert path.read_bytes() == PAYLOAD
    assert server.count(PATH) == 3 and delays == [0.25, 0.5]


def test_persistent_server_error_gives_up_after_all_attempts(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD, failures=[503] * 10)
    delays = []
    with pytest.raises(DownloadError, match="après 3 tentatives.*503") as err:
        _fetch(_remote(server), tmp_path, retries=2, sleep=delays.append)
    assert not isinstance(err.value, ChecksumError)
    assert server.count(PATH) == 3 and len(delays) == 2
    assert _visible(tmp_path) == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
def test_client_errors_are_reported_at_once(server, tmp_path, status):
    server.routes[PATH] = Route(PAYLOAD, failures=[status])
    delays = []
    with pytest.raises(DownloadError) as err:
        _fetch(_remote(server), tmp_path, sleep=delays.append)
    message = str(err.value)
    assert f"HTTP {status}" in message and "réessayer n'y changera rien" in message
    assert "Étapes manuelles" in message and server.url(PATH) in message
    assert server.count(PATH) == 1 and delays == []
    assert _visible(tmp_path) == []


def test_garbage_instead_of_http_is_retried(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD, raw_failures=[b"SSH-2.0-OpenSSH\r\n\r\n", b"\x00\xff garbage\r\n\r\n"])
    path = _fetch(_remote(server), tmp_path)
    assert sha256sum(path) == hashlib.sha256(PAYLOAD).hexdigest()
    assert server.count(PATH) == 3


# ----------------------------------------------------------------------------- interrupted transfers

def test_cut_connection_resumes_with_range(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD, cut_after=100_000)
    path = _fetch(_remote(server), tmp_path)
    assert path.read_bytes() == PAYLOAD
    gets = [r for r in server.requests if r.method == "GET"]
    assert [r.range for r in gets] == [None, "bytes=100000-"]  # the second one fetched only the rest
    assert _visible(tmp_path) == ["payload.bin"]


def test_cut_connection_restarts_cleanly_when_server_ignores_range(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD, cut_after=100_000, support_range=False)
    path = _fetch(_remote(server), tmp_path)
    assert path.read_bytes() == PAYLOAD  # not the first 100,000 bytes twice
    assert [r.range for r in server.requests] == [None, "bytes=100000-"]


def test_stall_times_out_resumes_and_no_partial_file_is_visible(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD, stall_after=65_536, stall_seconds=10)  # one whole read of 64 KiB
    dest, part = tmp_path / "payload.bin", tmp_path / ".payload.bin.part"
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("path", _fetch(_remote(server), tmp_path, timeout=0.5)))
    start = time.monotonic()
    worker.start()
    seen_partial = False
    while worker.is_alive():
        if part.exists() and 0 < part.stat().st_size < len(PAYLOAD):
            seen_partial = True
            assert not dest.exists(), "a partial download is visible under the final name"
        time.sleep(0.01)
    worker.join()
    assert seen_partial and result["path"].read_bytes() == PAYLOAD
    assert time.monotonic() - start < 5  # the stall (10 s) was cut by the timeout (0.5 s), not waited out
    assert [r.range for r in server.requests] == [None, "bytes=65536-"]


def test_killed_download_leaves_no_file_and_resumes(server, tmp_path):
    """A kernel restarted mid-download: only the .part remains, and the next fetch resumes it."""
    server.routes[PATH] = Route(PAYLOAD, stall_after=131_072, stall_seconds=30)  # two reads of 64 KiB
    remote = _remote(server)
    part = tmp_path / ".payload.bin.part"
    child = multiprocessing.get_context("spawn").Process(
        target=download_worker.fetch_forever, args=(asdict(remote), str(tmp_path)))
    child.start()
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size == 131_072) and time.monotonic() < deadline:
        time.sleep(0.02)
    child.kill()
    child.join()
    assert part.stat().st_size == 131_072 and not (tmp_path / "payload.bin").exists()
    path = _fetch(remote, tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert server.requests[-1].range == "bytes=131072-"


def test_complete_part_file_is_finished_without_downloading_again(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD)
    (tmp_path / ".payload.bin.part").write_bytes(PAYLOAD)
    assert _fetch(_remote(server), tmp_path).read_bytes() == PAYLOAD
    assert [r.range for r in server.requests] == [f"bytes={len(PAYLOAD)}-"]  # answered 416
    assert _visible(tmp_path) == ["payload.bin"]


def test_disk_full_is_reported_at_once_and_the_part_resumes_later(server, tmp_path):
    resource = pytest.importorskip("resource")  # POSIX
    server.routes[PATH] = Route(PAYLOAD)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, old_limit[1]))  # files stop growing at 100 kB
    try:
        with pytest.raises(DownloadError, match="Impossible d'écrire .*Libérez de la place") as err:
            _fetch(_remote(server), tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert "TP3_DATA_DIR" in str(err.value)
    assert server.count(PATH) == 1  # not retried: the network was fine
    assert not (tmp_path / "payload.bin").exists()
    assert _fetch(_remote(server), tmp_path).read_bytes() == PAYLOAD  # nothing lost: it resumes
    assert server.requests[-1].range == "bytes=100000-"


# ----------------------------------------------------------------------------- wrong bytes

def test_truncated_file_is_rejected_and_discarded(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD[:-1000])  # the server itself has a truncated copy
    with pytest.raises(ChecksumError) as err:
        _fetch(_remote(server), tmp_path, retries=1)
    message = str(err.value)
    assert "taille attendue 262\u202f144 octets, obtenu 261\u202f144" in message  # 256 KiB, French digits
    assert "proxy" in message and "Étapes manuelles" in message
    assert server.count(PATH) == 2 and _visible(tmp_path) == []  # no final file, no .part


def test_wrong_bytes_of_the_right_size_are_rejected(server, tmp_path):
    server.routes[PATH] = Route(_flip(PAYLOAD, 12345))
    with pytest.raises(ChecksumError, match="SHA-256 attendu"):
        _fetch(_remote(server), tmp_path, retries=0)
    assert _visible(tmp_path) == []


def test_wrong_bytes_once_then_a_clean_restart(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD, bodies=[_flip(PAYLOAD, 5)])
    assert _fetch(_remote(server), tmp_path).read_bytes() == PAYLOAD
    assert [r.range for r in server.requests] == [None, None]  # restarted, not resumed


def test_stale_part_of_another_version_is_discarded(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD)
    (tmp_path / ".payload.bin.part").write_bytes(b"old version " * 1000)
    assert _fetch(_remote(server), tmp_path).read_bytes() == PAYLOAD
    assert [r.range for r in server.requests] == ["bytes=12000-", None]  # resumed, failed the check, restarted


def test_corrupt_zip_restarts(server, tmp_path, sms_zip):
    captive_portal = b"<html><body>Connectez-vous au Wi-Fi</body></html>"
    bad_crc = _flip(sms_zip, 1000)  # inside the member's data: the CRC no longer matches
    server.routes["/sms.zip"] = Route(sms_zip, bodies=[captive_portal, bad_crc])
    path = _fetch(replace(SMS_SPAM, url=server.url("/sms.zip")), tmp_path)
    assert sha256sum(path) == SMS_SPAM.sha256
    assert [r.range for r in server.requests] == [None, None, None]
    assert _visible(tmp_path) == ["SMSSpamCollection"]


def test_zip_without_the_member_is_rejected(server, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("something-else.txt", "hello")
    server.routes["/sms.zip"] = Route(buffer.getvalue())
    with pytest.raises(ChecksumError, match="ne contient pas SMSSpamCollection"):
        _fetch(replace(SMS_SPAM, url=server.url("/sms.zip")), tmp_path, retries=0)
    assert _visible(tmp_path) == []


# ----------------------------------------------------------------------------- concurrent downloads

def test_two_threads_download_once(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD, chunk_delay=0.003)  # about 0.8 s per download
    barrier, paths = threading.Barrier(2), []

    def worker():
        barrier.wait()
        paths.append(_fetch(_remote(server), tmp_path))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(paths) == 2 and paths[0] == paths[1]
    assert paths[0].read_bytes() == PAYLOAD
    assert server.count(PATH) == 1


def test_two_processes_download_once(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD, chunk_delay=0.004)  # about 1 s per download
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    children = [ctx.Process(target=download_worker.fetch_in_child, args=(asdict(_remote(server)), str(tmp_path), barrier, results))
                for _ in range(2)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=10)
    assert [o[:2] for o in outcomes] == [("ok", hashlib.sha256(PAYLOAD).hexdigest())] * 2, outcomes
    assert server.count(PATH) == 1
    assert max(o[2] for o in outcomes) > 0.5  # the second one really waited for the first
    assert _visible(tmp_path) == ["payload.bin"]


def test_lock_held_too_long_is_reported(server, tmp_path):
    server.routes[PATH] = Route(PAYLOAD)
    with FileLock(str(tmp_path / ".payload.bin.lock")):
        result = {}
        t = threading.Thread(target=lambda: result.update(err=_catch(lambda: _fetch(
            _remote(server), tmp_path, lock_timeout=0.2))))
        t.start()
        t.join()
    assert isinstance(result["err"], DownloadError)
    assert "Un autre processus télécharge" in str(result["err"])
    assert server.count(PATH) == 0


def _catch(f):
    try:
        f()
    except Exception as err:
        return err
    return None


# ----------------------------------------------------------------------------- files already there

def _sms_env(monkeypatch, server, tmp_path, sms_zip, user_folder: bool):
    server.routes["/sms.zip"] = Route(sms_zip)
    monkeypatch.setattr(data_module, "SMS_SPAM", replace(SMS_SPAM, url=server.url("/sms.zip")))
    if user_folder:
        monkeypatch.setenv("TP3_DATA_DIR", str(tmp_path / "mine"))
        folder = tmp_path / "mine"
    else:
        monkeypatch.delenv("TP3_DATA_DIR")
        monkeypatch.setenv("TP3_CACHE_DIR", str(tmp_path / "cache"))
        folder = tmp_path / "cache" / "data"
    folder.mkdir(parents=True)
    return folder


def test_corrupt_file_in_our_cache_is_moved_aside_and_downloaded_again(server, tmp_path, monkeypatch, shared, sms_zip,
                                                                        capsys):
    folder = _sms_env(monkeypatch, server, tmp_path, sms_zip, user_folder=False)
    corrupt = (shared / "data" / "SMSSpamCollection").read_bytes()[:-500]
    (folder / "SMSSpamCollection").write_bytes(corrupt)
    path = sms_spam_path(retries=0, progress=False)
    out, err = capsys.readouterr()  # a French notice on stdout, nothing on stderr (no English warning line)
    assert "était corrompu (SHA-256 différent) : déplacé vers" in out and err == ""
    assert path == folder / "SMSSpamCollection" and sha256sum(path) == SMS_SPAM.sha256
    assert (folder / ".SMSSpamCollection.corrupt").read_bytes() == corrupt  # kept for diagnosis
    assert server.count("/sms.zip") == 1
    sms_spam_path(progress=False)  # verified now: no second download
    assert server.count("/sms.zip") == 1


def test_corrupt_file_in_the_users_folder_is_reported_never_touched(server, tmp_path, monkeypatch, shared, sms_zip):
    folder = _sms_env(monkeypatch, server, tmp_path, sms_zip, user_folder=True)
    theirs = (shared / "data" / "SMSSpamCollection").read_bytes().replace(b"Go until", b"Go untIl", 1)
    (folder / "SMSSpamCollection").write_bytes(theirs)
    with pytest.raises(ChecksumError, match="SHA-256 attendu 7d039a24"):
        sms_spam_path(progress=False)
    assert (folder / "SMSSpamCollection").read_bytes() == theirs
    assert _visible(folder) == ["SMSSpamCollection"] and server.count("/sms.zip") == 0


def test_sms_download_into_an_empty_cache_survives_faults(server, tmp_path, monkeypatch, sms_zip):
    folder = _sms_env(monkeypatch, server, tmp_path, sms_zip, user_folder=False)
    server.routes["/sms.zip"] = Route(sms_zip, failures=[503], cut_after=200_000)
    path = sms_spam_path(progress=False, backoff=0.01)
    assert sha256sum(path) == SMS_SPAM.sha256 and _visible(folder) == ["SMSSpamCollection"]
    assert [r.range for r in server.requests] == [None, None, "bytes=200000-"]


# ----------------------------------------------------------------------------- bad folders

@pytest.mark.parametrize("variable", ["TP3_DATA_DIR", "TP3_CACHE_DIR"])
def test_folder_variable_naming_a_file_is_refused(tmp_path, monkeypatch, variable):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    monkeypatch.setenv(variable, str(a_file))
    if variable == "TP3_CACHE_DIR":
        monkeypatch.delenv("TP3_DATA_DIR")  # so that the data folder is under the cache folder
    with pytest.raises(ConfigError) as err:
        sms_spam_path(progress=False)
    assert f"{variable} doit désigner un dossier, obtenu {str(a_file)!r}" in str(err.value)
    assert a_file.read_text() == "not a folder"


def test_data_folder_that_cannot_be_created(server, tmp_path, monkeypatch, sms_zip):
    _sms_env(monkeypatch, server, tmp_path, sms_zip, user_folder=True)
    (tmp_path / "a-file").write_text("x")
    monkeypatch.setenv("TP3_DATA_DIR", str(tmp_path / "a-file" / "data"))
    with pytest.raises(DownloadError, match="Impossible d'écrire dans .*a-file/data.*Étapes manuelles"):
        sms_spam_path(progress=False)
    assert server.count("/sms.zip") == 0


@pytest.mark.skipif(getattr(os, "geteuid", lambda: 1)() == 0, reason="root can write into a read-only folder")
def test_read_only_data_folder(server, tmp_path, monkeypatch, sms_zip):
    folder = _sms_env(monkeypatch, server, tmp_path, sms_zip, user_folder=True)
    folder.chmod(0o555)
    try:
        with pytest.raises(DownloadError, match="Impossible d'écrire"):
            sms_spam_path(progress=False)
    finally:
        folder.chmod(0o755)


# ----------------------------------------------------------------------------- tokenizer files

@pytest.fixture
def tiktoken_env(tmp_path, monkeypatch, server, shared):
    """The tokenizer's two files served locally, an empty cache, tiktoken's registry cleared."""
    import tiktoken.registry

    from lab_utils import tokenizer

    files = []
    for remote in tokenizer.TIKTOKEN_FILES:
        path = "/tiktoken/" + remote.url.rsplit("/", 1)[1]
        server.routes[path] = Route((shared / "tiktoken_cache" / remote.filename).read_bytes())
        files.append(replace(remote, url=server.url(path)))
    monkeypatch.setattr(tokenizer, "TIKTOKEN_FILES", tuple(files))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    return tokenizer.get_tokenizer.__wrapped__  # without lru_cache


def test_tokenizer_files_are_fetched_with_retries_and_resume(server, tiktoken_env, tokenizer, monkeypatch, tmp_path):
    delays = []
    monkeypatch.setattr(time, "sleep", delays.append)
    server.routes["/tiktoken/vocab.bpe"].cut_after = 200_000
    server.routes["/tiktoken/encoder.json"].failures = [503]
    fresh = tiktoken_env()
    text = "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005 😀"
    assert fresh.encode_ordinary(text) == tokenizer.encode_ordinary(text)
    assert [r.range for r in server.requests if r.path == "/tiktoken/vocab.bpe"] == [None, "bytes=200000-"]
    assert server.count("/tiktoken/encoder.json") == 2 and delays == [1.0, 1.0]


def test_tokenizer_offline_says_which_files_to_put_where(tiktoken_env, monkeypatch, tmp_path):
    from lab_utils import tokenizer

    port = _closed_port()
    monkeypatch.setattr(tokenizer, "TIKTOKEN_FILES", tuple(
        replace(f, url=f"http://127.0.0.1:{port}/{f.filename}") for f in tokenizer.TIKTOKEN_FILES))
    delays = []
    monkeypatch.setattr(time, "sleep", delays.append)
    with pytest.raises(DownloadError) as err:
        tiktoken_env()
    message = str(err.value)
    first = tokenizer.TIKTOKEN_FILES[0]
    for part in ("Impossible de charger le tokenizer GPT-2", "après 5 tentatives", "Étapes manuelles",
                 f"copiez-le sous le nom {first.filename} dans {tmp_path / 'tiktoken'}", "TIKTOKEN_CACHE_DIR"):
        assert part in message
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert _visible(tmp_path / "tiktoken") == []
