"""GPT-2 weights through huggingface_hub against a local Hub, with faults injected.

The local server answers what ``hf_hub_download`` asks for a pinned revision: a HEAD
then a GET of ``/{repo}/resolve/{revision}/{filename}``, with the ``X-Repo-Commit``
and ``ETag`` headers. ``GPT2_CHECKPOINTS`` is pointed at a small file (its SHA-256
and size), so the real verification code runs on it; ``huggingface_hub``'s own
back-off sleeps are recorded instead of waited.

Faults: Hub unreachable; HTTP 503 on every HEAD; HTTP 503 once; HTTP 404; connection
cut mid-file; wrong bytes served (twice, then fixed); cached copy corrupted on disk
(online and offline); two threads at once; manual file (TP3_GPT2_WEIGHTS) with
wrong bytes, changed after verification, a folder, missing.
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time

import huggingface_hub.constants
import pytest
import torch
from safetensors.torch import save

from http_server import FileServer, Route
from lab_utils import weights
from lab_utils.errors import ChecksumError, DownloadError
from lab_utils.weights import GPT2_CHECKPOINTS, HubCheckpoint, download_gpt2_weights

REVISION = "0123456789abcdef0123456789abcdef01234567"
REPO, FILE = "openai-community/gpt2", "model.safetensors"
HUB_PATH = f"/{REPO}/resolve/{REVISION}/{FILE}"
BODY = save({"w": torch.arange(16384, dtype=torch.float32)})  # a valid safetensors file of 64 kB


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _pin(monkeypatch, body: bytes) -> HubCheckpoint:
    ckpt = HubCheckpoint(REPO, FILE, REVISION, hashlib.sha256(body).hexdigest(), len(body))
    monkeypatch.setitem(GPT2_CHECKPOINTS, "gpt2-small", ckpt)
    return ckpt


def _hub_route(body: bytes = BODY, **kwargs) -> Route:
    """What the Hub answers for an LFS file: the commit and the file's SHA-256 as ETag."""
    etag = hashlib.sha256(BODY).hexdigest()  # the Hub's claim, whatever bytes follow
    return Route(body, headers={"X-Repo-Commit": REVISION, "ETag": f'"{etag}"'}, **kwargs)


@pytest.fixture
def sleeps(monkeypatch):
    """huggingface_hub's back-off sleeps, recorded instead of waited."""
    delays = []
    monkeypatch.setattr(time, "sleep", delays.append)
    return delays


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # conftest sets offline
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TP3_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TP3_GPT2_WEIGHTS", raising=False)
    _pin(monkeypatch, BODY)
    with FileServer() as server:
        server.routes[HUB_PATH] = _hub_route()
        monkeypatch.setenv("HF_ENDPOINT", server.base_url)
        yield server


def _gets(server) -> list:
    return [r for r in server.requests if r.method == "GET"]


def test_download_is_verified_then_served_from_the_cache(hub, tmp_path):
    path = download_gpt2_weights()
    assert path.read_bytes() == BODY and (tmp_path / "hub") in path.parents
    assert (hub.count(HUB_PATH, "HEAD"), hub.count(HUB_PATH)) == (1, 1)
    assert download_gpt2_weights() == path  # pinned revision in the cache: no request
    assert download_gpt2_weights(offline=True) == path
    assert len(hub.requests) == 2


def test_end_to_end_download_and_load_matches_transformers(hub, tmp_path, monkeypatch):
    from hf_reference import matching_config, tiny_hf_model, write_published_checkpoint
    from lab_utils.weights import load_pretrained_gpt2

    hf_model = tiny_hf_model(seed=3)
    body = write_published_checkpoint(hf_model, tmp_path / "published").read_bytes()
    _pin(monkeypatch, body)
    hub.routes[HUB_PATH] = Route(body, headers={"X-Repo-Commit": REVISION,
                                                "ETag": f'"{hashlib.sha256(body).hexdigest()}"'})
    model = load_pretrained_gpt2("gpt2-small", cfg=matching_config(hf_model))
    x = torch.randint(0, hf_model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(x) - hf_model(x).logits).abs().max() <= 1e-4


def test_hub_unreachable_gives_manual_steps(tmp_path, monkeypatch, sleeps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed once the block ends
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("TP3_GPT2_WEIGHTS", raising=False)
    ckpt = _pin(monkeypatch, BODY)
    with pytest.raises(DownloadError) as err:
        download_gpt2_weights(offline=False, endpoint=endpoint)
    message = str(err.value)
    for part in (f"introuvables sur {endpoint}", "Étapes manuelles", ckpt.url_at(endpoint),
                 "TP3_GPT2_WEIGHTS=/chemin/vers/model.safetensors", "python -m lab_utils prefetch"):
        assert part in message
    assert sleeps and sleeps == sorted(sleeps)  # retried with a growing back-off
    assert not list((tmp_path / "hub").rglob("*.safetensors"))


def test_persistent_server_error_is_retried_with_backoff_then_reported(hub, tmp_path, sleeps, capfd):
    hub.routes[HUB_PATH] = _hub_route(head_failures=[503] * 50)
    with pytest.raises(DownloadError, match="Étapes manuelles"):
        download_gpt2_weights()
    out, err = capfd.readouterr()  # the retries print nothing (huggingface_hub logs them in English)
    assert "Retry" not in out + err and "thrown while requesting" not in out + err
    assert hub.count(HUB_PATH, "HEAD") >= 3 and hub.count(HUB_PATH) == 0
    assert len(sleeps) >= 2 and sleeps == sorted(sleeps) and sleeps[-1] > sleeps[0]
    assert not list((tmp_path / "hub").rglob("*.safetensors"))


def test_one_server_error_is_retried(hub):
    hub.routes[HUB_PATH] = _hub_route(head_failures=[503])
    assert download_gpt2_weights().read_bytes() == BODY
    assert hub.count(HUB_PATH, "HEAD") == 2


def test_missing_file_is_reported(hub, tmp_path):
    del hub.routes[HUB_PATH]
    with pytest.raises(DownloadError, match="introuvables sur .*HTTP 404"):
        download_gpt2_weights()
    assert hub.count(HUB_PATH, "HEAD") == 1 and hub.count(HUB_PATH) == 0  # not retried


def test_cut_connection_resumes_with_range(hub, sleeps, monkeypatch):
    # huggingface_hub writes (and resumes from) whole chunks of DOWNLOAD_CHUNK_SIZE, 10 MB by
    # default; 8 kB chunks let a 64 kB file show the resumption.
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 8192)
    hub.routes[HUB_PATH] = _hub_route(cut_after=30_000)
    assert download_gpt2_weights().read_bytes() == BODY
    gets = _gets(hub)
    assert len(gets) == 2 and gets[0].range is None
    offset = int(gets[1].range.removeprefix("bytes=").removesuffix("-"))
    assert 0 < offset <= 30_000  # only the rest was fetched again


