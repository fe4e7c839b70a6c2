"""Bad inputs: texts to classify, adapter files, configuration values.

Each bad input must be refused with a French message naming the problem (the
expected and the given value), and must change nothing: a refused adapter leaves
the model exactly as it was, a refused LoRA setting wraps no layer. Odd but valid
texts (very long, emoji, non-Latin scripts, ``<|endoftext|>`` inside) are classified
exactly like the token ids a plain forward pass reads (independent oracle).
"""

from __future__ import annotations

import io
import json
import math
import re
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lab_utils.adapter import REQUIRED_META, load_adapter, save_adapter
from lab_utils.classify import classify_text, classify_texts
from lab_utils.config import DataConfig, LoRAConfig, TrainConfig, gpt_config
from lab_utils.errors import AdapterError, ConfigError, InputError
from lab_utils.lora import add_lora, lora_layers
from lab_utils.model import replace_head
from lab_utils.profiles import get_profile, load_base_model
from lab_utils.run import build_classifier

CI = get_profile("ci")


@pytest.fixture(scope="module")
def model():
    model, _ = build_classifier(CI, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # an adapted model, so that texts get different scores
        for layer in lora_layers(model).values():
            layer.lora.B.normal_(0, 0.1, generator=g)
        model.out_head.weight.normal_(0, 1, generator=g)
    return model.eval()


def _oracle(model, ids: list[int]) -> tuple[str, float]:
    """Label and confidence read by a plain forward pass at the last token."""
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([ids]))[0, -1], dim=-1)
    k = int(probs.argmax())
    return ("ham", "spam")[k], float(probs[k])


# ----------------------------------------------------------------------------- texts

EMPTY_TEXTS = ["", " ", "\n\t\r", "\u00a0", "\u3000", "\u200b", "\ufeff", "\x00", "\u200b \u200b"]
NOT_TEXTS = [None, 42, 3.5, float("nan"), b"bytes", bytearray(b"x"), ["list"], ("tuple",), {"k": 1}]


@pytest.mark.parametrize("text", EMPTY_TEXTS, ids=repr)
def test_empty_or_invisible_text_is_refused(model, tokenizer, text):
    with pytest.raises(InputError, match="vide"):
        classify_text(text, model, tokenizer)
    with pytest.raises(InputError, match="texte n° 1.*vide"):
        classify_texts(["ok", text], model, tokenizer)


@pytest.mark.parametrize("value", NOT_TEXTS, ids=repr)
def test_non_text_is_refused(model, tokenizer, value):
    with pytest.raises(InputError, match=f"Attendu un texte \\(str\\), obtenu {type(value).__name__}"):
        classify_text(value, model, tokenizer)
    with pytest.raises(InputError, match="texte n° 0"):
        classify_texts([value], model, tokenizer)


@pytest.mark.parametrize("texts", [None, 42, b"two words", bytearray(b"ab"), "one string", object()], ids=lambda v: type(v).__name__ if type(v) is object else repr(v))
def test_classify_texts_wants_a_list_of_texts(model, tokenizer, texts):
    with pytest.raises(InputError, match="classify_texts attend une liste de textes|utilisez classify_text"):
        classify_texts(texts, model, tokenizer)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True, "8", None], ids=repr)
def test_bad_batch_size_is_refused(model, tokenizer, batch_size):
    with pytest.raises(InputError, match=f"batch_size doit être un entier >= 1, obtenu {batch_size!r}"):
        classify_texts(["ok"], model, tokenizer, batch_size=batch_size)


def test_swapped_or_missing_model_and_tokenizer(model, tokenizer):
    for args in [(tokenizer, model), (None, tokenizer), (model, None)]:
        with pytest.raises(InputError, match="Arguments attendus : \\(textes, model, tokenizer, device\\)"):
            classify_text("hello", *args)


def test_language_model_without_classification_head_is_refused(tokenizer):
    base = load_base_model(CI)
    with pytest.raises(InputError, match="50257 sorties, attendu 2"):
        classify_text("hello", base, tokenizer)


ODD_TEXTS = {
    "emoji": "🎉🎁 Gagnez maintenant !!! 📱👉 http://x.co",
    "chinese": "你好，明天见",
    "russian": "Привет, как дела?",
    "arabic": "مرحبا، كيف حالك؟",
    "hindi": "नमस्ते, आप कैसे हैं?",
    "combining": "Cafe\u0301 gratuit, re\u0301pondez STOP",
    "rtl-marks": "\u202eWIN\u202c \u200fprize",
    "lone-surrogate": "broken \ud800 text",
    "special-token": "<|endoftext|>",
    "special-inside": "Call now<|endoftext|>to claim your prize",
    "control-chars": "ok\x07\x1b[31m red",
    "one-char": ".",
}


