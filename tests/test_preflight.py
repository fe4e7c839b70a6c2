"""lab_utils.preflight: what the lab needs, checked without any network, every missing piece
listed with what provides it (python -m lab_utils check / prefetch)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys

import pytest

from http_server import FileServer, Route


@pytest.fixture
def lab_env(tmp_path, shared, monkeypatch):
    """Data and tokenizer copied into tmp folders named by the variables; an empty cache."""
    (tmp_path / "data").mkdir()
    shutil.copy2(shared / "data" / "SMSSpamCollection", tmp_path / "data")
    shutil.copytree(shared / "tiktoken_cache", tmp_path / "tiktoken")
    monkeypatch.setenv("TP3_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))
    monkeypatch.setenv("TP3_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TP3_GPT2_WEIGHTS", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Any connection attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network used: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _by_name(pieces):
    return {p.name: p for p in pieces}


def test_ci_profile_needs_only_data_and_tokenizer(lab_env, no_network):
    from lab_utils.preflight import check

    pieces = check("ci")
    assert [p.kind for p in pieces] == ["data", "tokenizer", "tokenizer"]
    assert all(p.ok for p in pieces), [p.problem for p in pieces]
    assert pieces[0].path == lab_env / "data" / "SMSSpamCollection"
    # the tokenizer files under the SHA-1 of their URLs, as tiktoken looks for them
    urls = ["https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
            "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json"]
    assert [p.path for p in pieces[1:]] == [lab_env / "tiktoken" / hashlib.sha1(u.encode()).hexdigest() for u in urls]


def test_everything_missing_is_listed_with_its_fixes(tmp_path, monkeypatch, no_network):
    from lab_utils.preflight import check, report

    for name, folder in (("TP3_DATA_DIR", "d"), ("TIKTOKEN_CACHE_DIR", "t"), ("TP3_CACHE_DIR", "c")):
        monkeypatch.setenv(name, str(tmp_path / folder))
    monkeypatch.delenv("TP3_GPT2_WEIGHTS", raising=False)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    pieces = check("full")
    assert [(p.kind, p.ok) for p in pieces] == [("data", False), ("tokenizer", False), ("tokenizer", False),
                                                 ("weights", False)]
    data, vocab, encoder, weights = pieces
    assert data.problem == f"absent de {tmp_path / 'd'}"
    assert any(f.startswith("python -m lab_utils prefetch") for f in data.fixes)
    assert "TP3_DATA_DIR=/dossier/contenant/SMSSpamCollection" in data.fixes
    assert any("TIKTOKEN_CACHE_DIR=" in f for f in vocab.fixes + encoder.fixes)
    assert any(f.startswith("TP3_GPT2_WEIGHTS=") for f in weights.fixes)
    assert any(f.startswith("TP3_PROFILE=ci") for f in weights.fixes)
    assert not any("TP3_PROFILE=ci" in f for f in check("full", suggest_ci=False)[3].fixes)  # grading
    text = report(pieces, "full")
    assert text.startswith("Il manque 4 éléments pour le profil full (vérifié sans rien télécharger) :")
    assert text.count("\n  - ") == 4


def test_corrupt_user_file_is_reported_not_replaced(lab_env, no_network):
    from lab_utils.preflight import check

    path = lab_env / "data" / "SMSSpamCollection"
    path.write_bytes(path.read_bytes()[:-10])
    data = check("ci")[0]
    assert not data.ok and "taille attendue 477\u202f907 octets, obtenu 477\u202f897" in data.problem
    assert data.fixes == (f"remplacez {path} par le fichier publié, ou retirez TP3_DATA_DIR puis "
                          "« python -m lab_utils prefetch »",)
    assert path.stat().st_size == 477_897  # left as it was


def test_weights_found_in_the_hub_cache_are_verified(lab_env, no_network):
    """A file where huggingface_hub's cache keeps the pinned revision is found and checked."""
    from lab_utils.preflight import check
    from lab_utils.weights import GPT2_CHECKPOINTS

    ckpt = GPT2_CHECKPOINTS["gpt2-small"]
    snapshot = lab_env / "cache" / "huggingface" / "models--openai-community--gpt2" / "snapshots" / ckpt.revision
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"not the weights")
    weights = check("full")[-1]
    assert weights.kind == "weights" and weights.path == snapshot / "model.safetensors"
    assert "taille attendue " + f"{ckpt.size:,}".replace(",", "\u202f") + " octets, obtenu 15" in weights.problem


