"""GPT-2 from scratch, with the lesson's names.

Shapes: B = batch size, T = number of tokens, C = emb_dim, H = n_heads, D = head_dim = C / H.
Build on ``torch.device("meta")`` to inspect or count a model without allocating its weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import GPTConfig

ReadAt = tuple[torch.Tensor, torch.Tensor]  # (rows, positions) of the tokens whose output is read


class LayerNorm(nn.Module):
    """Normalise each token vector to mean 0 and variance 1, then scale and shift."""

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same maths as (x - mean) / sqrt(var + eps) * scale + shift, with biased variance.
        return F.layer_norm(x, (x.shape[-1],), self.scale, self.shift, self.eps)


class GELU(nn.Module):
    """GELU activation, tanh approximation (as in GPT-2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate="tanh")


class FeedForward(nn.Module):
    """Position-wise MLP: C -> 4C -> C."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim)
        self.gelu = GELU()
        self.fc2 = nn.Linear(4 * cfg.emb_dim, cfg.emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.gelu(self.fc1(x)))


class MultiHeadAttention(nn.Module):
    """Causal multi-head self-attention.

    ``attn_impl="sdpa"`` uses PyTorch's fused scaled-dot-product kernel; ``"eager"``
    writes out the mask and softmax as in the lesson. Both compute the same function.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.head_dim
        self.attn_impl = cfg.attn_impl
        self.drop_rate = cfg.drop_rate
        self.W_query = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.qkv_bias)
        self.W_key = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.qkv_bias)
        self.W_value = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(cfg.emb_dim, cfg.emb_dim)
        self.dropout = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                read_at: ReadAt | None = None) -> torch.Tensor:
        """x: (B, T, C). attn_mask: optional (B, T, T), True where token i may attend to
        token j; None means plain causal attention. read_at: optional (rows, positions) of
        N tokens: only their outputs are computed, (N, C), from every token's keys and values."""
        B, T, C = x.shape
        keys = self._split_heads(self.W_key(x))  # (B, H, T, D)
        values = self._split_heads(self.W_value(x))
        if read_at is None:
            queries = self._split_heads(self.W_query(x))
            mask = None if attn_mask is None else attn_mask.unsqueeze(1)  # (B, 1, T, T): same for every head
            context_vec = self._attend(queries, keys, values, mask)  # (B, H, T, D)
            return self.out_proj(context_vec.transpose(1, 2).reshape(B, T, C))

        rows, positions = read_at
        N = rows.shape[0]
        queries = self.W_query(x[rows, positions]).view(N, self.n_heads, 1, self.head_dim)  # (N, H, 1, D)
        keys, values = keys[rows], values[rows]  # (N, H, T, D): the row of each query
        if attn_mask is None:
            allowed = torch.arange(T, device=x.device) <= positions[:, None]  # (N, T): causal
        else:
            allowed = attn_mask[rows, positions]
        context_vec = self._attend(queries, keys, values, allowed[:, None, None, :])  # (N, H, 1, D)
        return self.out_proj(context_vec.reshape(N, C))

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, H, T, D)"""
        B, T, _ = t.shape
        return t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

    def _attend(self, queries, keys, values, mask: torch.Tensor | None) -> torch.Tensor:
        """softmax(Q K^T / sqrt(D)) V for each head; mask broadcasts to (.., H, Tq, Tk),
        None means causal."""
        if self.attn_impl == "sdpa":
            return F.scaled_dot_product_attention(
                queries, keys, values, attn_mask=mask, is_causal=mask is None,
                dropout_p=self.drop_rate if self.training else 0.0,
            )
        attn_scores = queries @ keys.transpose(2, 3)  # (.., H, Tq, Tk)
        if mask is None:
            T = queries.shape[-2]
            mask = torch.ones(T, T, dtype=torch.bool, device=queries.device).tril()
        attn_scores = attn_scores.masked_fill(~mask, float("-inf"))
        attn_weights = torch.softmax(attn_scores / math.sqrt(self.head_dim), dim=-1)
        return self.dropout(attn_weights) @ values


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + att(norm1(x)), then x + ff(norm2(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.norm1 = LayerNorm(cfg.emb_dim)
        self.att = MultiHeadAttention(cfg)
        self.norm2 = LayerNorm(cfg.emb_dim)
        self.ff = FeedForward(cfg)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                read_at: ReadAt | None = None) -> torch.Tensor:
        """(B, T, C) -> (B, T, C), or (N, C): only the tokens of ``read_at``."""
        shortcut = x if read_at is None else x[read_at]
        x = shortcut + self.drop_shortcut(self.att(self.norm1(x), attn_mask, read_at))
        x = x + self.drop_shortcut(self.ff(self.norm2(x)))
        return x


class GPTModel(nn.Module):
    """GPT-2: token + position embeddings, n_layers blocks, final norm, output head.

    ``out_head`` is the language-model head (C -> vocab_size) until it is replaced by
    a classification head (C -> num_classes).
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = LayerNorm(cfg.emb_dim)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        if self.tok_emb.weight.device.type != "meta":
            self.apply(_init_gpt2_weights)

    def forward(self, in_idx: torch.Tensor, pos_ids: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, read_at: ReadAt | None = None) -> torch.Tensor:
        """Logits for every token, or only for the tokens that are read.

        Args:
            in_idx: token ids, (B, T).
            pos_ids: optional (B, T) position of each token (default 0..T-1 in every row).
            attn_mask: optional (B, T, T), True where token i may attend to token j
                (default causal). With both, one row can hold several messages ("packing").
            read_at: optional (rows, positions), two (N,) index tensors: the only tokens
                whose logits are wanted (e.g. the last token of each message). The last
                block then computes just them: no later block needs the others.
        Returns:
            (B, T, n_out) logits, or (N, n_out) with ``read_at``; n_out = vocab_size or
            the number of classes.
        """
        B, T = in_idx.shape
        if pos_ids is None:
            pos_ids, longest = torch.arange(T, device=in_idx.device), T
        else:
            longest = int(pos_ids.max()) + 1 if pos_ids.numel() else 0
        if longest > self.cfg.context_length:
            raise ValueError(
                f"Séquence de {longest} tokens : le contexte du modèle est de "
                f"{self.cfg.context_length} tokens au plus."
            )
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(pos_ids))  # (B, T, C)
        *blocks, last_block = self.trf_blocks
        for block in blocks:
            x = block(x, attn_mask)
        x = last_block(x, attn_mask, read_at)
        return self.out_head(self.final_norm(x))  # (B, T, n_out) or (N, n_out)


def _init_gpt2_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases (only for random models)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)


def build_model(cfg: GPTConfig, device: str | torch.device = "cpu", seed: int | None = None) -> GPTModel:
    """Construit un GPT-2 (poids aléatoires) sur ``device`` ; ``device="meta"`` n'alloue
    aucune mémoire (utile pour compter les paramètres). ``seed`` : graine des poids."""
    if seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with torch.device(device):
                return GPTModel(cfg)
    with torch.device(device):
        return GPTModel(cfg)


def replace_head(model: GPTModel, num_classes: int = 2, seed: int | None = None) -> nn.Linear:
    """Remplace la tête de langage de ``model`` par une nouvelle couche
    ``Linear(emb_dim, num_classes)`` (initialisée avec la graine ``seed``) et la renvoie."""
    device = model.tok_emb.weight.device
    if seed is None:
        head = nn.Linear(model.cfg.emb_dim, num_classes, device=device)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = nn.Linear(model.cfg.emb_dim, num_classes, device=device)
    model.out_head = head
    return head