@pytest.mark.parametrize("name", list(ODD_TEXTS))
def test_odd_texts_are_classified_like_their_plain_tokens(model, tokenizer, name):
    text = ODD_TEXTS[name]
    ids = tokenizer.encode_ordinary(text)
    assert 50256 not in ids  # "<|endoftext|>" in a text is plain characters, never the pad token
    label, confidence = classify_text(text, model, tokenizer)
    want_label, want_confidence = _oracle(model, ids)
    assert label == want_label and abs(confidence - want_confidence) <= 1e-5


def test_text_beyond_the_context_is_cut_to_its_first_tokens(model, tokenizer):
    text = "Free entry to win a prize, " * 400 + "ok see you at home"  # 2,805 tokens
    ids = tokenizer.encode_ordinary(text)
    n = model.cfg.context_length
    assert len(ids) > 2 * n
    label, confidence = classify_text(text, model, tokenizer)
    want_label, want_confidence = _oracle(model, ids[:n])
    assert label == want_label and abs(confidence - want_confidence) <= 1e-5
    assert classify_texts([text, "short"], model, tokenizer)[0] == (label, pytest.approx(confidence, abs=1e-5))


def test_other_containers_and_string_types_are_accepted(model, tokenizer):
    texts = ["Call 0800 now", "see you"]
    expected = classify_texts(texts, model, tokenizer)
    assert classify_texts(pd.Series(texts), model, tokenizer) == expected
    assert classify_texts(iter(texts), model, tokenizer) == expected
    assert classify_texts(np.array(texts), model, tokenizer) == expected  # numpy.str_ items
    assert classify_texts([], model, tokenizer) == []


# ----------------------------------------------------------------------------- adapter files

@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    trained, _ = build_classifier(CI, seed=0)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in lora_layers(trained).values():
            layer.lora.B.normal_(0, 0.05, generator=g)
    return save_adapter(trained, tmp_path_factory.mktemp("adapter") / "a.safetensors", CI.base_model_id)


def _read(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())


def _variant(adapter, tmp_path, change_tensors=None, change_meta=None):
    tensors, meta = _read(adapter)
    if change_tensors:
        change_tensors(tensors)
    if change_meta:
        change_meta(meta)
    path = tmp_path / "variant.safetensors"
    save_file(tensors, path, metadata=meta)
    return path


def _refused(model, path, match, base_model_id=CI.base_model_id):
    """load_adapter raises AdapterError matching ``match`` and leaves ``model`` as it was."""
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(AdapterError, match=match):
        load_adapter(model, path, base_model_id)
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in after.items()), "a refused adapter changed the model"


def test_adapter_for_another_base_model(adapter):
    _refused(load_base_model(CI), adapter, "entraîné sur 'random:gpt2-tiny:seed1234'.*'openai-community",
             base_model_id="openai-community/gpt2@607a30d")


def test_adapter_for_other_base_weights(adapter):
    base = load_base_model(CI)
    with torch.no_grad():
        base.trf_blocks[1].att.W_value.weight.add_(0.01)
    _refused(base, adapter, "empreinte attendue")


@pytest.mark.parametrize("lora, match", [
    (LoRAConfig(rank=4), "adaptateur rank=8.*modèle rank=4"),
    (LoRAConfig(alpha=8.0), "alpha=16.*alpha=8"),
    (LoRAConfig(targets=("att.W_query", "att.W_value")), "cibles"),
], ids=["rank", "alpha", "targets"])
def test_adapter_with_other_lora_settings(adapter, lora, match):
    prepared, _ = build_classifier(CI, lora, seed=1)
    _refused(prepared, adapter, match)


def test_adapter_with_another_number_of_classes(adapter):
    base = load_base_model(CI)
    replace_head(base, 3)
    add_lora(base)
    _refused(base, adapter, "l'adaptateur a 2 classes, le modèle 3")


def test_metadata_rank_that_does_not_match_the_tensors(adapter, tmp_path):
    path = _variant(adapter, tmp_path, change_meta=lambda m: m.update(rank="4"))
    _refused(load_base_model(CI), path, r"formes \[.*au lieu de \[64, 4\]")


