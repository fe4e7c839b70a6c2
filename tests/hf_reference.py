"""Tiny GPT-2 checkpoints made by Hugging Face ``transformers``: the independent oracle.

``write_published_checkpoint`` saves a random ``GPT2LMHeadModel`` and rewrites its file
into the layout of OpenAI's published ``model.safetensors``: keys without the
``transformer.`` prefix, plus one ``h.N.attn.bias`` causal-mask buffer per block.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lab_utils.config import GPTConfig


def tiny_hf_model(seed: int = 0, n_layer: int = 2, n_embd: int = 32, n_head: int = 4,
                  vocab_size: int = 101, n_positions: int = 64):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                     n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=0, eos_token_id=0, attn_implementation="eager")
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorm and bias values, so a mix-up shows
        for name, p in model.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


def matching_config(hf_model) -> GPTConfig:
    c = hf_model.config
    return GPTConfig(vocab_size=c.vocab_size, context_length=c.n_positions, emb_dim=c.n_embd,
                     n_heads=c.n_head, n_layers=c.n_layer)


def write_published_checkpoint(hf_model, directory: Path, prefix: bool = False,
                               mask_buffers: bool = True) -> Path:
    """Save ``hf_model`` as OpenAI's file is laid out (optionally keeping ``transformer.``)."""
    directory = Path(directory)
    hf_model.save_pretrained(directory)
    path = directory / "model.safetensors"
    state = load_file(path)
    assert all(k.startswith("transformer.") for k in state), "transformers changed its layout"
    if not prefix:
        state = {k.removeprefix("transformer."): v for k, v in state.items()}
    if mask_buffers:
        n = hf_model.config.n_positions
        mask = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
        for i in range(hf_model.config.n_layer):
            state[f"{'transformer.' if prefix else ''}h.{i}.attn.bias"] = mask.clone()
    path.unlink()
    save_file(state, path, metadata={"format": "pt"})
    return path
