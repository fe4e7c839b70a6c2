"""Adapters: LoRA + head only, exact round trip, refusal of mismatches."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lab_utils.adapter import FORMAT, base_fingerprint, load_adapter, read_adapter, save_adapter
from lab_utils.config import LoRAConfig
from lab_utils.errors import AdapterError
from lab_utils.lora import add_lora, lora_layers
from lab_utils.profiles import get_profile, load_base_model
from lab_utils.run import build_classifier

CI = get_profile("ci")


def _trained(seed=0, lora=None):
    model, _ = build_classifier(CI, lora, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora.B.normal_(0, 0.05, generator=g)
    return model


def _x():
    return torch.randint(0, 50257, (3, 12), generator=torch.Generator().manual_seed(7))


def test_round_trip_reproduces_logits_exactly(tmp_path):
    model = _trained()
    path = save_adapter(model, tmp_path / "a.safetensors", CI.base_model_id)
    fresh = load_base_model(CI)
    load_adapter(fresh, path, CI.base_model_id)
    with torch.no_grad():
        assert torch.equal(fresh(_x()), model(_x()))


def test_adapter_holds_only_lora_and_head(tmp_path):
    model = _trained()
    path = save_adapter(model, tmp_path / "a.safetensors", CI.base_model_id)
    keys = set(load_file(path))
    assert keys == {f"{n}.lora.{m}" for n in lora_layers(model) for m in "AB"} | {"out_head.weight", "out_head.bias"}
    n_values = sum(t.numel() for t in load_file(path).values())
    assert n_values == 2 * 18 * 64 * 8 + 64 * 2 + 2  # 2 blocks x 18 C r + head


def test_metadata(tmp_path):
    path = save_adapter(_trained(), tmp_path / "a.safetensors", CI.base_model_id, extra={"seed": 42})
    _, meta = read_adapter(path)
    assert meta["format"] == FORMAT and meta["base_model"] == CI.base_model_id
    assert (meta["rank"], float(meta["alpha"]), meta["seed"]) == ("8", 16.0, "42")
    assert len(json.loads(meta["targets"])) == 6


def test_load_into_prepared_model_with_same_settings(tmp_path):
    model = _trained(seed=1)
    path = save_adapter(model, tmp_path / "a.safetensors", CI.base_model_id)
    other, _ = build_classifier(CI, seed=2)
    load_adapter(other, path, CI.base_model_id)
    with torch.no_grad():
        assert torch.equal(other(_x()), model(_x()))


def test_wrong_base_model_id_is_refused(tmp_path):
    path = save_adapter(_trained(), tmp_path / "a.safetensors", CI.base_model_id)
    with pytest.raises(AdapterError, match="random:gpt2-tiny:seed1234"):
        load_adapter(load_base_model(CI), path, "openai-community/gpt2@607a30d")


def test_different_base_weights_are_refused(tmp_path):
    path = save_adapter(_trained(), tmp_path / "a.safetensors", CI.base_model_id)
    base = load_base_model(CI)
    with torch.no_grad():
        base.trf_blocks[0].ff.fc1.weight.mul_(1.5)
    with pytest.raises(AdapterError, match="empreinte"):
        load_adapter(base, path, CI.base_model_id)


def test_wrong_rank_is_refused_before_anything_changes(tmp_path):
    path = save_adapter(_trained(), tmp_path / "a.safetensors", CI.base_model_id)
    other, _ = build_classifier(CI, LoRAConfig(rank=4), seed=0)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(AdapterError, match="rank=8.*rank=4"):
        load_adapter(other, path, CI.base_model_id)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())


def test_truncated_and_foreign_files_are_refused(tmp_path):
    path = save_adapter(_trained(), tmp_path / "a.safetensors", CI.base_model_id)
    truncated = tmp_path / "t.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(AdapterError, match="tronqué"):
        load_adapter(load_base_model(CI), truncated, CI.base_model_id)
    foreign = tmp_path / "f.safetensors"
    save_file({"w": torch.zeros(2)}, foreign)
    with pytest.raises(AdapterError, match="pas un adaptateur LoRA"):
        load_adapter(load_base_model(CI), foreign, CI.base_model_id)
    with pytest.raises(AdapterError, match="introuvable"):
        load_adapter(load_base_model(CI), tmp_path / "missing.safetensors", CI.base_model_id)


def test_tampered_shapes_are_refused(tmp_path):
    path = save_adapter(_trained(), tmp_path / "a.safetensors", CI.base_model_id)
    state = load_file(path)
    _, meta = read_adapter(path)
    state["trf_blocks.0.att.W_query.lora.A"] = torch.zeros(64, 3)
    save_file(state, path, metadata=meta)
    with pytest.raises(AdapterError, match="formes"):
        load_adapter(load_base_model(CI), path, CI.base_model_id)


def test_fingerprint_ignores_lora_and_head():
    base = load_base_model(CI)
    before = base_fingerprint(base)
    model = _trained()
    assert base_fingerprint(model) == before
    assert base_fingerprint(load_base_model("random-small")) != before


def test_merged_model_cannot_be_saved(tmp_path):
    from lab_utils.lora import merge_lora

    model = _trained()
    merge_lora(model)
    with pytest.raises(AdapterError, match="unmerge_lora"):
        save_adapter(model, tmp_path / "a.safetensors", CI.base_model_id)
    assert not (tmp_path / "a.safetensors").exists()


def test_model_without_lora_cannot_be_saved(tmp_path):
    with pytest.raises(AdapterError, match="pas de couches LoRA"):
        save_adapter(load_base_model(CI), tmp_path / "a.safetensors", CI.base_model_id)
    assert list(tmp_path.iterdir()) == []


def test_add_lora_then_load_works_too(tmp_path):
    model = _trained()
    path = save_adapter(model, tmp_path / "a.safetensors", CI.base_model_id)
    base = load_base_model(CI)
    from lab_utils.model import replace_head

    replace_head(base, 2)
    add_lora(base)
    load_adapter(base, path, CI.base_model_id)
    with torch.no_grad():
        assert torch.equal(base(_x()), model(_x()))