@pytest.mark.parametrize("keep", [0, 7, 60, 500, -1], ids=["empty", "8-bytes-header", "mid-header", "mid-data",
                                                          "last-byte-missing"])
def test_truncated_adapter(adapter, tmp_path, keep):
    data = adapter.read_bytes()
    path = tmp_path / "t.safetensors"
    path.write_bytes(data[:keep] if keep >= 0 else data[:-1])
    _refused(load_base_model(CI), path, "n'est pas un adaptateur lisible .*tronqué ou d'un autre format")


def _zip_bytes():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("adapter.safetensors", "nope")
    return buffer.getvalue()


def _torch_pickle():
    buffer = io.BytesIO()
    torch.save({"out_head.weight": torch.zeros(2, 64)}, buffer)
    return buffer.getvalue()


GARBAGE = {
    "random-bytes": bytes(range(256)) * 8,
    "text": "ceci n'est pas un adaptateur\n".encode(),
    "json": json.dumps({"format": "tp3-lora-adapter/1"}).encode(),
    "html": b"<!DOCTYPE html><html><body>404</body></html>",
    "zip": _zip_bytes(),
    "torch-pickle": _torch_pickle(),
    "huge-header-length": (10**12).to_bytes(8, "little") + b"{}",
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_non_safetensors_file(tmp_path, name):
    path = tmp_path / "a.safetensors"
    path.write_bytes(GARBAGE[name])
    _refused(load_base_model(CI), path, "n'est pas un adaptateur lisible")


@pytest.mark.parametrize("meta", [None, {"format": "pt"}, {"format": "tp3-lora-adapter/0"}],
                         ids=["no-metadata", "transformers-checkpoint", "other-version"])
def test_foreign_safetensors_file(tmp_path, meta):
    path = tmp_path / "f.safetensors"
    save_file({"tok_emb.weight": torch.zeros(4, 64)}, path, metadata=meta)
    _refused(load_base_model(CI), path, "format attendu 'tp3-lora-adapter/1'.*pas un adaptateur LoRA")


@pytest.mark.parametrize("kind", ["folder", "missing"])
def test_adapter_path_that_is_not_a_file(tmp_path, kind):
    path = tmp_path / "a.safetensors"
    if kind == "folder":
        path.mkdir()
    _refused(load_base_model(CI), path, "c'est un dossier" if kind == "folder" else "introuvable")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int64], ids=str)
def test_adapter_of_another_dtype(adapter, tmp_path, dtype):
    key = "trf_blocks.0.ff.fc1.lora.B"
    path = _variant(adapter, tmp_path, lambda t: t.update({key: t[key].to(dtype)}))
    _refused(load_base_model(CI), path, f"'{key}' est en {dtype}, attendu torch.float32")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=repr)
def test_adapter_with_non_finite_values(adapter, tmp_path, value):
    def poison(t):
        t["out_head.weight"][1, 3] = value

    path = _variant(adapter, tmp_path, poison)
    _refused(load_base_model(CI), path, "'out_head.weight' contient 1 valeur\\(s\\) non finie\\(s\\)")


@pytest.mark.parametrize("change, match", [
    (lambda t: t.pop("trf_blocks.1.att.out_proj.lora.A"), r"manquants \['trf_blocks\.1\.att\.out_proj\.lora\.A'\]"),
    (lambda t: t.update(extra=torch.zeros(3)), r"inattendus \['extra'\]"),
    (lambda t: t.update({"out_head.weight": torch.zeros(2, 32)}), r"out_head\.weight: \[2, 32\] au lieu de \[2, 64\]"),
], ids=["missing-tensor", "extra-tensor", "wrong-shape"])
def test_adapter_with_other_tensors(adapter, tmp_path, change, match):
    _refused(load_base_model(CI), _variant(adapter, tmp_path, change), match)


@pytest.mark.parametrize("key", REQUIRED_META)
def test_adapter_metadata_missing_a_key(adapter, tmp_path, key):
    path = _variant(adapter, tmp_path, change_meta=lambda m: m.pop(key))
    _refused(load_base_model(CI), path, f"métadonnées incomplètes, il manque \\['{key}'\\]")


