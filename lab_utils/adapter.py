"""Save and load a LoRA adapter: the LoRA matrices and the classification head only.

A few MB instead of the 500 MB model. The file is safetensors with metadata naming
the base model (and a fingerprint of its weights), the rank, alpha and targets, so
that it is refused, with a message naming the mismatch, on any other base.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .config import LoRAConfig
from .errors import AdapterError
from .lora import add_lora, lora_layers
from .model import replace_head
from .paths import usual_mode

FORMAT = "tp3-lora-adapter/1"


def base_fingerprint(model: nn.Module) -> str:
    """Short hash of the frozen base weights (names, shapes and a sample of values).

    LoRA and head tensors are left out, and a merged LoRA layer is unmerged first
    by the caller, so the fingerprint identifies the pretrained (or seeded) base.
    """
    digest = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if ".lora." in name or name.startswith("out_head."):
            continue
        name = name.replace(".linear.", ".")  # same name before and after add_lora
        flat = p.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 256)][:256].float().cpu().contiguous()
        digest.update(f"{name}{tuple(p.shape)}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA matrices and head weights, by parameter name."""
    state = {f"{name}.lora.{k}": v for name, layer in lora_layers(model).items()
             for k, v in layer.lora.state_dict().items()}
    state.update({f"out_head.{k}": v for k, v in model.out_head.state_dict().items()})
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _lora_settings(model: nn.Module) -> tuple[int, float, list[str]]:
    layers = lora_layers(model)
    if not layers:
        raise AdapterError("Ce modèle n'a pas de couches LoRA : rien à sauvegarder.")
    first = next(iter(layers.values())).lora
    targets = sorted({name.split(".", 2)[2] for name in layers})
    return first.rank, first.alpha, targets


def save_adapter(model: nn.Module, path: str | Path, base_model_id: str, extra: dict | None = None) -> Path:
    """Write the adapter atomically (a temp file renamed into place)."""
    if any(layer.merged for layer in lora_layers(model).values()):
        raise AdapterError("Appelez unmerge_lora(model) avant de sauvegarder l'adaptateur.")
    rank, alpha, targets = _lora_settings(model)
    meta = {
        "format": FORMAT,
        "base_model": base_model_id,
        "base_fingerprint": base_fingerprint(model),
        "rank": str(rank),
        "alpha": repr(float(alpha)),
        "targets": json.dumps(targets),
        "num_classes": str(model.out_head.out_features),
        "n_layers": str(model.cfg.n_layers),
        "emb_dim": str(model.cfg.emb_dim),
    }
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(adapter_state(model), tmp, metadata=meta)
        os.chmod(tmp, usual_mode())  # like its siblings in the run folder
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an adapter file (its header only), or AdapterError."""
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterError(
            f"{path} n'est pas un adaptateur lisible ({err}) : fichier tronqué ou d'un autre format."
        ) from err


REQUIRED_META = ("base_model", "base_fingerprint", "rank", "alpha", "targets", "num_classes")


def read_adapter(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of an adapter file, checked to be one: our format tag,
    complete and well-formed settings, float32 tensors with finite values."""
    path = Path(path)
    if not path.is_file():
        what = "c'est un dossier, attendu un fichier .safetensors" if path.is_dir() else "introuvable"
        raise AdapterError(f"Adaptateur {path} : {what}.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise AdapterError(
            f"{path} n'est pas un adaptateur lisible ({err}) : fichier tronqué ou d'un autre format."
        ) from err
    if meta.get("format") != FORMAT:
        raise AdapterError(
            f"{path} : format attendu {FORMAT!r}, obtenu {meta.get('format')!r} "
            "(ce n'est pas un adaptateur LoRA de ce TP)."
        )
    _check_settings(path, meta)
    for name, tensor in tensors.items():
        if tensor.dtype != torch.float32:
            raise AdapterError(f"{path} : le tenseur {name!r} est en {tensor.dtype}, attendu torch.float32.")
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise AdapterError(
                f"{path} : le tenseur {name!r} contient {bad} valeur(s) non finie(s) (NaN ou infini) : "
                "l'entraînement a divergé (baissez le taux d'apprentissage) ou le fichier est abîmé."
            )
    return tensors, meta


