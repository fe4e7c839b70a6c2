"""The command line, run as a user would: python -m lab_utils ..."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def _run(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "lab_utils", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=300)


def test_info_prints_the_tp3_counts_in_french():
    out = _run("info")
    assert out.returncode == 0, out.stderr
    for number in ("164 364 288", "125 768 450", "358 364 162", "1 327 104", "3 538 944", "0,807", "1,055",
                   "0,988", "0,864"):
        assert number.replace(" ", "\u202f") in out.stdout, number
    for header in ("modèle", "tête", "entraînables", "part LoRA (%)"):
        assert header in out.stdout
    assert "164364288" not in out.stdout and "0.807" not in out.stdout


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_in_ci_profile_writes_a_run_folder_and_the_thresholds(tmp_path):
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(json.dumps({"full": {"thresholds": {"test_acc": 0.9}}}))  # another profile: kept
    out = _run("train", "--profile", "ci", "--run-dir", str(tmp_path / "run"),
               "--instructor-texts", str(REPO / "grading" / "instructor_texts.json"), "--thresholds-out", str(thresholds))
    assert out.returncode == 0, out.stderr
    assert f"Dossier de l'exécution : {tmp_path / 'run'}" in out.stdout
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["accuracy.png", "adapter.safetensors", "history.json", "loss.png", "run.json"]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["profile"] == "ci" and set(info["metrics"]) == {"train", "val", "test"}
    assert info["metrics"]["val"]["accuracy"] > 0.7
    assert len(info["reference_predictions"]) == 3
    assert "exactitude test" in out.stdout and "0." not in out.stdout.split("Entraînement :")[1]  # French numbers

    from lab_utils.thresholds import DEFAULTS, derive

    data = json.loads(thresholds.read_text())
    assert data["full"] == {"thresholds": {"test_acc": 0.9}}
    entry = data["ci"]
    measured = {"test_acc": info["metrics"]["test"]["accuracy"],
                "instructor_texts": info["instructor_texts"]["accuracy"]}
    assert info["instructor_texts"]["n"] == 10
    assert entry["measured"] == {k: round(v, 4) for k, v in measured.items()}
    assert entry["thresholds"] == derive(measured)
    # the reference run meets the thresholds it wrote, and the ci defaults
    for name, value in measured.items():
        assert value >= entry["thresholds"][name] and value >= DEFAULTS["ci"][name]


def test_thresholds_need_the_instructor_texts(tmp_path):
    out = _run("train", "--profile", "ci", "--thresholds-out", str(tmp_path / "t.json"))
    assert out.returncode == 1 and "--instructor-texts" in out.stderr and not (tmp_path / "t.json").exists()


def test_train_default_run_dir_is_under_runs(tmp_path):
    out = _run("train", "--profile", "ci", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.endswith("-ci") and (run_dir / "adapter.safetensors").is_file()


def test_bad_option_gives_a_french_error_and_exit_code(tmp_path):
    out = _run("train", "--profile", "ci", "--lr", "-1", "--run-dir", str(tmp_path / "r"))
    assert out.returncode == 1
    assert "Erreur : TrainConfig.lr doit être un nombre > 0, obtenu -1.0." in out.stderr
    assert not (tmp_path / "r").exists()


def test_unknown_profile(tmp_path):
    out = _run("prefetch", env={"TP3_PROFILE": "huge"})
    assert out.returncode == 1 and "TP3_PROFILE='huge' inconnu" in out.stderr


def test_prefetch_in_ci_profile_needs_no_weights():
    out = _run("prefetch", "--profile", "ci")
    assert out.returncode == 0, out.stderr
    assert "non nécessaires (profil ci)" in out.stdout


def test_cache_lists_locations(tmp_path):
    out = _run("cache", env={"TP3_CACHE_DIR": str(tmp_path / "c")})
    assert out.returncode == 0 and str(tmp_path / "c") in out.stdout
