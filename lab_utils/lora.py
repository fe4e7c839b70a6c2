"""LoRA: low-rank adapters beside frozen linear layers.

A wrapped layer computes ``linear(x) + scale * x @ A @ B`` with ``scale = alpha / rank``,
A (d_in x rank) random and B (rank x d_out) zero, so a freshly wrapped model computes
exactly what the original model computed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import LoRAConfig
from .errors import ConfigError
from .french import fr_number


class LoRALayer(nn.Module):
    """The trainable low-rank update: x -> scale * x @ A @ B."""

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float):
        super().__init__()
        self.rank = rank
        self.alpha = alpha
        self.scale = alpha / rank
        self.A = nn.Parameter(torch.empty(in_dim, rank))
        self.B = nn.Parameter(torch.zeros(rank, out_dim))
        # Same bound as nn.Linear's default init for a layer with in_dim inputs.
        bound = 1.0 / math.sqrt(in_dim)
        nn.init.uniform_(self.A, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (..., in) -> (..., rank) -> (..., out); scaling the small middle tensor is cheaper.
        return (self.scale * (x @ self.A)) @ self.B

    def delta_weight(self) -> torch.Tensor:
        """The update in nn.Linear's (out, in) layout."""
        return self.scale * (self.A @ self.B).T

    def extra_repr(self) -> str:
        return f"A: {tuple(self.A.shape)}, B: {tuple(self.B.shape)}, rank={self.rank}, alpha={self.alpha:g}"


class LinearWithLoRA(nn.Module):
    """Une couche linéaire gelée (``linear``) et sa mise à jour LoRA (``lora`` : A, B) ;
    ``merge`` ajoute la mise à jour à la couche, ``unmerge`` l'en retire."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha)
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        if self.merged:
            return out
        # out + self.lora(x), added in place by one fused multiply-add (addmm_): no second
        # output tensor and no extra pass over it. Autograd allows it because the linear's
        # backward does not need its own output. (In-place ops escape autocast: hence the casts.)
        lora = self.lora
        x_a = x.reshape(-1, x.shape[-1]) @ lora.A
        out.view(-1, out.shape[-1]).addmm_(x_a.to(out.dtype), lora.B.to(out.dtype), alpha=lora.scale)
        return out

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + delta W: one matmul per call instead of three, same outputs."""
        if not self.merged:
            self.linear.weight += self.lora.delta_weight().to(self.linear.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo ``merge`` (W <- W - delta W)."""
        if self.merged:
            self.linear.weight -= self.lora.delta_weight().to(self.linear.weight.dtype)
            self.merged = False


@dataclass(frozen=True)
class LoRAReport:
    """What ``add_lora`` did."""

    wrapped: tuple[str, ...]
    rank: int
    alpha: float
    lora_parameters: int

    def __str__(self) -> str:
        return (f"LoRA (rank={self.rank}, alpha={fr_number(self.alpha)}) sur {len(self.wrapped)} couches "
                f"linéaires : {fr_number(self.lora_parameters)} paramètres LoRA")


def lora_layers(model: nn.Module) -> dict[str, LinearWithLoRA]:
    """All LinearWithLoRA modules of ``model``, by qualified name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LinearWithLoRA)}


def add_lora(model: nn.Module, cfg: LoRAConfig | None = None, seed: int | None = None) -> LoRAReport:
    """Enveloppe les couches visées de chaque bloc par LoRA et gèle le reste du modèle.

    ``cfg.targets`` : les couches visées dans un bloc (par défaut les six couches
    linéaires). Ensuite, seuls A et B de LoRA, et une tête de classification si le modèle
    en a une, sont entraînables. ``seed`` : graine de l'initialisation aléatoire de A.
    Renvoie un rapport (couches enveloppées, nombre de paramètres LoRA).
    """
    cfg = cfg or LoRAConfig()
    if lora_layers(model):
        raise ConfigError("Ce modèle contient déjà des couches LoRA : rechargez le modèle de base.")
    blocks = getattr(model, "trf_blocks", None)
    if blocks is None:
        raise ConfigError("add_lora attend un GPTModel (attribut trf_blocks introuvable).")

    sites = []  # check every target before wrapping any, so a bad config leaves the model as it was
    for i, block in enumerate(blocks):
        for target in cfg.targets:
            parent_name, _, attr = target.rpartition(".")
            try:
                parent = block.get_submodule(parent_name) if parent_name else block
            except AttributeError:
                parent = None
            linear = getattr(parent, attr, None)
            if not isinstance(linear, nn.Linear):
                raise ConfigError(
                    f"Cible LoRA {target!r} : attendu un nn.Linear dans trf_blocks.{i}, "
                    f"obtenu {type(linear).__name__}."
                )
            if cfg.rank > min(linear.in_features, linear.out_features):
                raise ConfigError(
                    f"LoRAConfig.rank doit être <= {min(linear.in_features, linear.out_features)} "
                    f"(plus petite dimension de {target}, {linear.in_features} x {linear.out_features}), "
                    f"obtenu {cfg.rank} : au-delà, la mise à jour n'est plus de rang faible."
                )
            sites.append((parent, attr, linear, f"trf_blocks.{i}.{target}"))
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        for parent, attr, linear, _ in sites:
            with torch.device(linear.weight.device):
                setattr(parent, attr, LinearWithLoRA(linear, cfg.rank, cfg.alpha))
    wrapped = [name for *_, name in sites]
    freeze_base(model)
    n_lora = sum(p.numel() for m in lora_layers(model).values() for p in m.lora.parameters())
    return LoRAReport(tuple(wrapped), cfg.rank, cfg.alpha, n_lora)


def has_classification_head(model: nn.Module) -> bool:
    """True when ``out_head`` was replaced (it no longer predicts the vocabulary)."""
    return model.out_head.out_features != model.cfg.vocab_size


def freeze_base(model: nn.Module) -> None:
    """Freeze everything but LoRA (A, B) and a classification head.

    The pretrained language-model head belongs to the frozen base; a new
    classification head has no pretrained values and is trained in full.
    """
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in lora_layers(model).values():
        layer.lora.requires_grad_(True)
    if has_classification_head(model):
        model.out_head.requires_grad_(True)


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA update into its base weight; returns the number of layers merged."""
    layers = lora_layers(model).values()
    for layer in layers:
        layer.merge()
    return len(layers)


def unmerge_lora(model: nn.Module) -> int:
    """Undo ``merge_lora``; returns the number of layers unmerged."""
    layers = lora_layers(model).values()
    for layer in layers:
        layer.unmerge()
    return len(layers)
