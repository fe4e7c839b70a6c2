"""The run folder (tp3_run/): its files are bound together, and re-running the training cell
is safe. Quick trainings on 40 messages of the ci profile.

- save_run puts the SHA-256 of history.json's exact bytes in the adapter's metadata;
  load_run_into (what grading uses) refuses a history from another run, an edited one, and
  an adapter without the digest (oracle: hashlib on the bytes on disk);
- the adapter is written with the same permissions as its siblings;
- train_or_load reloads a complete run instead of training again (same weights, same
  history, files untouched), retrains only with retrain=True, and says what it replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest
import torch
from safetensors import safe_open

from lab_utils.config import TrainConfig
from lab_utils.errors import RunError
from lab_utils.loaders import train_loader
from lab_utils.run import build_classifier, load_run, save_run, train_or_load
from lab_utils.train import History, train_classifier


def _train(small_train, seed=42, **cfg):
    cfg = TrainConfig(seed=seed, **cfg)
    model, _ = build_classifier("ci", seed=seed)
    return model, train_classifier(model, train_loader(small_train, cfg), cfg=cfg)


@pytest.fixture(scope="module")
def two_runs(small_train, tmp_path_factory):
    folder = tmp_path_factory.mktemp("runs")
    a, b = folder / "a" / "tp3_run", folder / "b" / "tp3_run"
    model_a, history_a = _train(small_train, seed=42)
    model_b, history_b = _train(small_train, seed=7)
    save_run(a, model_a, history_a)
    save_run(b, model_b, history_b)
    return a, b, model_a


def _copy(src, dest):
    dest.mkdir(parents=True)
    for path in src.iterdir():
        (dest / path.name).write_bytes(path.read_bytes())
    return dest


def test_adapter_holds_the_digest_of_history_json(two_runs):
    a, _, _ = two_runs
    with safe_open(str(a / "adapter.safetensors"), framework="pt") as f:
        digest = f.metadata()["history_sha256"]
    assert digest == hashlib.sha256((a / "history.json").read_bytes()).hexdigest()


def test_matching_run_loads(two_runs):
    a, _, model_a = two_runs
    model, history = load_run(a, "ci")
    assert history.batch_losses == History.load(a / "history.json").batch_losses
    x = torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), model_a(x))


def test_history_of_another_run_is_refused(two_runs, tmp_path):
    a, b, _ = two_runs
    mixed = _copy(a, tmp_path / "tp3_run")
    (mixed / "history.json").write_bytes((b / "history.json").read_bytes())
    with pytest.raises(RunError, match="n'est pas l'historique enregistré avec adapter.safetensors"):
        load_run(mixed, "ci")


@pytest.mark.parametrize("edit", ["one loss", "whitespace"])
def test_edited_history_is_refused(two_runs, tmp_path, edit):
    a, _, _ = two_runs
    run = _copy(a, tmp_path / "tp3_run")
    data = json.loads((run / "history.json").read_text())
    if edit == "one loss":
        data["batch_losses"][-1] = 0.01
        (run / "history.json").write_text(json.dumps(data, indent=1))
    else:  # the same values, other bytes
        (run / "history.json").write_text(json.dumps(data))
    with pytest.raises(RunError, match="empreinte SHA-256"):
        load_run(run, "ci")


def test_adapter_without_digest_is_refused(two_runs, tmp_path):
    from lab_utils.adapter import save_adapter
    from lab_utils.profiles import get_profile

    a, _, model_a = two_runs
    run = _copy(a, tmp_path / "tp3_run")
    save_adapter(model_a, run / "adapter.safetensors", get_profile("ci").base_model_id)  # no digest
    with pytest.raises(RunError, match="ne porte pas l'empreinte de son historique"):
        load_run(run, "ci")


def test_run_files_have_the_same_permissions(two_runs):
    a, _, _ = two_runs
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in a.iterdir()}
    umask = os.umask(0)
    os.umask(umask)
    assert set(modes.values()) == {0o666 & ~umask}, modes  # as open() creates files
    assert stat.S_IMODE(a.stat().st_mode) == 0o777 & ~umask  # and mkdir a folder


# ----------------------------------------------------------------------------- re-running the training cell

def _fingerprint(run_dir):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(run_dir.iterdir())}


def test_train_or_load_reloads_an_existing_run(small_train, tmp_path, capsys):
    cfg = TrainConfig()
    run_dir = tmp_path / "tp3_run"
    model, _ = build_classifier("ci")
    first = train_or_load(model, train_loader(small_train, cfg), cfg=cfg, run_dir=run_dir)
    files = _fingerprint(run_dir)
    capsys.readouterr()

    # the cell run again on the trained model, then after a kernel restart (a fresh model)
    for again in (model, build_classifier("ci")[0]):
        history = train_or_load(again, train_loader(small_train, cfg), cfg=cfg, run_dir=run_dir)
        assert history == first
        assert _fingerprint(run_dir) == files  # nothing rewritten
        out = capsys.readouterr().out
        assert "rechargée, sans nouvel entraînement" in out and "retrain=True" in out
        x = torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert torch.equal(again(x), model(x))


def test_retrain_replaces_the_run_and_gives_the_same_history(small_train, tmp_path, capsys):
    cfg = TrainConfig()
    run_dir = tmp_path / "tp3_run"
    model, _ = build_classifier("ci")
    first = train_or_load(model, train_loader(small_train, cfg), cfg=cfg, run_dir=run_dir)
    capsys.readouterr()
    # retrain on the already trained model: it starts again from the initial state
    again = train_or_load(model, train_loader(small_train, cfg), cfg=cfg, run_dir=run_dir, retrain=True)
    out = capsys.readouterr().out
    assert "Nouvel entraînement : il remplacera le dossier" in out and "5 lots" in out
    assert again.batch_losses == first.batch_losses and again.running_train_acc == first.running_train_acc
    load_run(run_dir, "ci")  # the new folder is consistent


def test_other_settings_need_retrain(small_train, tmp_path):
    run_dir = tmp_path / "tp3_run"
    model, _ = build_classifier("ci")
    train_or_load(model, train_loader(small_train, TrainConfig()), cfg=TrainConfig(), run_dir=run_dir)
    other = TrainConfig(lr=1e-3)
    with pytest.raises(RunError, match="lr = 0,0005 au lieu de 0,001.*retrain=True"):
        train_or_load(build_classifier("ci")[0], train_loader(small_train, other), cfg=other, run_dir=run_dir)


def test_incomplete_run_is_trained_again(small_train, tmp_path, capsys):
    cfg = TrainConfig()
    run_dir = tmp_path / "tp3_run"
    run_dir.mkdir()
    (run_dir / "history.json").write_text("{}")
    train_or_load(build_classifier("ci")[0], train_loader(small_train, cfg), cfg=cfg, run_dir=run_dir)
    assert "remplacera le dossier tp3_run/ existant (incomplet)" in capsys.readouterr().out.replace(str(tmp_path) + "/", "")
    assert sorted(p.name for p in run_dir.iterdir()) == ["adapter.safetensors", "history.json", "run.json"]


def test_mismatched_run_while_not_grading_says_how_to_retrain(two_runs, small_train, tmp_path):
    a, b, _ = two_runs
    run = _copy(a, tmp_path / "tp3_run")
    (run / "history.json").write_bytes((b / "history.json").read_bytes())
    with pytest.raises(RunError, match="retrain=True"):
        train_or_load(build_classifier("ci")[0], train_loader(small_train, TrainConfig()), run_dir=run)


def test_grading_always_loads_and_refuses_a_mismatch(two_runs, tmp_path, monkeypatch):
    a, b, _ = two_runs
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    history = train_or_load(build_classifier("ci")[0], None, run_dir=a, retrain=True)  # never trains
    assert history == History.load(a / "history.json")
    run = _copy(a, tmp_path / "tp3_run")
    (run / "history.json").write_bytes((b / "history.json").read_bytes())
    with pytest.raises(RunError, match="n'est pas l'historique enregistré"):
        train_or_load(build_classifier("ci")[0], None, run_dir=run)


@pytest.mark.parametrize("content", ['{"batch_losses": "abc"}', '{"batch_losses": [1, "x"]}', '[1, 2]',
                                     '{"config": 3}', '{"epochs": true}'])
def test_malformed_history_is_refused(content):
    with pytest.raises(ValueError):
        History.from_dict(json.loads(content))
