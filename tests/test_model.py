"""GPTModel: shapes, causality, attention implementations, packing, meta device."""

from __future__ import annotations

import pytest
import torch

from lab_utils.config import GPTConfig, gpt_config
from lab_utils.errors import ConfigError
from lab_utils.loaders import pack, pad
from lab_utils.model import GPTModel, build_model, replace_head
from lab_utils.train import classification_logits

TINY = GPTConfig(vocab_size=97, context_length=40, emb_dim=32, n_heads=4, n_layers=2)


@pytest.fixture
def model():
    return build_model(TINY, seed=0).eval()


def test_output_shape(model):
    x = torch.randint(0, 97, (3, 11))
    assert model(x).shape == (3, 11, 97)
    replace_head(model, 2)
    assert model(x).shape == (3, 11, 2)


def test_future_tokens_do_not_change_earlier_logits(model):
    x = torch.randint(0, 97, (2, 12))
    y = x.clone()
    y[:, 8:] = torch.randint(0, 97, (2, 4))
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :8], model(y)[:, :8], atol=1e-6)
        assert not torch.allclose(model(x)[:, 8:], model(y)[:, 8:])


def test_sdpa_and_eager_attention_agree():
    x = torch.randint(0, 97, (3, 17))
    fast = build_model(TINY, seed=3).eval()
    eager = build_model(TINY.with_(attn_impl="eager"), seed=3).eval()
    with torch.no_grad():
        assert torch.allclose(fast(x), eager(x), atol=1e-5)


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
def test_packed_batch_equals_padded_batch(attn_impl):
    model = build_model(TINY.with_(attn_impl=attn_impl), seed=1).eval()
    replace_head(model, 2, seed=0)
    g = torch.Generator().manual_seed(0)
    items = [(torch.randint(0, 97, (n,), generator=g).tolist(), n % 2) for n in (5, 1, 17, 9)]
    with torch.no_grad():
        alone = torch.cat([classification_logits(model, pad([it], pad_id=0)) for it in items])
        padded = classification_logits(model, pad(items, pad_id=0))
        packed = classification_logits(model, pack(items))
    assert torch.allclose(padded, alone, atol=1e-5)
    assert torch.allclose(packed, alone, atol=1e-5)


@pytest.mark.parametrize("attn_impl", ["sdpa", "eager"])
@pytest.mark.parametrize("layout", ["pad", "pack"])
def test_read_at_equals_the_full_forward(attn_impl, layout):
    """Computing only the read tokens in the last block gives the logits, and the
    gradients, of the full forward read at those tokens (the oracle)."""
    from lab_utils.lora import add_lora

    model = build_model(TINY.with_(attn_impl=attn_impl), seed=1)
    replace_head(model, 2, seed=0)
    add_lora(model, seed=2)
    g = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        if name.endswith("lora.B"):
            p.data.normal_(0, 0.1, generator=g)  # a trained-looking adapter, not zeros
    items = [(torch.randint(0, 97, (n,), generator=g).tolist(), n % 2) for n in (5, 1, 17, 9)]
    batch = pad(items, pad_id=0) if layout == "pad" else pack(items)
    trainable = [p for p in model.parameters() if p.requires_grad]
    inputs = dict(pos_ids=batch.pos_ids, attn_mask=batch.attn_mask)
    full = model(batch.input_ids, **inputs)[batch.rows, batch.last]
    full_grads = torch.autograd.grad(full.square().sum(), trainable)
    read = model(batch.input_ids, **inputs, read_at=(batch.rows, batch.last))
    read_grads = torch.autograd.grad(read.square().sum(), trainable)
    assert read.shape == (4, 2)
    assert torch.allclose(read, full, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(read_grads, full_grads))


def test_pack_layout():
    batch = pack([([7, 8, 9], 1), ([5], 0), ([1, 2], 1)])
    assert batch.input_ids.tolist() == [[7, 8, 9, 5, 1, 2]]
    assert batch.pos_ids.tolist() == [[0, 1, 2, 0, 0, 1]]
    assert batch.last.tolist() == [2, 3, 5] and batch.rows.tolist() == [0, 0, 0]
    mask = batch.attn_mask[0]
    assert mask[2].tolist() == [True, True, True, False, False, False]
    assert mask[5].tolist() == [False, False, False, False, True, True]


def test_pad_layout():
    batch = pad([([7, 8, 9], 1), ([5], 0)], pad_id=0)
    assert batch.input_ids.tolist() == [[7, 8, 9], [5, 0, 0]]
    assert batch.last.tolist() == [2, 0] and batch.lengths.tolist() == [3, 1]


def test_too_long_input_is_refused(model):
    with pytest.raises(ValueError, match="contexte du modèle est de 40 tokens"):
        model(torch.zeros(1, 41, dtype=torch.long))


def test_meta_device_allocates_nothing():
    model = build_model(gpt_config("gpt2-medium"), device="meta")
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("name, layers, heads, dim", [
    ("gpt2-small", 12, 12, 768), ("gpt2-medium", 24, 16, 1024),
    ("gpt2-large", 36, 20, 1280), ("gpt2-xl", 48, 25, 1600),
])
def test_presets(name, layers, heads, dim):
    cfg = gpt_config(name)
    assert (cfg.n_layers, cfg.n_heads, cfg.emb_dim, cfg.vocab_size, cfg.context_length) == (
        layers, heads, dim, 50257, 1024)
    assert cfg.qkv_bias


def test_small_matches_transformers_parameter_count():
    """Oracle: transformers' GPT-2 small (tied head) has 124,439,808 parameters."""
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.device("meta"):
        hf = GPT2LMHeadModel(GPT2Config())
    ours = build_model(gpt_config("gpt2-small"), device="meta")
    hf_total = sum(p.numel() for p in hf.parameters())
    ours_without_head = sum(p.numel() for n, p in ours.named_parameters() if not n.startswith("out_head"))
    assert hf_total == ours_without_head == 124_439_808


@pytest.mark.parametrize("bad", [dict(emb_dim=30, n_heads=4), dict(n_layers=0), dict(drop_rate=1.5),
                                 dict(attn_impl="flash"), dict(vocab_size="big")])
def test_bad_config_is_refused(bad):
    with pytest.raises(ConfigError, match="obtenu|divisible"):
        TINY.with_(**bad)


def test_model_is_a_gptmodel():
    assert isinstance(build_model(TINY, device="meta"), GPTModel)
