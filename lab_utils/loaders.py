"""Tokenised datasets, batching and DataLoaders.

Three ways to turn a list of messages into a batch, none of which changes a result:

- ``pad``: one message per row, right-padded to the batch's longest message
  (dynamic padding). Causal attention never lets a real token see the padding
  that follows it, and the class is read at the last real token.
- ``pack``: all messages of the batch end to end in a single row, each with its own
  positions and a block-diagonal causal mask, so no compute at all goes to padding.
  This is the training default: batches stay random, as in the classic recipe.
- length grouping (``TrainingBatches(grouped=True)``): padded batches of messages of
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


class TrainingBatches(Sampler[list[int]]):
    """The training order, drawn explicitly: batches of ``batch_size`` message indices.

    Epoch ``e`` is the ``e``-th draw of one generator seeded with ``seed``: a permutation
    cut into consecutive batches, or, with ``grouped``, length-grouped batches (shuffle,
    cut into windows of ``batch_size * window`` messages, sort each window by length,
    cut it into batches, shuffle the batches). Iterating consumes no shared random
    state, so a progress bar, a second pass over the loader or a re-run of a cell
    cannot change the order; the training loop calls ``set_epoch``.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, grouped: bool = False,
                 window: int = 16):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.grouped = grouped
        self.window = window
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """The batches of ``epoch`` (default: the current one)."""
        generator = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epoch if epoch is None else epoch):
            self._draw(generator)
        return self._draw(generator)

    def _draw(self, generator: torch.Generator) -> list[list[int]]:
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        size = self.batch_size
        if not self.grouped:
            return [order[i : i + size] for i in range(0, len(order), size)]
        span = size * self.window
        batches = []
        for start in range(0, len(order), span):
            chunk = sorted(order[start : start + span], key=self.lengths.__getitem__)
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        if not self.grouped:
            return -(-len(self.lengths) // self.batch_size)
        span = self.batch_size * self.window
        full, rest = divmod(len(self.lengths), span)
        return full * self.window + -(-rest // self.batch_size)


def train_loader(dataset: SpamDataset, cfg: TrainConfig) -> DataLoader:
    """Lots mélangés de ``cfg.batch_size`` messages pour l'entraînement.

    L'ordre des messages est tiré de ``cfg.seed`` (graine) et de l'époque seulement :
    deux entraînements avec la même graine voient les mêmes lots, dans le même ordre.
    """
    sampler = TrainingBatches(dataset.lengths, cfg.batch_size, cfg.seed, grouped=cfg.batching == "grouped")
    collate = pack if cfg.batching == "packed" else pad
    # A generator of its own: DataLoader draws a base seed from it at each pass (for its
    # workers), which must not touch the global random state.
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, generator=torch.Generator())


def eval_loader(dataset: SpamDataset, max_tokens: int = TrainConfig.eval_tokens) -> DataLoader:
    """Lots pour l'évaluation : les messages de ``dataset`` triés par longueur, chaque lot
    d'au plus ``max_tokens`` tokens (remplissage compris). Ni l'ordre ni les lots ne
    changent un résultat.
    """
    # Sorting keeps padding minimal; the budget gives many short messages per batch and
    # few long ones: big enough for fast matrix products, small enough to stay in cache.
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
    """Les messages de chaque jeu (``train``, ``val``, ``test``) découpés en tokens, une fois
    pour toutes : ``{"train": ..., "val": ..., "test": ...}``."""
    return {name: SpamDataset.from_frame(df, tokenizer, max_length) for name, df in splits.items()}
