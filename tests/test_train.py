"""Fine-tuning in the ci profile: it learns, it is deterministic, batching does not matter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lab_utils.config import TrainConfig
from lab_utils.loaders import eval_loader, train_loader
from lab_utils.run import build_classifier, load_run, save_run, train_or_load
from lab_utils.train import History, evaluate, train_classifier


def _train(datasets, **cfg):
    cfg = TrainConfig(**cfg)
    model, _ = build_classifier("ci", seed=cfg.seed)
    history = train_classifier(model, train_loader(datasets["train"], cfg), eval_loader(datasets["val"]), cfg)
    return model, history


@pytest.fixture(scope="module")
def run(datasets):
    return _train(datasets)


def test_history_has_one_finite_loss_per_batch(run, datasets):
    _, h = run
    assert h.num_batches == math.ceil(len(datasets["train"]) / 8) == 115
    assert all(math.isfinite(x) for x in h.batch_losses)
    assert len(h.running_train_acc) == len(h.batch_tokens) == h.num_batches
    assert sum(h.batch_tokens) == sum(datasets["train"].lengths)


def test_loss_falls(run):
    _, h = run
    losses = np.array(h.batch_losses)
    assert losses[-30:].mean() < 0.8 * losses[:10].mean()


def test_validation_accuracy_well_above_chance(run, datasets):
    model, h = run
    assert h.val_accs[-1] >= 0.70
    assert evaluate(model, eval_loader(datasets["test"])).accuracy >= 0.70


def test_running_accuracy_is_cumulative(run, datasets):
    model, h = run
    assert 0 < h.running_train_acc[-1] < 1
    # the final model is better on the training set than the running average over the epoch
    assert evaluate(model, eval_loader(datasets["train"])).accuracy > h.final_running_train_acc


def test_same_seed_same_history(run, datasets):
    _, again = _train(datasets)
    assert again.batch_losses == run[1].batch_losses
    assert again.running_train_acc == run[1].running_train_acc


def test_other_seed_other_history(run, datasets):
    _, other = _train(datasets, seed=7)
    assert other.batch_losses != run[1].batch_losses


@pytest.mark.parametrize("batching", ["padded", "grouped"])
def test_batching_modes(run, datasets, batching):
    _, h = _train(datasets, batching=batching)
    if batching == "padded":  # same batches as packing: same losses up to rounding
        assert np.allclose(h.batch_losses, run[1].batch_losses, atol=1e-4)
    assert h.num_batches == 115 and h.val_accs[-1] >= 0.65


def test_periodic_validation(datasets):
    _, h = _train(datasets, eval_every=50)
    assert h.val_steps == [50, 100, 115]


def test_evaluation_does_not_depend_on_batch_size(run, datasets):
    model, _ = run
    a = evaluate(model, eval_loader(datasets["val"], max_tokens=1))  # one message per batch
    b = evaluate(model, eval_loader(datasets["val"], max_tokens=100_000))  # one batch
    assert a.accuracy == b.accuracy and abs(a.loss - b.loss) < 1e-5


@pytest.mark.parametrize("max_tokens", [1, 40, 512])
def test_eval_batches_keep_to_the_token_budget(datasets, max_tokens):
    ds = datasets["test"]
    batches = list(eval_loader(ds, max_tokens=max_tokens))
    seen = sorted(int(n) for b in batches for n in b.lengths)
    assert seen == sorted(ds.lengths)  # every message once
    for b in batches:
        assert b.input_ids.numel() <= max_tokens or len(b.labels) == 1
        assert int(b.lengths.max()) == b.input_ids.shape[1]  # padded to its own longest


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "512"])
def test_bad_eval_budget_is_refused(datasets, bad):
    from lab_utils.errors import ConfigError

    with pytest.raises(ConfigError, match="max_tokens doit être un entier"):
        eval_loader(datasets["test"], max_tokens=bad)


def test_bf16_precision_runs(datasets):
    _, h = _train(datasets, precision="bf16")
    assert all(math.isfinite(x) for x in h.batch_losses)


def test_nothing_trainable_is_an_error(datasets):
    from lab_utils.profiles import load_base_model

    model = load_base_model("ci")
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="add_lora"):
        train_classifier(model, train_loader(datasets["train"], TrainConfig()))


def test_run_folder_round_trip(run, datasets, tmp_path):
    model, h = run
    save_run(tmp_path / "tp3_run", model, h)
    assert sorted(p.name for p in (tmp_path / "tp3_run").iterdir()) == ["adapter.safetensors", "history.json", "run.json"]
    loaded, history = load_run(tmp_path / "tp3_run", "ci")
    assert history.batch_losses == h.batch_losses
    x = torch.randint(0, 50257, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_saving_again_replaces_the_folder_atomically(run, tmp_path):
    model, h = run
    save_run(tmp_path / "r", model, h)
    save_run(tmp_path / "r", model, h)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_train_or_load_while_grading(run, datasets, tmp_path, monkeypatch):
    model, h = run
    save_run(tmp_path / "tp3_run", model, h)
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    fresh, _ = build_classifier("ci", seed=42)
    loaded = train_or_load(fresh, None, run_dir=tmp_path / "tp3_run")  # no loader needed: no training
    assert loaded.batch_losses == h.batch_losses
    from lab_utils.errors import LabError

    with pytest.raises(LabError, match="absent ou incomplet"):
        train_or_load(fresh, None, run_dir=tmp_path / "missing")


def test_history_json_round_trip(run, tmp_path):
    _, h = run
    h.save(tmp_path / "h.json")
    assert History.load(tmp_path / "h.json") == h


@pytest.mark.parametrize("bad", [dict(lr=0), dict(lr=2.0), dict(batch_size=0), dict(precision="fp16"),
                                 dict(batching="sorted"), dict(num_epochs=-1)])
def test_bad_train_config_is_refused(bad):
    from lab_utils.errors import ConfigError

    with pytest.raises(ConfigError, match="obtenu"):
        TrainConfig(**bad)


_ALLOCATOR_PROBE = """
import ctypes
from lab_utils.memory import allocator_phase

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]

def served_by_mmap(nbytes):
    # The IS_MMAPPED bit (0x2) of the chunk's size field, just before the pointer.
    ptr = libc.malloc(nbytes)
    flag = ctypes.c_size_t.from_address(ptr - ctypes.sizeof(ctypes.c_size_t)).value & 2
    libc.free(ptr)
    return bool(flag)

four_mb = 4 << 20
seen = []
with allocator_phase("train"):
    seen.append(served_by_mmap(four_mb))
    with allocator_phase("eval"):
        seen += [served_by_mmap(four_mb), served_by_mmap(64 << 20)]
    seen.append(served_by_mmap(8 << 20))  # larger than the heap's free chunks: a fresh block
print(seen)
"""


def test_allocator_phases_on_glibc():
    """Training maps blocks of a few MB (memory goes back when freed); evaluation reuses
    heap blocks (no page faults per batch); leaving a phase restores the enclosing one.
    Run in a fresh process: a heap that already holds a large free chunk serves from it."""
    import platform
    import subprocess
    import sys

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    out = subprocess.run([sys.executable, "-c", _ALLOCATOR_PROBE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[True, False, True, True]"
