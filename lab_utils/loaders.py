"""Tokenised datasets, batching and DataLoaders.

Three ways to turn a list of messages into a batch, none of which changes a result:

- ``pad``: one message per row, right-padded to the batch's longest message
  (dynamic padding). Causal attention never lets a real token see the padding
  that follows it, and the class is read at the last real token.
- ``pack``: all messages of the batch end to end in a single row, each with its own
  positions and a block-diagonal causal mask, so no compute at all goes to padding.
  This is the training default: batches stay random, as in the classic recipe.
- length grouping (``LengthGroupedBatchSampler``): padded batches of messages of
  similar length. Fast too, but since spam is longer than ham it makes many batches
  all-spam or all-ham, which makes the loss curve noisier.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import TrainConfig
from .data import Splits
from .errors import ConfigError
from .tokenizer import PAD_TOKEN_ID

Item = tuple[list[int], int]  # (token ids, label)


class Batch(NamedTuple):
    """Model inputs for B messages laid out in R rows of T tokens."""

    input_ids: torch.Tensor  # (R, T) token ids
    labels: torch.Tensor  # (B,) 0 = ham, 1 = spam
    rows: torch.Tensor  # (B,) row of input_ids holding each message
    last: torch.Tensor  # (B,) position of each message's last real token in its row
    lengths: torch.Tensor  # (B,) real tokens per message
    pos_ids: torch.Tensor | None = None  # (R, T) positions within messages (None: 0..T-1)
    attn_mask: torch.Tensor | None = None  # (R, T, T) allowed attention (None: causal)

    def to(self, device) -> "Batch":
        return Batch(*(None if t is None else t.to(device) for t in self))

    @property
    def num_tokens(self) -> int:
        """Real (non-padding) tokens."""
        return int(self.lengths.sum())


def encode(text: str, tokenizer, max_length: int) -> list[int]:
    """Token ids of ``text``, cut to its first ``max_length`` tokens."""
    return tokenizer.encode_ordinary(text)[:max_length]


class SpamDataset(Dataset):
    """Messages tokenised once, up front; items are (token ids, label)."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int], tokenizer, max_length: int = 1024):
        self.encoded = [encode(t, tokenizer, max_length) for t in texts]
        self.labels = [int(y) for y in labels]
        if any(not ids for ids in self.encoded):
            raise ValueError("SpamDataset : un message vide ne peut pas être classé.")

    @classmethod
    def from_frame(cls, df, tokenizer, max_length: int = 1024) -> "SpamDataset":
        return cls(df["text"].tolist(), df["label"].tolist(), tokenizer, max_length)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, i: int) -> Item:
        return self.encoded[i], self.labels[i]

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.encoded]


def pad(items: Sequence[Item], pad_id: int = PAD_TOKEN_ID) -> Batch:
    """One message per row, right-padded with ``pad_id`` to the longest of the batch."""
    lengths = torch.tensor([len(ids) for ids, _ in items])
    input_ids = torch.full((len(items), int(lengths.max())), pad_id, dtype=torch.long)
    for row, (ids, _) in enumerate(items):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    labels = torch.tensor([y for _, y in items])
    return Batch(input_ids, labels, torch.arange(len(items)), lengths - 1, lengths)


def pack(items: Sequence[Item]) -> Batch:
    """All messages end to end in one row; each attends only to itself (causally)."""
    lengths = torch.tensor([len(ids) for ids, _ in items])
    input_ids = torch.tensor([t for ids, _ in items for t in ids], dtype=torch.long)[None]  # (1, N)
    message = torch.repeat_interleave(torch.arange(len(items)), lengths)  # (N,) message of each token
    starts = torch.cumsum(lengths, 0) - lengths
    pos_ids = torch.arange(input_ids.shape[1]) - starts[message]  # restart at 0 for each message
    same = message[:, None] == message[None, :]
    attn_mask = (same & torch.ones_like(same).tril())[None]  # (1, N, N)
    labels = torch.tensor([y for _, y in items])
    return Batch(input_ids, labels, torch.zeros(len(items), dtype=torch.long),
                 starts + lengths - 1, lengths, pos_ids[None], attn_mask)


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Random batches of messages of similar length.

    Shuffle, cut into windows of ``batch_size * window`` messages, sort each window by
    length, cut it into batches, and shuffle the batches (seeded by ``generator``).
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, window: int = 16,
                 generator: torch.Generator | None = None):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.window = window
        self.generator = generator

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        span = self.batch_size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        for i in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[i]

    def __len__(self) -> int:
        span = self.batch_size * self.window
        full, rest = divmod(len(self.lengths), span)
        return full * self.window + -(-rest // self.batch_size)


def train_loader(dataset: SpamDataset, cfg: TrainConfig) -> DataLoader:
    """Shuffled batches of ``cfg.batch_size`` messages, seeded by ``cfg.seed``."""
    generator = torch.Generator().manual_seed(cfg.seed)
    if cfg.batching == "grouped":
        sampler = LengthGroupedBatchSampler(dataset.lengths, cfg.batch_size, generator=generator)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=pad)
    return DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, generator=generator,
                      collate_fn=pack if cfg.batching == "packed" else pad)


def eval_loader(dataset: SpamDataset, max_tokens: int = TrainConfig.eval_tokens) -> DataLoader:
    """Padded batches of messages sorted by length, longest first, each of at most
    ``max_tokens`` tokens padding included (a longer message makes a batch alone).

    Sorting keeps padding minimal; the budget gives many short messages per batch and
    few long ones, so that every batch is big enough for fast matrix products and
    small enough to stay in cache. Neither the order nor the batches change a result.
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ConfigError(f"max_tokens doit être un entier >= 1, obtenu {max_tokens!r}.")
    lengths = dataset.lengths
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:  # the first message of a batch is its longest
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return DataLoader(dataset, batch_sampler=batches, collate_fn=pad)


def make_datasets(splits: Splits, tokenizer, max_length: int = 1024) -> dict[str, SpamDataset]:
    """One SpamDataset per split name (train, val, test)."""
    return {name: SpamDataset.from_frame(df, tokenizer, max_length) for name, df in splits.items()}
