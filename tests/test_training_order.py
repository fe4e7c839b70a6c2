"""The training order is drawn from the seed and the epoch alone (lab_utils.loaders.TrainingBatches):
a progress bar, an extra pass over the loader or a re-run cannot shift it."""

from __future__ import annotations

import pytest
import torch

from lab_utils.config import TrainConfig
from lab_utils.loaders import train_loader
from lab_utils.run import build_classifier
from lab_utils.train import train_classifier


def _messages(batch):
    """The token ids of each message of a (packed) batch, as tuples."""
    ids = batch.input_ids[0].tolist()
    ends = (batch.last + 1).tolist()
    starts = [e - n for e, n in zip(ends, batch.lengths.tolist())]
    return [tuple(ids[s:e]) for s, e in zip(starts, ends)]


def test_first_epoch_is_the_seeded_permutation(small_train):
    """Oracle: torch.randperm with a generator seeded by the seed, cut into batches of 8."""
    order = torch.randperm(len(small_train), generator=torch.Generator().manual_seed(42)).tolist()
    expected = [[tuple(small_train.encoded[i]) for i in order[k:k + 8]] for k in range(0, len(order), 8)]
    loader = train_loader(small_train, TrainConfig())
    assert [_messages(b) for b in loader] == expected


@pytest.mark.parametrize("batching", ["packed", "padded", "grouped"])
def test_passes_over_the_loader_do_not_change_the_order(small_train, batching):
    loader = train_loader(small_train, TrainConfig(batching=batching))
    first = [b.labels.tolist() + b.lengths.tolist() for b in loader]
    second = [b.labels.tolist() + b.lengths.tolist() for b in loader]
    assert first == second
    loader.batch_sampler.set_epoch(1)
    assert [b.labels.tolist() + b.lengths.tolist() for b in loader] != first  # another epoch, another order
    assert len(loader) == len(first) == 5


def test_history_is_the_same_with_and_without_the_progress_bar(small_train, capsys):
    cfg = TrainConfig()
    histories = []
    for progress in (True, False):
        model, _ = build_classifier("ci")
        loader = train_loader(small_train, cfg)
        if progress:
            list(iter(loader))  # another consumer of the loader (what tqdm.auto did in a notebook)
        histories.append(train_classifier(model, loader, cfg=cfg, progress=progress))
    assert "Époque 1/1" in capsys.readouterr().err  # the bar was really there
    assert histories[0].batch_losses == histories[1].batch_losses
    assert histories[0].running_train_acc == histories[1].running_train_acc


def test_global_random_state_is_not_consumed(small_train):
    loader = train_loader(small_train, TrainConfig())
    state = torch.get_rng_state()
    list(loader)
    assert torch.equal(torch.get_rng_state(), state)


def test_two_epochs_see_two_different_orders(small_train):
    cfg = TrainConfig(num_epochs=2)
    model, _ = build_classifier("ci")
    history = train_classifier(model, train_loader(small_train, cfg), cfg=cfg)
    assert history.num_batches == 10 and history.epochs == 2
