"""A fine-tuning run end to end, and the run folder that records it.

A run folder (``tp3_run/`` beside the notebook) holds what grading needs and nothing
heavy: ``adapter.safetensors`` (LoRA + head, ~5 MB), ``history.json`` (loss of every
batch) and ``run.json`` (settings, timings, versions). While nbgrader executes a
notebook, ``train_or_load`` reads that folder instead of training again.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import __version__
from .adapter import load_adapter, save_adapter
from .config import LoRAConfig, TrainConfig
from .errors import LabError
from .lora import LoRAReport, add_lora
from .model import GPTModel, replace_head
from .profiles import Profile, get_profile, load_base_model
from .progress import is_grading
from .train import History, train_classifier

RUN_DIR = "tp3_run"
ADAPTER_FILE = "adapter.safetensors"
HISTORY_FILE = "history.json"
INFO_FILE = "run.json"


class RunError(LabError):
    """A run folder is missing or unusable."""


def build_classifier(profile: Profile | str | None = None, lora: LoRAConfig | None = None,
                     seed: int = 42) -> tuple[GPTModel, LoRAReport]:
    """The profile's base GPT-2 with a new 2-class head and LoRA, seeded."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    model = load_base_model(profile)
    replace_head(model, num_classes=2, seed=seed)
    report = add_lora(model, lora or LoRAConfig(), seed=seed)
    return model, report


def _profile_of(model) -> Profile:
    return get_profile(getattr(model, "profile", None))


def save_run(run_dir: str | Path, model, history: History, extra: dict | None = None,
             figures: dict | None = None) -> Path:
    """Write the run folder atomically: a new folder is filled, then swapped in.

    ``extra`` goes into run.json; ``figures`` maps file names (``loss.png``) to Figures.
    """
    run_dir = Path(run_dir)
    profile = _profile_of(model)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}."))
    try:
        save_adapter(model, tmp / ADAPTER_FILE, profile.base_model_id,
                     extra={"seed": history.config.get("seed", ""), "profile": profile.name})
        history.save(tmp / HISTORY_FILE)
        info = {
            "profile": profile.name,
            "base_model": profile.base_model_id,
            "train_config": history.config,
            "seconds": round(history.seconds, 2),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "lab_utils": __version__,
            "torch": torch.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU",
            **(extra or {}),
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1, ensure_ascii=False))
        for name, fig in (figures or {}).items():
            fig.savefig(tmp / name, dpi=110)
        old = None
        if run_dir.exists():
            old = run_dir.with_name(f".{run_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            run_dir.rename(old)
        tmp.rename(run_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run_dir


def load_run_into(model, run_dir: str | Path = RUN_DIR) -> History:
    """Load a run folder's adapter into ``model`` and return its history."""
    run_dir = Path(run_dir)
    if not (run_dir / ADAPTER_FILE).is_file() or not (run_dir / HISTORY_FILE).is_file():
        raise RunError(
            f"Dossier d'exécution {run_dir} absent ou incomplet (il faut {ADAPTER_FILE} et "
            f"{HISTORY_FILE}). Exécutez l'entraînement dans le notebook avant de le rendre, "
            f"et rendez le dossier {run_dir.name}/ avec le notebook."
        )
    load_adapter(model, run_dir / ADAPTER_FILE, _profile_of(model).base_model_id)
    try:
        return History.load(run_dir / HISTORY_FILE)
    except (ValueError, TypeError) as err:
        raise RunError(f"{run_dir / HISTORY_FILE} est illisible ({err}).") from err


def load_run(run_dir: str | Path = RUN_DIR, profile: Profile | str | None = None) -> tuple[GPTModel, History]:
    """A fresh classifier with the run's adapter, and its history (used by graders)."""
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    model = load_base_model(profile)
    history = load_run_into(model, run_dir)
    return model.eval(), history


def train_or_load(model, train_loader, val_loader=None, cfg: TrainConfig | None = None,
                  run_dir: str | Path = RUN_DIR, device="cpu", progress: bool | None = None) -> History:
    """Train and save the run folder, or, while nbgrader grades, load it instead."""
    if is_grading():
        return load_run_into(model, run_dir)
    history = train_classifier(model, train_loader, val_loader, cfg, device=device, progress=progress)
    save_run(run_dir, model, history)
    return history


def run_summary(history: History) -> dict:
    """A few numbers about a run, for printing."""
    return {
        "batches": history.num_batches,
        "seconds": round(history.seconds, 1),
        "first_loss": round(history.batch_losses[0], 4) if history.batch_losses else None,
        "last_loss": round(history.batch_losses[-1], 4) if history.batch_losses else None,
        "running_train_acc": round(history.final_running_train_acc, 4),
        "val_acc": round(history.val_accs[-1], 4) if history.val_accs else None,
    }


__all__ = ["RUN_DIR", "RunError", "build_classifier", "save_run", "load_run", "load_run_into",
           "train_or_load", "run_summary"]
