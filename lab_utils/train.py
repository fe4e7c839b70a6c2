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

from .config import TrainConfig
from .loaders import Batch
from .memory import allocator_phase
from .progress import progress_bar


@dataclass
class History:
    """What one fine-tuning run recorded, batch by batch."""

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
        return len(self.batch_losses)

    @property
    def final_running_train_acc(self) -> float:
        return self.running_train_acc[-1] if self.running_train_acc else float("nan")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

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


def train_classifier(
    model,
    train_loader: DataLoader,
    val_loader: DataLoader | None = None,
    cfg: TrainConfig | None = None,
    device: str | torch.device = "cpu",
    progress: bool | None = None,
) -> History:
    """Fine-tune the trainable parameters of ``model`` (LoRA + head) with AdamW."""
    cfg = cfg or TrainConfig()
    with allocator_phase("train"):
        return _train(model, train_loader, val_loader, cfg, torch.device(device), progress)


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
    for epoch in range(cfg.num_epochs):
        model.train()
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
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{correct / seen:.1%}", refresh=False)
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


def evaluate(model, loader: DataLoader, device: str | torch.device = "cpu",
             precision: str = "fp32", progress: bool | None = False) -> EvalResult:
    """Mean loss and accuracy of ``model`` over every message of ``loader``."""
    was_training = model.training
    model.eval()
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


def evaluate_splits(model, loaders: dict[str, DataLoader], device="cpu", precision: str = "fp32",
                    progress: bool | None = None) -> dict[str, EvalResult]:
    """``evaluate`` on each named loader (e.g. train, val, test)."""
    bar = progress_bar(loaders.items(), enable=progress, desc="Évaluation", unit="partie")
    return {name: evaluate(model, loader, device, precision) for name, loader in bar}
