"""Classify texts with the fine-tuned model.

The class is read at the last real token of each text; texts in a batch are padded
on the right, which causal attention never lets a real token see, so a text gets the
same label and confidence alone or in any batch.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import torch

from .data import LABELS
from .errors import InputError
from .loaders import encode, pad
from .train import autocast, classification_logits, model_device


class Prediction(NamedTuple):
    """Une prédiction : ``label`` (``"ham"`` ou ``"spam"``) et ``confidence``, la probabilité
    de cette classe (entre 0,5 et 1)."""

    label: str
    confidence: float


def _check_text(text, index: int | None = None) -> str:
    where = "" if index is None else f" (texte n° {index})"
    if not isinstance(text, str):
        raise InputError(f"Attendu un texte (str){where}, obtenu {type(text).__name__} : {text!r:.60}.")
    if not any(ch.isprintable() and not ch.isspace() for ch in text):
        raise InputError(
            f"Le texte{where} est vide (ou n'a aucun caractère visible) : écrivez un message à classer."
        )
    return text


def _check_model(model, tokenizer) -> None:
    """Catch swapped arguments and a model without its 2-class head, with a clear message."""
    head = getattr(model, "out_head", None)
    if not isinstance(model, torch.nn.Module) or head is None or not hasattr(tokenizer, "encode_ordinary"):
        raise InputError(
            "Arguments attendus : (textes, model, tokenizer, device), obtenu model="
            f"{type(model).__name__}, tokenizer={type(tokenizer).__name__}."
        )
    if head.out_features != len(LABELS):
        raise InputError(
            f"Le modèle a {head.out_features} sorties, attendu {len(LABELS)} (ham, spam) : "
            "utilisez le classifieur (build_classifier ou replace_head), pas le modèle de langue."
        )


@torch.inference_mode()
def classify_texts(texts: Sequence[str], model, tokenizer, device: str | torch.device | None = None,
                   batch_size: int = 32, precision: str = "fp32") -> list[Prediction]:
    """Les prédictions de ``model`` pour plusieurs textes, dans l'ordre : une liste de
    ``Prediction(label, confidence)``. Un texte plus long que le contexte du modèle est
    coupé à ses ``context_length`` premiers tokens ; ``<|endoftext|>`` dans un texte est
    lu comme du texte. ``device`` : par défaut, celui du modèle."""
    if isinstance(texts, str):
        raise InputError("classify_texts attend une liste de textes ; pour un seul texte, utilisez classify_text.")
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
        raise InputError(f"classify_texts attend une liste de textes (str), obtenu {type(texts).__name__}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size doit être un entier >= 1, obtenu {batch_size!r}.")
    _check_model(model, tokenizer)
    texts = [_check_text(t, i) for i, t in enumerate(texts)]
    device = torch.device(device) if device is not None else model_device(model)
    max_length = model.cfg.context_length
    encoded = [encode(t, tokenizer, max_length) for t in texts]
    was_training = model.training
    model.eval()
    order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))  # little padding per batch
    probs = [None] * len(texts)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch = pad([(encoded[i], 0) for i in rows]).to(device)
        with autocast(precision, device):
            logits = classification_logits(model, batch)
        for i, p in zip(rows, torch.softmax(logits, dim=-1).cpu()):
            probs[i] = p
    model.train(was_training)
    predictions = []
    for p in probs:
        k = int(p.argmax())
        predictions.append(Prediction(LABELS[k], float(p[k])))
    return predictions


def classify_text(text: str, model, tokenizer, device: str | torch.device | None = None) -> Prediction:
    """La classe (``"spam"`` ou ``"ham"``) et la confiance (probabilité de cette classe,
    entre 0,5 et 1) que ``model`` donne à un texte : une ``Prediction(label, confidence)``.

    >>> label, confidence = classify_text("WINNER!! Call 0906 now", model, tokenizer, device)
    """
    return classify_texts([_check_text(text)], model, tokenizer, device)[0]
