"""Fine-tuning loop and evaluation of the spam classifier.

The class of a message is read from the logits of its last real token, so padding
never changes a result. Training records the loss of every batch and the running
training accuracy (correct so far / seen so far, while the model is still learning).
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from . import eval_memo
from .config import TrainConfig
from .french import fr_number, fr_percent
from .loaders import Batch
from .memory import allocator_phase
from .progress import progress_bar


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class History:
    """Ce qu'un entraînement a enregistré, lot par lot.

    - ``batch_losses`` : la perte (entropie croisée) de chaque lot, dans l'ordre ;
    - ``running_train_acc`` : l'exactitude courante après chaque lot (bonnes réponses
      depuis le début de l'époque / messages vus), mesurée pendant l'apprentissage ;
    - ``val_steps``, ``val_losses``, ``val_accs`` : les validations (après combien de lots,
      perte, exactitude) ;
    - ``num_batches`` : nombre de lots ; ``final_running_train_acc`` : exactitude courante
      en fin d'entraînement ; ``seconds`` : durée ; ``config`` : les réglages.
    """

    batch_losses: list[float] = field(default_factory=list)
    running_train_acc: list[float] = field(default_factory=list)  # after each batch
    batch_tokens: list[int] = field(default_factory=list)  # real tokens per batch
    val_steps: list[int] = field(default_factory=list)  # batches seen at each validation
    val_losses: list[float] = field(default_factory=list)
    val_accs: list[float] = field(default_factory=list)
    epochs: int = 0
    seconds: float = 0.0
    config: dict = field(default_factory=dict)

    @property
    def num_batches(self) -> int:
        """Nombre de lots vus pendant l'entraînement."""
        return len(self.batch_losses)

    @property
    def final_running_train_acc(self) -> float:
        """Exactitude courante à la fin de l'entraînement (entre 0 et 1)."""
        return self.running_train_acc[-1] if self.running_train_acc else float("nan")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        """Checked: lists of numbers, numbers and a dict where expected (ValueError otherwise)."""
        if not isinstance(d, dict):
            raise ValueError(f"attendu un objet JSON, obtenu {type(d).__name__}")
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for key, value in known.items():
            if key == "config":
                ok = isinstance(value, dict)
            elif key in ("epochs", "seconds"):
                ok = _is_number(value)
            else:
                ok = isinstance(value, list) and all(_is_number(v) for v in value)
            if not ok:
                raise ValueError(f"champ {key!r} mal formé")
        return cls(**known)

    def to_json(self) -> bytes:
        """The exact bytes of history.json (run folders bind their digest)."""
        return json.dumps(self.to_dict(), indent=1).encode()

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "History":
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class EvalResult:
    loss: float
    accuracy: float
    n: int


def autocast(precision: str, device: torch.device | str = "cpu"):
    """bfloat16 autocast for ``precision="bf16"``, otherwise a no-op context."""
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return nullcontext()


def classification_logits(model, batch: Batch) -> torch.Tensor:
    """(B, num_classes) logits, read at each message's last real token."""
    return model(batch.input_ids, pos_ids=batch.pos_ids, attn_mask=batch.attn_mask,
                 read_at=(batch.rows, batch.last)).float()


