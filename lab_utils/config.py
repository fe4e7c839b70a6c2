"""Configuration dataclasses and named presets for the model, LoRA and training.

Every value is validated when the object is built, and a bad value is reported
in French (students read these messages) with the expected and the given value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from .errors import ConfigError

ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")
BATCHING_MODES = ("packed", "padded", "grouped")


def _check_int(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{name} doit être un entier >= {minimum}, obtenu {value!r}."
        )


def _check_float(name: str, value, minimum: float = 0.0, inclusive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = math.isfinite(value) and (value >= minimum if inclusive else value > minimum)
    if not ok:
        bound = ">=" if inclusive else ">"
        raise ConfigError(f"{name} doit être un nombre {bound} {minimum:g}, obtenu {value!r}.")


@dataclass(frozen=True)
class GPTConfig:
    """L'architecture d'un GPT-2 (noms du cours) : taille du vocabulaire, longueur du
    contexte, dimension ``emb_dim`` (d), nombre de têtes et de blocs (``n_layers``)."""

    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.0
    qkv_bias: bool = True
    attn_impl: str = "sdpa"  # "sdpa" (fused kernel) or "eager" (explicit mask and softmax)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            _check_int(f"GPTConfig.{name}", getattr(self, name))
        if self.emb_dim % self.n_heads:
            raise ConfigError(
                f"GPTConfig.emb_dim ({self.emb_dim}) doit être divisible par "
                f"n_heads ({self.n_heads})."
            )
        if not 0.0 <= self.drop_rate < 1.0:
            raise ConfigError(f"GPTConfig.drop_rate doit être dans [0, 1), obtenu {self.drop_rate!r}.")
        if self.attn_impl not in ATTENTION_IMPLEMENTATIONS:
            raise ConfigError(
                f"GPTConfig.attn_impl doit être l'un de {ATTENTION_IMPLEMENTATIONS}, "
                f"obtenu {self.attn_impl!r}."
            )

    @property
    def head_dim(self) -> int:
        return self.emb_dim // self.n_heads

    def with_(self, **changes) -> "GPTConfig":
        """Return a copy with some fields changed (validated again)."""
        return replace(self, **changes)


GPT_PRESETS: dict[str, GPTConfig] = {
    "gpt2-small": GPTConfig(emb_dim=768, n_layers=12, n_heads=12),
    "gpt2-medium": GPTConfig(emb_dim=1024, n_layers=24, n_heads=16),
    "gpt2-large": GPTConfig(emb_dim=1280, n_layers=36, n_heads=20),
    "gpt2-xl": GPTConfig(emb_dim=1600, n_layers=48, n_heads=25),
    # Same design at toy size: the randomly initialised base of the "ci" profile and of tests.
    "gpt2-tiny": GPTConfig(emb_dim=64, n_layers=2, n_heads=4),
}


def gpt_config(name: str) -> GPTConfig:
    """La configuration d'un modèle par son nom : ``"gpt2-small"``, ``"gpt2-medium"``,
    ``"gpt2-large"``, ``"gpt2-xl"`` (ou ``"gpt2-tiny"``, le petit modèle des tests)."""
    try:
        return GPT_PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"Modèle inconnu {name!r}. Modèles disponibles : {', '.join(GPT_PRESETS)}."
        ) from None


# The six linears of each TransformerBlock, as named in model.py.
BLOCK_LINEARS = ("att.W_query", "att.W_key", "att.W_value", "att.out_proj", "ff.fc1", "ff.fc2")


@dataclass(frozen=True)
class LoRAConfig:
    """Les réglages de LoRA : rang ``rank`` (r), ``alpha`` (la mise à jour est
    (alpha / r) x A B) et ``targets``, les couches enveloppées dans chaque bloc
    (par défaut les six : W_query, W_key, W_value, out_proj, fc1, fc2)."""

    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = BLOCK_LINEARS

    def __post_init__(self) -> None:
        _check_int("LoRAConfig.rank", self.rank)
        _check_float("LoRAConfig.alpha", self.alpha)
        if isinstance(self.targets, str) or not self.targets:
            raise ConfigError(
                "LoRAConfig.targets doit être une liste non vide de noms de couches "
                f"(par ex. {BLOCK_LINEARS}), obtenu {self.targets!r}."
            )
        object.__setattr__(self, "targets", tuple(self.targets))

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


@dataclass(frozen=True)
class TrainConfig:
    """Les réglages de l'entraînement : ``num_epochs`` (époques), ``batch_size`` (messages
    par lot), ``lr`` (taux d'apprentissage d'AdamW), ``weight_decay``, ``seed`` (graine),
    ``eval_every`` (valider tous les N lots ; 0 : en fin d'époque), ``batching``
    (``"packed"``, ``"padded"`` ou ``"grouped"``), ``precision`` (``"fp32"`` ou ``"bf16"``)."""

    num_epochs: int = 1
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.01
    seed: int = 42
    eval_every: int = 0  # validate every N batches (0: only at the end of each epoch)
    eval_tokens: int = 512  # most tokens (padding included) per evaluation batch
    batching: str = "packed"  # "packed" (no padding), "padded" or "grouped" (see loaders.py)
    precision: str = "fp32"  # "fp32" or "bf16" (bfloat16 autocast, opt-in)
    num_threads: int = 0  # torch threads (0: leave PyTorch's default)

    def __post_init__(self) -> None:
        _check_int("TrainConfig.num_epochs", self.num_epochs)
        _check_int("TrainConfig.batch_size", self.batch_size)
        _check_int("TrainConfig.eval_tokens", self.eval_tokens)
        _check_int("TrainConfig.eval_every", self.eval_every, minimum=0)
        _check_int("TrainConfig.seed", self.seed, minimum=0)
        _check_int("TrainConfig.num_threads", self.num_threads, minimum=0)
        _check_float("TrainConfig.lr", self.lr)
        if self.lr >= 1.0:
            raise ConfigError(f"TrainConfig.lr doit être < 1 (typiquement 1e-4), obtenu {self.lr!r}.")
        _check_float("TrainConfig.weight_decay", self.weight_decay, inclusive=True)
        if self.batching not in BATCHING_MODES:
            raise ConfigError(
                f"TrainConfig.batching doit être l'un de {BATCHING_MODES}, obtenu {self.batching!r}."
            )
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(
                f"TrainConfig.precision doit être 'fp32' ou 'bf16', obtenu {self.precision!r}."
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DataConfig:
    """La préparation du corpus : ``deduplicate`` (retirer les doublons exacts),
    ``balance`` (autant de ham que de spam), ``split`` (parts des trois jeux), ``seed``."""

    deduplicate: bool = True
    balance: bool = True
    split: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 42

    def __post_init__(self) -> None:
        split = tuple(self.split)
        if len(split) != 3 or any(not 0 < f < 1 for f in split) or abs(sum(split) - 1) > 1e-9:
            raise ConfigError(
                "DataConfig.split doit être trois fractions positives (train, val, test) "
                f"de somme 1, obtenu {self.split!r}."
            )
        object.__setattr__(self, "split", split)
        _check_int("DataConfig.seed", self.seed, minimum=0)


__all__ = [
    "GPTConfig",
    "GPT_PRESETS",
    "gpt_config",
    "BLOCK_LINEARS",
    "LoRAConfig",
    "TrainConfig",
    "DataConfig",
]
