"""LoRA layers, injection, freezing, merge/unmerge."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lab_utils.config import BLOCK_LINEARS, GPTConfig, LoRAConfig
from lab_utils.errors import ConfigError
from lab_utils.lora import LinearWithLoRA, LoRALayer, add_lora, lora_layers, merge_lora, unmerge_lora
from lab_utils.model import build_model, replace_head

TINY = GPTConfig(vocab_size=97, context_length=40, emb_dim=32, n_heads=4, n_layers=3)


def _model(seed=0, head=True):
    model = build_model(TINY, seed=seed).eval()
    if head:
        replace_head(model, 2, seed=seed)
    return model


def _tokens(seed=0):
    return torch.randint(0, 97, (4, 9), generator=torch.Generator().manual_seed(seed))


def _train_lora_a_bit(model, steps=5):
    """A few Adam steps on a classification loss, so that B (and LoRA's effect) is non-zero."""
    x, y = _tokens(1), torch.tensor([0, 1, 1, 0])
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x)[:, -1], y).backward()
        opt.step()
    return x


def test_lora_layer_shapes_and_zero_start():
    layer = LoRALayer(10, 6, rank=3, alpha=12)
    assert layer.A.shape == (10, 3) and layer.B.shape == (3, 6)
    assert torch.count_nonzero(layer.B) == 0 and torch.count_nonzero(layer.A) > 0
    assert layer.scale == 4.0


def test_lora_layer_computes_scaled_low_rank_product():
    layer = LoRALayer(5, 4, rank=2, alpha=3)
    with torch.no_grad():
        layer.B.normal_()
    x = torch.randn(7, 5)
    expected = (3 / 2) * x @ layer.A @ layer.B
    assert torch.allclose(layer(x), expected, atol=1e-6)
    assert torch.allclose(x @ layer.delta_weight().T, expected, atol=1e-6)


def test_outputs_identical_right_after_injection():
    model = _model()
    x = torch.randint(0, 97, (3, 13))
    with torch.no_grad():
        before = model(x)
        add_lora(model, seed=0)
        after = model(x)
    assert torch.equal(before, after)


def test_wraps_the_six_block_linears_of_every_block_and_not_the_head():
    model = _model()
    report = add_lora(model)
    expected = [f"trf_blocks.{i}.{t}" for i in range(TINY.n_layers) for t in BLOCK_LINEARS]
    assert list(report.wrapped) == expected == list(lora_layers(model))
    assert len(report.wrapped) == 6 * TINY.n_layers
    assert isinstance(model.out_head, nn.Linear) and not isinstance(model.out_head, LinearWithLoRA)
    assert isinstance(model.trf_blocks[0].att.W_query.linear, nn.Linear)


def test_only_lora_and_classification_head_are_trainable():
    model = _model()
    add_lora(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    expected = {f"{name}.lora.{m}" for name in lora_layers(model) for m in "AB"}
    assert trainable == expected | {"out_head.weight", "out_head.bias"}
    assert not model.trf_blocks[0].att.W_query.linear.weight.requires_grad
    assert not model.tok_emb.weight.requires_grad and not model.final_norm.scale.requires_grad


def test_language_model_head_stays_frozen():
    model = _model(head=False)
    add_lora(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora." in n for n in trainable)


def test_training_changes_only_lora_and_head():
    model = _model()
    add_lora(model, seed=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train_lora_a_bit(model)
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p)
        assert changed == p.requires_grad, name


def test_rank_and_alpha_are_applied():
    model = _model()
    report = add_lora(model, LoRAConfig(rank=4, alpha=2))
    layer = model.trf_blocks[1].ff.fc1.lora
    assert (layer.rank, layer.alpha, layer.scale) == (4, 2, 0.5)
    assert layer.A.shape == (32, 4) and layer.B.shape == (4, 128)
    assert report.lora_parameters == TINY.n_layers * 4 * 18 * TINY.emb_dim


def test_custom_targets():
    model = _model()
    report = add_lora(model, LoRAConfig(targets=("att.W_query", "att.W_value")))
    assert len(report.wrapped) == 2 * TINY.n_layers
    assert not isinstance(model.trf_blocks[0].att.W_key, LinearWithLoRA)


def test_bad_target_and_double_injection_are_refused():
    with pytest.raises(ConfigError, match="Cible LoRA 'att.nope'"):
        add_lora(_model(), LoRAConfig(targets=("att.nope",)))
    model = _model()
    add_lora(model)
    with pytest.raises(ConfigError, match="déjà des couches LoRA"):
        add_lora(model)


def test_seeded_injection_is_reproducible():
    a, b = _model(), _model()
    add_lora(a, seed=5)
    add_lora(b, seed=5)
    assert torch.equal(a.trf_blocks[2].ff.fc2.lora.A, b.trf_blocks[2].ff.fc2.lora.A)


def test_merge_and_unmerge_keep_outputs():
    model = _model()
    add_lora(model, seed=0)
    x = _tokens()
    with torch.no_grad():
        at_injection = model(x)
    _train_lora_a_bit(model)
    base_weight = model.trf_blocks[0].att.W_query.linear.weight.detach().clone()
    with torch.no_grad():
        unmerged = model(x)
        assert (unmerged - at_injection).abs().max() > 1e-3  # LoRA really changes the outputs
        assert merge_lora(model) == 6 * TINY.n_layers
        merged = model(x)
        assert not torch.equal(model.trf_blocks[0].att.W_query.linear.weight, base_weight)
        unmerge_lora(model)
        again = model(x)
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert torch.allclose(again, unmerged, atol=1e-5)
    assert torch.allclose(model.trf_blocks[0].att.W_query.linear.weight, base_weight, atol=1e-6)


def test_merge_is_idempotent():
    layer = LinearWithLoRA(nn.Linear(4, 3), rank=2, alpha=2)
    with torch.no_grad():
        layer.lora.B.fill_(1.0)
    w = layer.linear.weight.detach().clone()
    layer.merge()
    layer.merge()
    assert torch.allclose(layer.linear.weight, w + layer.lora.delta_weight(), atol=1e-6)


@pytest.mark.parametrize("bad", [dict(rank=0), dict(rank=2.5), dict(alpha=-1), dict(targets=())])
def test_bad_lora_config_is_refused(bad):
    with pytest.raises(ConfigError, match="obtenu"):
        LoRAConfig(**bad)