def _check_settings(path: Path, meta: dict[str, str]) -> None:
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise AdapterError(f"{path} : métadonnées incomplètes, il manque {missing}.")
    try:
        rank, alpha, num_classes = int(meta["rank"]), float(meta["alpha"]), int(meta["num_classes"])
        targets = json.loads(meta["targets"])
    except ValueError as err:
        raise AdapterError(f"{path} : métadonnée illisible ({err}).") from None
    if rank < 1 or not (math.isfinite(alpha) and alpha > 0) or num_classes < 2:
        raise AdapterError(
            f"{path} : réglages invalides rank={meta['rank']}, alpha={meta['alpha']}, "
            f"num_classes={meta['num_classes']} (attendu rank >= 1, alpha > 0 fini, au moins 2 classes)."
        )
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) for t in targets):
        raise AdapterError(f"{path} : cibles LoRA attendues sous forme de liste de noms, obtenu {meta['targets']!r}.")


def load_adapter(model: nn.Module, path: str | Path, base_model_id: str) -> nn.Module:
    """Put the adapter at ``path`` onto ``model``, a base model (with LM head) or a
    model already prepared with the same head and LoRA settings.

    Refuses, before changing anything, a file made for another base model or with
    other LoRA settings.
    """
    tensors, meta = read_adapter(path)
    if meta["base_model"] != base_model_id:
        raise AdapterError(
            f"Adaptateur entraîné sur {meta['base_model']!r}, mais le modèle chargé est "
            f"{base_model_id!r}. Utilisez le même modèle de base (même TP3_PROFILE)."
        )
    fingerprint = base_fingerprint(model)
    if meta["base_fingerprint"] != fingerprint:
        raise AdapterError(
            f"Les poids du modèle de base diffèrent de ceux de l'entraînement (empreinte "
            f"attendue {meta['base_fingerprint']}, obtenue {fingerprint}) : rechargez le modèle "
            "de base sans le modifier."
        )
    rank, alpha, targets = int(meta["rank"]), float(meta["alpha"]), json.loads(meta["targets"])
    num_classes = int(meta["num_classes"])
    if lora_layers(model):
        have = _lora_settings(model)
        if (have[0], float(have[1]), have[2]) != (rank, alpha, targets):
            raise AdapterError(
                f"Réglages LoRA différents : adaptateur rank={rank}, alpha={alpha:g}, cibles {targets} ; "
                f"modèle rank={have[0]}, alpha={have[1]:g}, cibles {have[2]}."
            )
        if model.out_head.out_features != num_classes:
            raise AdapterError(
                f"Tête de classification : l'adaptateur a {num_classes} classes, le modèle "
                f"{model.out_head.out_features}."
            )
    expected = _expected_shapes(model, rank, num_classes, targets)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [f"{k}: {list(tensors[k].shape)} au lieu de {list(s)}" for k, s in expected.items()
             if k in tensors and tuple(tensors[k].shape) != s]
    if missing or unexpected or wrong:
        raise AdapterError(
            f"{Path(path).name} ne correspond pas à ce modèle : manquants {missing[:3]}, "
            f"inattendus {unexpected[:3]}, formes {wrong[:3]}."
        )
    if not lora_layers(model):
        replace_head(model, num_classes)
        add_lora(model, LoRAConfig(rank=rank, alpha=alpha, targets=tuple(targets)))
    device = model.tok_emb.weight.device
    with torch.no_grad():
        params = dict(model.named_parameters())
        for key, value in tensors.items():
            params[key].copy_(value.to(device))
    return model


def _expected_shapes(model, rank: int, num_classes: int, targets: list[str]) -> dict[str, tuple]:
    """Adapter key -> shape for ``model`` with these settings (without changing it)."""
    shapes = {"out_head.weight": (num_classes, model.cfg.emb_dim), "out_head.bias": (num_classes,)}
    for i, block in enumerate(model.trf_blocks):
        for target in targets:
            try:
                layer = block.get_submodule(target)
            except AttributeError:
                raise AdapterError(f"Cible LoRA {target!r} absente du modèle.") from None
            linear = getattr(layer, "linear", layer)
            if not isinstance(linear, nn.Linear):
                raise AdapterError(f"Cible LoRA {target!r} : attendu une couche linéaire, obtenu {type(linear).__name__}.")
            prefix = f"trf_blocks.{i}.{target}.lora"
            shapes[f"{prefix}.A"] = (linear.in_features, rank)
            shapes[f"{prefix}.B"] = (rank, linear.out_features)
    return shapes
