"""Parameter counting: what the model holds and what LoRA trains.

Counts work on models built on the ``meta`` device, so GPT-2 medium and larger
can be counted without allocating their weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from torch import nn

from .config import LoRAConfig, gpt_config
from .lora import add_lora, lora_layers
from .model import build_model, replace_head


@dataclass(frozen=True)
class ParameterCounts:
    """Counts of one model; shares are percentages of ``total``."""

    total: int
    trainable: int
    lora: int

    @property
    def base(self) -> int:
        return self.total - self.lora

    @property
    def trainable_share(self) -> float:
        return 100.0 * self.trainable / self.total

    @property
    def lora_share(self) -> float:
        return 100.0 * self.lora / self.total


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Nombre de paramètres de ``model`` (seulement les entraînables si ``trainable_only``) ;
    un tenseur partagé par deux modules compte une fois."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_lora_parameters(model: nn.Module) -> int:
    """Nombre de paramètres des matrices A et B de LoRA dans ``model``."""
    return sum(p.numel() for layer in lora_layers(model).values() for p in layer.lora.parameters())


def parameter_counts(model: nn.Module) -> ParameterCounts:
    """Les nombres de paramètres de ``model`` : ``.total``, ``.trainable`` (entraînables),
    ``.lora`` ; ``.trainable_share`` et ``.lora_share`` en pourcentage du total."""
    return ParameterCounts(
        total=count_parameters(model),
        trainable=count_parameters(model, trainable_only=True),
        lora=count_lora_parameters(model),
    )


def lora_parameters_formula(model_name: str = "gpt2-small", lora: LoRAConfig | None = None) -> int:
    """LoRA parameters from the formula: sum over wrapped layers of rank * (d_in + d_out).

    Only valid for the default targets (the six linears of each block).
    """
    cfg, lora = gpt_config(model_name), lora or LoRAConfig()
    C = cfg.emb_dim
    # W_query, W_key, W_value, out_proj: C -> C; fc1: C -> 4C; fc2: 4C -> C.
    per_block = 4 * (C + C) + (C + 4 * C) + (4 * C + C)  # = 18 C
    return cfg.n_layers * lora.rank * per_block


def lora_model_counts(
    model_name: str = "gpt2-small",
    num_classes: int | None = 2,
    lora: LoRAConfig | None = None,
) -> ParameterCounts:
    """Counts for a model with LoRA, built on ``meta`` (nothing allocated).

    ``num_classes=None`` keeps the language-model head; an int replaces it by a
    classification head with that many outputs.
    """
    model = build_model(gpt_config(model_name), device="meta")
    if num_classes is not None:
        replace_head(model, num_classes)
    add_lora(model, lora or LoRAConfig())
    return parameter_counts(model)


def parameter_table(models: tuple[str, ...] = ("gpt2-small", "gpt2-medium"), lora: LoRAConfig | None = None) -> pd.DataFrame:
    """Un tableau, une ligne par modèle et par tête : total, base, LoRA, paramètres
    entraînables et parts (en %), comptés sur le périphérique ``meta``."""
    rows = []
    for name in models:
        for head, num_classes in (("langage (50\u202f257)", None), ("classification (2)", 2)):
            c = lora_model_counts(name, num_classes, lora)
            rows.append({
                "modèle": name, "tête": head, "total": c.total, "base": c.base, "LoRA": c.lora,
                "entraînables": c.trainable, "part LoRA (%)": round(c.lora_share, 3),
                "part entraînable (%)": round(c.trainable_share, 3),
            })
    return pd.DataFrame(rows)


def format_parameter_table(table: pd.DataFrame) -> str:
    """``parameter_table`` as French text: 164 364 288, 0,807."""
    from .french import fr_number

    shares = {"part LoRA (%)", "part entraînable (%)"}
    formatters = {col: (lambda v: fr_number(v, 3)) if col in shares else fr_number
                  for col in table.columns if col not in ("modèle", "tête")}
    return table.to_string(index=False, formatters=formatters)
