"""Loading GPT-2 checkpoints, checked against Hugging Face transformers."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_reference import matching_config, tiny_hf_model, write_published_checkpoint
from lab_utils.errors import ChecksumError, DownloadError, WeightsError
from lab_utils.model import build_model
from lab_utils.weights import GPT2_CHECKPOINTS, download_gpt2_weights, expected_shapes, load_gpt2_weights


@pytest.fixture(scope="module")
def hf_model():
    return tiny_hf_model(seed=0)


def _load(hf_model, path):
    return load_gpt2_weights(build_model(matching_config(hf_model), device="meta"), path).eval()


def _tokens(hf_model, batch=3, length=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, hf_model.config.vocab_size, (batch, length), generator=g)


@pytest.mark.parametrize("prefix", [False, True], ids=["published-layout", "transformers-prefix"])
def test_logits_match_transformers(hf_model, tmp_path, prefix):
    path = write_published_checkpoint(hf_model, tmp_path, prefix=prefix)
    ours = _load(hf_model, path)
    x = _tokens(hf_model)
    with torch.no_grad():
        expected = hf_model(x).logits
        got = ours(x)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4


def test_published_file_has_mask_buffers_which_are_ignored(hf_model, tmp_path):
    path = write_published_checkpoint(hf_model, tmp_path)
    keys = load_file(path).keys()
    assert "h.0.attn.bias" in keys and "h.1.attn.bias" in keys
    assert len(keys) == len(expected_shapes(matching_config(hf_model))) + hf_model.config.n_layer


def test_lm_head_is_an_untied_copy_of_wte(hf_model, tmp_path):
    ours = _load(hf_model, write_published_checkpoint(hf_model, tmp_path))
    assert torch.equal(ours.out_head.weight, ours.tok_emb.weight)
    assert ours.out_head.weight.data_ptr() != ours.tok_emb.weight.data_ptr()


def test_query_key_value_split_and_transpose(hf_model, tmp_path):
    """c_attn [C, 3C] holds q | k | v side by side in Conv1D layout."""
    ours = _load(hf_model, write_published_checkpoint(hf_model, tmp_path))
    c_attn = hf_model.transformer.h[1].attn.c_attn.weight  # [C, 3C]
    C = c_attn.shape[0]
    att = ours.trf_blocks[1].att
    assert torch.equal(att.W_query.weight, c_attn[:, :C].T)
    assert torch.equal(att.W_key.weight, c_attn[:, C:2 * C].T)
    assert torch.equal(att.W_value.weight, c_attn[:, 2 * C:].T)


def _rewrite(path, change):
    state = load_file(path)
    change(state)
    path.unlink()
    save_file(state, path)


def test_missing_tensor_is_named(hf_model, tmp_path):
    path = write_published_checkpoint(hf_model, tmp_path)
    _rewrite(path, lambda s: s.pop("h.1.mlp.c_fc.weight"))
    with pytest.raises(WeightsError, match=r"manquants h\.1\.mlp\.c_fc\.weight"):
        _load(hf_model, path)


def test_unexpected_tensor_is_named(hf_model, tmp_path):
    path = write_published_checkpoint(hf_model, tmp_path)
    _rewrite(path, lambda s: s.__setitem__("h.0.attn.extra", torch.zeros(3)))
    with pytest.raises(WeightsError, match=r"inattendus h\.0\.attn\.extra"):
        _load(hf_model, path)


def test_wrong_shape_is_named(hf_model, tmp_path):
    path = write_published_checkpoint(hf_model, tmp_path)
    _rewrite(path, lambda s: s.__setitem__("wpe.weight", torch.zeros(10, 32)))
    with pytest.raises(WeightsError, match=r"'wpe\.weight' a la forme \[10, 32\], attendu \[64, 32\]"):
        _load(hf_model, path)


def test_other_architecture_is_refused(hf_model, tmp_path):
    path = write_published_checkpoint(hf_model, tmp_path)
    bigger = matching_config(hf_model).with_(n_layers=3)
    with pytest.raises(WeightsError, match=r"manquants h\.2\."):
        load_gpt2_weights(build_model(bigger, device="meta"), path)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_file_raises_clear_error(hf_model, tmp_path, damage):
    path = write_published_checkpoint(hf_model, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a safetensors file" * 10)
    with pytest.raises(WeightsError, match="tronqué ou corrompu"):
        _load(hf_model, path)


def test_pinned_checkpoint_facts():
    """Facts of OpenAI's file as published on the Hub (TP3.md), pinned to a commit."""
    ckpt = GPT2_CHECKPOINTS["gpt2-small"]
    assert ckpt.repo_id == "openai-community/gpt2" and ckpt.filename == "model.safetensors"
    assert ckpt.size == 548_105_171 and len(ckpt.revision) == 40 and len(ckpt.sha256) == 64
    shapes = expected_shapes(matching_config(tiny_hf_model()).with_(
        vocab_size=50257, context_length=1024, emb_dim=768, n_heads=12, n_layers=12))
    assert len(shapes) + 12 == 160  # 148 weights + 12 attn.bias buffers
    assert shapes["h.0.attn.c_attn.weight"] == (768, 2304)
    assert shapes["h.11.mlp.c_proj.weight"] == (3072, 768)


def test_manual_weights_file_with_wrong_bytes_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"x" * 1000)
    monkeypatch.setenv("TP3_GPT2_WEIGHTS", str(fake))
    with pytest.raises(ChecksumError, match="taille attendue 548\u202f105\u202f171 octets"):
        download_gpt2_weights()


def test_offline_without_cache_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("TP3_GPT2_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    with pytest.raises(DownloadError) as err:
        download_gpt2_weights(offline=True)
    message = str(err.value)
    assert "hors ligne" in message and "TP3_GPT2_WEIGHTS" in message
    assert GPT2_CHECKPOINTS["gpt2-small"].url in message