def model_device(model) -> torch.device:
    """Device of the model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def train_classifier(
    model,
    train_loader: DataLoader,
    val_loader: DataLoader | None = None,
    cfg: TrainConfig | None = None,
    device: str | torch.device | None = None,
    progress: bool | None = None,
) -> History:
    """Entraîne les paramètres entraînables de ``model`` (LoRA et tête) avec AdamW.

    Une perte par lot et l'exactitude courante sont enregistrées dans l'historique
    renvoyé (``History``) ; ``val_loader`` : validation en fin d'époque (ou tous les
    ``cfg.eval_every`` lots). ``device`` : par défaut, celui du modèle. ``progress`` :
    barre de progression (par défaut, sauf pendant la correction).
    """
    cfg = cfg or TrainConfig()
    device = torch.device(device) if device is not None else model_device(model)
    with allocator_phase("train"):
        return _train(model, train_loader, val_loader, cfg, device, progress)


def _train(model, train_loader, val_loader, cfg: TrainConfig, device: torch.device, progress) -> History:
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("Aucun paramètre entraînable : appelez add_lora(model) avant l'entraînement.")
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = History(config=cfg.to_dict())
    correct = seen = 0
    start = time.perf_counter()
    model.to(device)
    order = getattr(train_loader, "batch_sampler", None)
    for epoch in range(cfg.num_epochs):
        model.train()
        if hasattr(order, "set_epoch"):  # the order is drawn from the seed and the epoch alone
            order.set_epoch(epoch)
        bar = progress_bar(train_loader, enable=progress, desc=f"Époque {epoch + 1}/{cfg.num_epochs}",
                           unit="lot")
        for batch in bar:
            batch = batch.to(device)
            with autocast(cfg.precision, device):
                logits = classification_logits(model, batch)
            loss = F.cross_entropy(logits, batch.labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            correct += (logits.argmax(-1) == batch.labels).sum().item()
            seen += len(batch.labels)
            history.batch_losses.append(loss.item())
            history.running_train_acc.append(correct / seen)
            history.batch_tokens.append(batch.num_tokens)
            bar.set_postfix_str(f"perte {fr_number(loss.item(), 3)}, exactitude courante "
                                f"{fr_percent(correct / seen, 1)}", refresh=False)
            step = history.num_batches
            if val_loader is not None and cfg.eval_every and step % cfg.eval_every == 0:
                _record_validation(history, model, val_loader, device, cfg, step)
        history.epochs = epoch + 1
        if val_loader is not None and not (cfg.eval_every and history.val_steps
                                           and history.val_steps[-1] == history.num_batches):
            _record_validation(history, model, val_loader, device, cfg, history.num_batches)
    history.seconds = time.perf_counter() - start
    model.eval()
    return history


def _record_validation(history: History, model, loader, device, cfg: TrainConfig, step: int) -> None:
    result = evaluate(model, loader, device, precision=cfg.precision)
    history.val_steps.append(step)
    history.val_losses.append(result.loss)
    history.val_accs.append(result.accuracy)
    model.train()


def evaluate(model, loader: DataLoader, device: str | torch.device | None = None,
             precision: str = "fp32", progress: bool | None = False) -> EvalResult:
    """Perte moyenne et exactitude de ``model`` sur tous les messages de ``loader``.

    Renvoie un résultat avec ``.loss``, ``.accuracy`` (entre 0 et 1) et ``.n`` (nombre
    de messages). ``device`` : par défaut, celui du modèle.
    """
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    if eval_memo.active():  # grading: this exact evaluation may have been done once already
        loader = list(loader)
        found = eval_memo.lookup(model, loader, precision, device)
        if found is not None:
            model.train(was_training)
            return found
    total_loss, correct, n = 0.0, 0, 0
    with allocator_phase("eval"), torch.inference_mode():
        for batch in progress_bar(loader, enable=progress, desc="Évaluation", unit="lot", leave=False):
            batch = batch.to(device)
            with autocast(precision, device):
                logits = classification_logits(model, batch)
            total_loss += F.cross_entropy(logits, batch.labels, reduction="sum").item()
            correct += (logits.argmax(-1) == batch.labels).sum().item()
            n += len(batch.labels)
    model.train(was_training)
    if n == 0:
        return EvalResult(math.nan, math.nan, 0)
    return EvalResult(total_loss / n, correct / n, n)


def evaluate_splits(model, loaders: dict[str, DataLoader], device: str | torch.device | None = None,
                    precision: str = "fp32", progress: bool | None = None) -> dict[str, EvalResult]:
    """``evaluate`` sur chaque jeu nommé : ``{"train": ..., "val": ..., "test": ...}``.

    ``loaders`` associe un nom à un DataLoader (``lab.eval_loader(datasets[nom])``) ;
    le résultat associe le même nom à un résultat avec ``.accuracy`` et ``.loss``.
    ``device`` : par défaut, celui du modèle.
    """
    bar = progress_bar(loaders.items(), enable=progress, desc="Évaluation", unit="jeu")
    return {name: evaluate(model, loader, device, precision) for name, loader in bar}