def test_wrong_bytes_are_downloaded_once_more_then_reported(hub, tmp_path, capsys):
    hub.routes[HUB_PATH] = _hub_route(_flip(BODY, 40_000))
    with pytest.raises(ChecksumError) as err:
        download_gpt2_weights()
    assert "Poids GPT-2 du cache corrompus" in capsys.readouterr().out
    message = str(err.value)
    assert "SHA-256 attendu" in message and "ne correspond toujours pas" in message
    assert "TP3_GPT2_WEIGHTS" in message and len(_gets(hub)) == 2
    hub.routes[HUB_PATH] = _hub_route()  # the mirror is fixed: no need to clear the cache by hand
    assert download_gpt2_weights().read_bytes() == BODY
    assert "corrompus" in capsys.readouterr().out
    assert len(_gets(hub)) == 3


def _corrupt_cached_copy(path):
    blob = path.resolve()  # the snapshot entry links to the blob
    blob.write_bytes(_flip(blob.read_bytes(), 100))
    return blob


def test_corrupt_cached_copy_is_downloaded_again(hub, capsys):
    path = download_gpt2_weights()
    _corrupt_cached_copy(path)
    again = download_gpt2_weights()
    out, err = capsys.readouterr()
    assert "Poids GPT-2 du cache corrompus" in out and err == ""
    assert again.read_bytes() == BODY and len(_gets(hub)) == 2


def test_corrupt_cached_copy_offline_is_reported_not_deleted(hub):
    path = download_gpt2_weights()
    blob = _corrupt_cached_copy(path)
    corrupt = blob.read_bytes()
    with pytest.raises(ChecksumError, match="Relancez avec internet"):
        download_gpt2_weights(offline=True)
    assert blob.read_bytes() == corrupt and len(hub.requests) == 2


def test_two_threads_download_once(hub):
    hub.routes[HUB_PATH] = _hub_route(chunk_delay=0.01)  # 64 chunks: about 0.6 s
    barrier, paths, errors = threading.Barrier(2), [], []

    def worker():
        barrier.wait()
        try:
            paths.append(download_gpt2_weights())
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(paths) == 2 and paths[0] == paths[1]
    assert paths[0].read_bytes() == BODY and len(_gets(hub)) == 1


# ----------------------------------------------------------------------------- a file given by hand

@pytest.fixture
def manual(tmp_path, monkeypatch):
    monkeypatch.setenv("TP3_CACHE_DIR", str(tmp_path / "cache"))
    _pin(monkeypatch, BODY)
    path = tmp_path / "downloads" / FILE
    path.parent.mkdir()
    monkeypatch.setenv("TP3_GPT2_WEIGHTS", str(path))
    return path


def test_manual_file_is_verified_and_used_as_is(manual):
    manual.write_bytes(BODY)
    assert download_gpt2_weights() == manual
    assert (weights.cache_dir() / "verified" / f"{hashlib.sha256(BODY).hexdigest()}.ok").is_file()


def test_manual_file_with_wrong_bytes_is_reported_never_touched(manual):
    bad = _flip(BODY, 7)
    manual.write_bytes(bad)
    with pytest.raises(ChecksumError, match="SHA-256 attendu") as err:
        download_gpt2_weights()
    assert manual.read_bytes() == bad
    # Such a file is never downloaded: the message must not promise it will be.
    assert "retéléchargé" not in str(err.value)
    assert "jamais" in str(err.value) and "remplacez-le" in str(err.value)


def test_manual_file_changed_after_verification_is_caught(manual):
    manual.write_bytes(BODY)
    download_gpt2_weights()  # leaves a stamp
    time.sleep(0.01)
    manual.write_bytes(_flip(BODY, 9))  # same size, new content
    with pytest.raises(ChecksumError, match="SHA-256 attendu"):
        download_gpt2_weights()


@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_manual_path_that_is_not_a_file(manual, kind):
    if kind == "folder":
        manual.mkdir()
    with pytest.raises(DownloadError) as err:
        download_gpt2_weights()
    expected = "c'est un dossier" if kind == "folder" else "fichier introuvable"
    assert expected in str(err.value) and f"{len(BODY):,} octets".replace(",", "\u202f") in str(err.value)
