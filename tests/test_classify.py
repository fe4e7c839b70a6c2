"""classify_text / classify_texts: padding invariance and input checks."""

from __future__ import annotations

import pytest
import torch

from lab_utils.classify import Prediction, classify_text, classify_texts
from lab_utils.errors import InputError
from lab_utils.lora import lora_layers
from lab_utils.run import build_classifier


@pytest.fixture(scope="module")
def model():
    model, _ = build_classifier("ci", seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # an adapted model, not just the initial one
        for layer in lora_layers(model).values():
            layer.lora.B.normal_(0, 0.1, generator=g)
        model.out_head.weight.normal_(0, 1, generator=g)
    return model


LONGER = [
    "Congratulations! You've been selected for a FREE holiday. Text HOLIDAY to 80082 now to claim "
    "your prize, T&Cs apply, 18+ only, std msg rates.",
    "ok see you at the station at 7 then, don't forget the tickets and the charger please",
]


def test_prediction_fields(model, tokenizer):
    pred = classify_text("Can you pick up some milk on your way home?", model, tokenizer, "cpu")
    label, confidence = pred
    assert isinstance(pred, Prediction) and label in ("ham", "spam")
    assert 0.5 <= confidence <= 1.0


@pytest.mark.parametrize("text", ["Hey, are we still meeting for lunch tomorrow?", "WIN £1000 now! Txt 8007",
                                  "ok"])
def test_same_result_alone_and_in_padded_batch(model, tokenizer, text):
    alone = classify_text(text, model, tokenizer, "cpu")
    in_batch = classify_texts([LONGER[0], text, LONGER[1]], model, tokenizer, "cpu")[1]
    assert in_batch.label == alone.label
    assert abs(in_batch.confidence - alone.confidence) <= 1e-5


def test_batch_keeps_order(model, tokenizer):
    texts = ["a", LONGER[0], "b c", LONGER[1]]
    batched = classify_texts(texts, model, tokenizer, batch_size=2)
    one_by_one = [classify_text(t, model, tokenizer) for t in texts]
    for a, b in zip(batched, one_by_one):
        assert a.label == b.label and abs(a.confidence - b.confidence) <= 1e-5


def test_confidence_is_the_softmax_of_the_last_real_token(model, tokenizer):
    text = "Call now to claim"
    ids = torch.tensor([tokenizer.encode_ordinary(text)])
    with torch.no_grad():
        probs = torch.softmax(model(ids)[0, -1], dim=-1)  # oracle: plain forward, last position
    pred = classify_text(text, model, tokenizer)
    assert pred.label == ("ham", "spam")[int(probs.argmax())]
    assert abs(pred.confidence - float(probs.max())) <= 1e-5


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"])
def test_empty_text_is_refused(model, tokenizer, bad):
    with pytest.raises(InputError, match="vide"):
        classify_text(bad, model, tokenizer)


@pytest.mark.parametrize("bad", [None, 42, b"bytes", ["list"]])
def test_non_text_is_refused(model, tokenizer, bad):
    with pytest.raises(InputError, match="Attendu un texte"):
        classify_text(bad, model, tokenizer)


def test_batch_names_the_bad_text(model, tokenizer):
    with pytest.raises(InputError, match="texte n° 1"):
        classify_texts(["ok", ""], model, tokenizer)
    with pytest.raises(InputError, match="classify_text"):
        classify_texts("a single string", model, tokenizer)


def test_long_emoji_and_non_latin_texts(model, tokenizer):
    long_text = "spam " * 3000  # far beyond the 1024-token context
    texts = [long_text, "🎉🎁 Gagnez maintenant !!! 📱", "你好，明天见", "Привет, как дела?", "<|endoftext|>"]
    preds = classify_texts(texts, model, tokenizer)
    assert all(p.label in ("ham", "spam") for p in preds)
    truncated = " ".join(["spam"] * 3000)
    assert len(tokenizer.encode_ordinary(truncated)) > model.cfg.context_length


def test_model_mode_is_restored(model, tokenizer):
    model.train()
    classify_text("hello", model, tokenizer)
    assert model.training
    model.eval()