def test_manual_weights_file_that_is_not_there(lab_env, monkeypatch, no_network):
    from lab_utils.preflight import check

    monkeypatch.setenv("TP3_GPT2_WEIGHTS", str(lab_env / "nowhere.safetensors"))
    weights = check("full")[-1]
    assert weights.problem == f"TP3_GPT2_WEIGHTS={lab_env / 'nowhere.safetensors'} : fichier introuvable"


def test_unknown_profile_and_disabled_tokenizer_cache(lab_env, monkeypatch, no_network):
    from lab_utils.preflight import check

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    names = _by_name(check("huge"))
    assert "TP3_PROFILE='huge' inconnu" in names["Profil"].problem
    assert "TP3_PROFILE=ci" in names["Profil"].fixes
    assert "cache de tiktoken est désactivé" in names["Tokenizer GPT-2"].problem


def test_offline_prefetch_only_checks(tmp_path, monkeypatch, no_network):
    from lab_utils import preflight

    monkeypatch.setenv("TP3_OFFLINE", "1")
    monkeypatch.setenv("TP3_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "t"))
    assert [p.ok for p in preflight.fetch_missing("ci")] == [False, False, False]
    assert not (tmp_path / "d").exists()


def test_unreachable_host_is_skipped_without_retries(tmp_path, monkeypatch, no_network):
    """Offline, prefetch tries each missing piece's server once and lists what is still missing."""
    from lab_utils import download, preflight

    probed = []
    monkeypatch.setattr(download, "reachable", lambda url, timeout=5.0: probed.append(url) or False)
    monkeypatch.setenv("TP3_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "t"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TP3_CACHE_DIR", str(tmp_path / "c"))
    pieces = preflight.fetch_missing("full")
    assert [p.ok for p in pieces] == [False] * 4
    assert [u.split("/")[2] for u in probed] == ["archive.ics.uci.edu", "openaipublic.blob.core.windows.net",
                                                 "huggingface.co"]


def test_reachable_is_any_http_answer():
    from lab_utils.download import reachable

    with FileServer() as server:
        server.routes["/f"] = Route(body=b"x")
        assert reachable(server.url("/f"))
        assert reachable(server.url("/missing"))  # a 404 still says the server is there
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert not reachable(f"http://127.0.0.1:{port}/f", timeout=2)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "lab_utils", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_check_command(tmp_path):
    ok = _cli("check", "--profile", "ci")
    assert ok.returncode == 0, ok.stderr
    assert "Tout est prêt pour le profil ci (vérifié sans rien télécharger)." in ok.stdout
    assert _cli("check", "--profile", "ci", "--quiet").stdout == ""
    bad = _cli("check", "--profile", "ci", env={"TP3_DATA_DIR": str(tmp_path)})
    assert bad.returncode == 1
    assert "Il manque 1 élément pour le profil ci" in bad.stderr and "Données SMS" in bad.stderr


@pytest.mark.slow
def test_ci_profile_trains_with_the_network_cut(tmp_path):
    """Once the data file and the tokenizer files are there, the ci profile opens no connection
    at all: check, then the whole reference run, with every socket connection refused."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(
        "import socket\n"
        "def _refuse(*args, **kwargs):\n"
        "    raise OSError('network used: %r' % (args,))\n"
        "socket.socket.connect = _refuse\n"
        "socket.create_connection = _refuse\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(guard), os.environ.get("PYTHONPATH")])),
           "TP3_PROFILE": "ci", "HF_HUB_OFFLINE": "0", "TP3_CACHE_DIR": str(tmp_path / "cache")}
    probe = _cli("check", env=env)
    assert probe.returncode == 0, probe.stderr
    blocked = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"],
                             capture_output=True, text=True, env={**os.environ, **env})
    assert "network used" in blocked.stderr  # the guard is active in these subprocesses
    out = subprocess.run([sys.executable, "-m", "lab_utils", "train", "--run-dir", str(tmp_path / "run")],
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "run" / "adapter.safetensors").is_file()
