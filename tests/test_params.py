"""Parameter counts against TP3.md's numbers and independent formulas."""

from __future__ import annotations

import pytest

from lab_utils.config import LoRAConfig, gpt_config
from lab_utils.params import lora_model_counts, lora_parameters_formula, parameter_table


def gpt2_base_formula(L, C, V=50257, T=1024):
    """Parameters of GPT-2 without its output head, from the architecture."""
    per_block = 2 * 2 * C + (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C)
    return V * C + T * C + L * per_block + 2 * C


def test_small_with_lm_head():
    c = lora_model_counts("gpt2-small", num_classes=None)
    assert (c.total, c.base, c.lora, c.trainable) == (164_364_288, 163_037_184, 1_327_104, 1_327_104)
    assert c.trainable_share == pytest.approx(0.807, abs=0.01)
    assert c.base == gpt2_base_formula(12, 768) + 50257 * 768


def test_small_with_classification_head():
    c = lora_model_counts("gpt2-small", num_classes=2)
    assert (c.total, c.base, c.lora) == (125_768_450, 124_441_346, 1_327_104)
    assert c.trainable == 1_327_104 + 768 * 2 + 2
    assert c.lora_share == pytest.approx(1.055, abs=0.001)
    lm = lora_model_counts("gpt2-small", num_classes=None)
    assert lm.total - c.total == 38_595_838 == 50257 * 768 - (768 * 2 + 2)


def test_medium_counted_on_meta():
    c = lora_model_counts("gpt2-medium", num_classes=2)
    assert (c.total, c.lora) == (358_364_162, 3_538_944)
    assert c.lora_share == pytest.approx(0.988, abs=0.001)
    assert c.base == gpt2_base_formula(24, 1024) + 1024 * 2 + 2


@pytest.mark.parametrize("name", ["gpt2-small", "gpt2-medium", "gpt2-large"])
@pytest.mark.parametrize("rank", [1, 8, 16])
def test_lora_count_formula(name, rank):
    cfg = gpt_config(name)
    per_block = rank * 18 * cfg.emb_dim  # 4 x r(C+C) + r(C+4C) + r(4C+C)
    expected = cfg.n_layers * per_block
    assert lora_parameters_formula(name, LoRAConfig(rank=rank)) == expected
    assert lora_model_counts(name, 2, LoRAConfig(rank=rank)).lora == expected


def test_per_block_13824_times_rank():
    assert lora_parameters_formula("gpt2-small", LoRAConfig(rank=1)) // 12 == 13_824


def test_parameter_table_rows():
    table = parameter_table()
    assert list(table["modèle"]) == ["gpt2-small", "gpt2-small", "gpt2-medium", "gpt2-medium"]
    assert table.total.tolist() == [164_364_288, 125_768_450, 409_825_280, 358_364_162]