@pytest.mark.parametrize("change, match", [
    ({"rank": "huit"}, "métadonnée illisible"),
    ({"rank": "0"}, "réglages invalides rank=0"),
    ({"alpha": "nan"}, "réglages invalides .*alpha=nan"),
    ({"alpha": "-1.0"}, "réglages invalides .*alpha=-1.0"),
    ({"num_classes": "1"}, "réglages invalides .*num_classes=1"),
    ({"targets": "not json"}, "métadonnée illisible"),
    ({"targets": "[]"}, "cibles LoRA attendues sous forme de liste"),
    ({"targets": '"att.W_query"'}, "cibles LoRA attendues sous forme de liste"),
    ({"targets": '["att.W_nope"]'}, "Cible LoRA 'att.W_nope' absente"),
    ({"targets": '["att"]'}, "Cible LoRA 'att' : attendu une couche linéaire"),
], ids=["rank-word", "rank-zero", "alpha-nan", "alpha-negative", "one-class", "targets-not-json",
        "targets-empty", "targets-string", "targets-missing-layer", "targets-not-linear"])
def test_adapter_metadata_with_bad_values(adapter, tmp_path, change, match):
    path = _variant(adapter, tmp_path, change_meta=lambda m: m.update(change))
    _refused(load_base_model(CI), path, match)


# ----------------------------------------------------------------------------- configuration values

@pytest.mark.parametrize("field, value", [
    *[("rank", v) for v in (0, -1, 2.5, "8", True, None)],
    *[("alpha", v) for v in (0, -1.0, math.nan, math.inf, "16", None, True)],
], ids=repr)
def test_bad_lora_values(field, value):
    with pytest.raises(ConfigError) as err:
        LoRAConfig(**{field: value})
    assert f"LoRAConfig.{field} doit être" in str(err.value) and f"obtenu {value!r}" in str(err.value)


@pytest.mark.parametrize("targets", ["att.W_query", (), []], ids=repr)
def test_bad_lora_targets(targets):
    with pytest.raises(ConfigError, match="LoRAConfig.targets doit être une liste non vide.*obtenu "
                                          + re.escape(repr(targets))):
        LoRAConfig(targets=targets)


def test_rank_beyond_the_layer_size_is_refused_and_wraps_nothing():
    model = load_base_model(CI)  # emb_dim 64: every block linear has 64 as its smaller side
    with pytest.raises(ConfigError, match="LoRAConfig.rank doit être <= 64 .*obtenu 65"):
        add_lora(model, LoRAConfig(rank=65))
    assert lora_layers(model) == {}
    assert add_lora(model, LoRAConfig(rank=64)).rank == 64  # the bound itself is allowed


@pytest.mark.parametrize("targets", [("att.W_query", "att.W_nope"), ("att.W_query", "nope.W_query"),
                                     ("att.W_query", "att")], ids=repr)
def test_unknown_lora_target_wraps_nothing(targets):
    model = load_base_model(CI)
    with pytest.raises(ConfigError, match=f"Cible LoRA '{targets[1]}' : attendu un nn.Linear"):
        add_lora(model, LoRAConfig(targets=targets))
    assert lora_layers(model) == {}  # not even the valid first target


@pytest.mark.parametrize("field, value", [
    *[("batch_size", v) for v in (0, -1, 1.5, True, "8", None)],
    *[("lr", v) for v in (0, -1e-4, 1.0, 10, math.nan, math.inf, "5e-4", None)],
    *[("num_epochs", v) for v in (0, -2, 1.5)],
    *[("weight_decay", v) for v in (-0.1, math.nan, math.inf)],
    ("eval_tokens", 0), ("eval_every", -1), ("seed", -1), ("num_threads", -1),
    ("batching", "random"), ("precision", "fp16"),
], ids=repr)
def test_bad_training_values(field, value):
    with pytest.raises(ConfigError) as err:
        TrainConfig(**{field: value})
    assert f"TrainConfig.{field} doit être" in str(err.value) and f"obtenu {value!r}" in str(err.value)


@pytest.mark.parametrize("split", [(0.7, 0.3), (0.7, 0.2, 0.2), (1.0, 0.0, 0.0), (0.8, 0.3, -0.1)], ids=repr)
def test_bad_data_split(split):
    with pytest.raises(ConfigError, match="DataConfig.split doit être .*obtenu " + re.escape(repr(split))):
        DataConfig(split=split)


def test_unknown_model_and_profile_names(monkeypatch):
    with pytest.raises(ConfigError, match="Modèle inconnu 'gpt2-huge'. Modèles disponibles : gpt2-small"):
        gpt_config("gpt2-huge")
    monkeypatch.setenv("TP3_PROFILE", "fast")
    with pytest.raises(ConfigError, match="TP3_PROFILE='fast' inconnu : choisissez parmi full"):
        get_profile()
