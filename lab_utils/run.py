"""A fine-tuning run end to end, and the run folder that records it.

A run folder (``tp3_run/`` beside the notebook) holds what grading needs and nothing
heavy: ``adapter.safetensors`` (LoRA + head, ~5 MB), ``history.json`` (loss of every
batch) and ``run.json`` (settings, timings, versions). The adapter's metadata holds
the SHA-256 of ``history.json``: a history from another run, or an edited one, is
refused. ``train_or_load`` reloads an existing run instead of training again (always
while nbgrader grades), and retrains only when asked to (``retrain=True``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import torch

from . import __version__
from .adapter import adapter_state, load_adapter, read_metadata, save_adapter
from .config import LoRAConfig, TrainConfig
from .errors import LabError, RunError
from .french import fr_number, fr_percent
from .lora import LoRAReport, add_lora
from .model import GPTModel, replace_head
from .paths import usual_mode
from .profiles import Profile, get_profile, load_base_model
from .progress import is_grading
from .train import History, train_classifier

RUN_DIR = "tp3_run"
ADAPTER_FILE = "adapter.safetensors"
HISTORY_FILE = "history.json"
INFO_FILE = "run.json"
RUN_FILES = (ADAPTER_FILE, HISTORY_FILE, INFO_FILE)
HISTORY_DIGEST = "history_sha256"  # adapter metadata: SHA-256 of the run's history.json bytes
INITIAL_STATE = "_tp3_initial_state"  # attribute of a model from build_classifier
# Settings that change what a run computes (the others: threads, evaluation batch budget).
RESULT_SETTINGS = ("num_epochs", "batch_size", "lr", "weight_decay", "seed", "eval_every", "batching",
                   "precision")


def build_classifier(profile: Profile | str | None = None, lora: LoRAConfig | None = None,
                     seed: int = 42) -> tuple[GPTModel, LoRAReport]:
    """Le GPT-2 du profil, avec une nouvelle tête à 2 classes et LoRA, initialisés par ``seed``.

    Renvoie ``(model, rapport)`` ; ``rapport`` dit combien de couches LoRA a enveloppées.
    Le modèle garde son état initial, pour qu'un réentraînement reparte du même point.
    """
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    model = load_base_model(profile)
    replace_head(model, num_classes=2, seed=seed)
    report = add_lora(model, lora or LoRAConfig(), seed=seed)
    setattr(model, INITIAL_STATE, {k: v.clone() for k, v in adapter_state(model).items()})
    return model, report


def _profile_of(model) -> Profile:
    return get_profile(getattr(model, "profile", None))


def save_run(run_dir: str | Path, model, history: History, extra: dict | None = None,
             figures: dict | None = None) -> Path:
    """Write the run folder atomically: a new folder is filled, then swapped in.

    The adapter's metadata holds the SHA-256 of the exact bytes of ``history.json``,
    so that a history from another run is refused (``load_run_into``). ``extra`` goes
    into run.json; ``figures`` maps file names (``loss.png``) to Figures.
    """
    run_dir = Path(run_dir)
    profile = _profile_of(model)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=run_dir.parent, prefix=f".{run_dir.name}."))
    try:
        os.chmod(tmp, usual_mode(folder=True))
        history_bytes = history.to_json()
        save_adapter(model, tmp / ADAPTER_FILE, profile.base_model_id,
                     extra={"seed": history.config.get("seed", ""), "profile": profile.name,
                            HISTORY_DIGEST: hashlib.sha256(history_bytes).hexdigest()})
        (tmp / HISTORY_FILE).write_bytes(history_bytes)
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


def check_run_files(run_dir: str | Path = RUN_DIR) -> str:
    """Check that ``history.json`` is the one saved with the adapter (same training run);
    returns the digest. Raises RunError, in French, otherwise."""
    run_dir = Path(run_dir)
    adapter, history = run_dir / ADAPTER_FILE, run_dir / HISTORY_FILE
    if not adapter.is_file() or not history.is_file():
        raise RunError(
            f"Dossier d'exécution {run_dir} absent ou incomplet (il faut {ADAPTER_FILE} et "
            f"{HISTORY_FILE}). Exécutez l'entraînement dans le notebook avant de le rendre, "
            f"et rendez le dossier {run_dir.name}/ avec le notebook."
        )
    expected = read_metadata(adapter).get(HISTORY_DIGEST)
    if not expected:
        raise RunError(
            f"{adapter} ne porte pas l'empreinte de son historique ({HISTORY_FILE}) : il a été écrit "
            "autrement que par l'entraînement de ce TP (ou par une version plus ancienne). "
            "Réentraînez le modèle (train_or_load(..., retrain=True)) et rendez le dossier ainsi écrit."
        )
    digest = hashlib.sha256(history.read_bytes()).hexdigest()
    if digest != expected:
        raise RunError(
            f"{history} n'est pas l'historique enregistré avec {adapter.name} (empreinte SHA-256 "
            f"attendue {expected[:16]}…, obtenue {digest[:16]}…) : les deux fichiers doivent venir du "
            f"même entraînement, sans modification. Rendez le dossier {run_dir.name}/ tel que "
            "l'entraînement l'a écrit, ou réentraînez (retrain=True)."
        )
    return digest


def load_run_into(model, run_dir: str | Path = RUN_DIR) -> History:
    """Load a run folder's adapter into ``model`` and return its history, after checking
    that the history is the one saved with that adapter."""
    run_dir = Path(run_dir)
    check_run_files(run_dir)
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


def run_is_complete(run_dir: str | Path = RUN_DIR) -> bool:
    """True when the three files of a run folder are there (not whether they agree)."""
    return all((Path(run_dir) / name).is_file() for name in RUN_FILES)


def describe_run(run_dir: str | Path, history: History | None = None) -> str:
    """A French one-line description of a saved run, for messages."""
    run_dir = Path(run_dir)
    parts = []
    try:
        created = json.loads((run_dir / INFO_FILE).read_text()).get("created", "")
        when = datetime.fromisoformat(created).astimezone()
        parts.append(f"entraîné le {when:%d/%m/%Y à %H:%M}")
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    try:
        history = history or History.load(run_dir / HISTORY_FILE)
        parts.append(f"{fr_number(history.num_batches)} lots")
        if history.val_accs:
            parts.append(f"exactitude de validation {fr_percent(history.val_accs[-1])}")
    except (OSError, ValueError, TypeError):
        pass
    return ", ".join(parts) or "contenu illisible"


def _settings_changes(saved: dict, cfg: TrainConfig) -> list[str]:
    wanted = cfg.to_dict()
    return [f"{key} = {fr_number(saved.get(key))} au lieu de {fr_number(wanted[key])}"
            for key in RESULT_SETTINGS if saved.get(key) != wanted[key]]


def restore_initial_state(model) -> bool:
    """Put back the LoRA and head values ``build_classifier`` gave ``model`` (if it did)."""
    initial = getattr(model, INITIAL_STATE, None)
    if initial is None:
        return False
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in initial.items():
            params[key].copy_(value.to(params[key].device))
    return True


def train_or_load(model, train_loader, val_loader=None, cfg: TrainConfig | None = None,
                  run_dir: str | Path = RUN_DIR, device=None, progress: bool | None = None,
                  retrain: bool = False) -> History:
    """Entraîne le modèle et enregistre l'exécution dans ``run_dir`` (``tp3_run/``), ou la
    recharge si elle existe déjà.

    - Si ``run_dir`` contient une exécution complète, elle est rechargée dans ``model``
      (mêmes poids, même historique) au lieu de réentraîner : relancer la cellule, ou
      « Restart Kernel and Run All », donne les mêmes résultats.
    - ``retrain=True`` réentraîne depuis l'état initial du modèle et remplace le dossier
      (le message dit ce qui est remplacé).
    - Pendant la correction (nbgrader), le dossier rendu est toujours rechargé.

    Renvoie l'historique (``History``) : pertes par lot, exactitude courante, validation.
    """
    run_dir = Path(run_dir)
    cfg = cfg or TrainConfig()
    if is_grading():
        return load_run_into(model, run_dir)
    if run_is_complete(run_dir) and not retrain:
        try:
            history = load_run_into(model, run_dir)
        except LabError as err:
            raise RunError(f"{err} Pour réentraîner et remplacer {run_dir}/ : train_or_load(..., retrain=True).") from err
        changes = _settings_changes(history.config, cfg)
        if changes:
            raise RunError(
                f"{run_dir}/ a été entraîné avec d'autres réglages ({'; '.join(changes)}). Pour "
                "réentraîner avec les réglages actuels et remplacer ce dossier : train_or_load(..., retrain=True)."
            )
        print(f"Exécution déjà enregistrée dans {run_dir}/ ({describe_run(run_dir, history)}) : rechargée, "
              "sans nouvel entraînement. Pour réentraîner et remplacer ce dossier : retrain=True.")
        return history
    if run_dir.exists():
        what = describe_run(run_dir) if run_is_complete(run_dir) else "incomplet"
        print(f"Nouvel entraînement : il remplacera le dossier {run_dir}/ existant ({what}).")
    restore_initial_state(model)
    history = train_classifier(model, train_loader, val_loader, cfg, device=device, progress=progress)
    save_run(run_dir, model, history)
    return history


__all__ = ["RUN_DIR", "RUN_FILES", "RunError", "build_classifier", "save_run", "load_run", "load_run_into",
           "check_run_files", "run_is_complete", "describe_run", "restore_initial_state", "train_or_load"]
