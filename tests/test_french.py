"""French number formatting (lab_utils.french), against strings written by hand, and the
places a student reads numbers: figures, tables, the command line's tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lab_utils.french import fr_number, fr_percent, fr_table, plain_number

N = "\u202f"  # narrow no-break space


@pytest.mark.parametrize("value, decimals, expected", [
    (164_364_288, None, "164 364 288"),
    (1_327_104, None, "1 327 104"),
    (5_574, None, "5 574"),
    (999, None, "999"),
    (0, None, "0"),
    (-38_595_838, None, "-38 595 838"),
    (0.807, 3, "0,807"),
    (0.6931, 2, "0,69"),
    (1234.5, None, "1 234,5"),
    (1234.5, 2, "1 234,50"),
    (0.5, None, "0,5"),
    (2.0, None, "2"),
    (1e-7, None, "1e-07"),
    (548.105171, 0, "548"),
    (np.int64(72), None, "72"),
    (np.float32(0.25), 2, "0,25"),
    (torch.tensor(3.5), None, "3,5"),
    (torch.tensor([125_768_450]), None, "125 768 450"),
])
def test_numbers(value, decimals, expected):
    assert fr_number(value, decimals) == expected.replace(" ", N)


@pytest.mark.parametrize("value, decimals, scale, expected", [
    (0.8154, 2, 100, "81,54 %"),
    (0.9666, 2, 100, "96,66 %"),
    (0.5, 0, 100, "50 %"),
    (1.0, 1, 100, "100,0 %"),
    (0.807, 3, 1, "0,807 %"),
    (1.0552, 3, 1, "1,055 %"),
    (12.5, 1, 100, "1 250,0 %"),
])
def test_percentages(value, decimals, scale, expected):
    assert fr_percent(value, decimals, scale=scale) == expected.replace(" ", N)


@pytest.mark.parametrize("value", [True, "abc", None, [1, 2], torch.ones(2)])
def test_non_numbers_are_written_as_they_are(value):
    assert fr_number(value) == str(value)
    assert plain_number(value) is None


def test_special_floats():
    assert (fr_number(float("nan")), fr_number(float("inf")), fr_number(float("-inf"))) == ("NaN", "∞", "-∞")


def test_table_html_has_french_numbers():
    table = pd.DataFrame({"message": ["a", "b"], "confiance": [0.97, 0.9999], "n": [1234, 5]})
    html = fr_table(table, decimals={"confiance": 3}).to_html()
    for text in ("0,970", "1,000", f"1{N}234", ">5<", ">a<"):
        assert text in html, text
    assert "0.97" not in html and "1234" not in html


def test_figures_write_decimal_commas():
    from lab_utils.plots import plot_accuracies, plot_loss
    from lab_utils.train import History

    history = History(batch_losses=[0.9, 0.7, 0.5, 0.3], running_train_acc=[0.5, 0.5, 0.75, 0.8154])
    fig = plot_loss(history)
    fig.canvas.draw()
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert any("," in t for t in ticks) and not any("." in t for t in ticks), ticks
    fig = plot_accuracies(history, {"train": 0.8154, "val": 0.79, "test": 0.8})
    fig.canvas.draw()
    left, right = fig.axes
    labels = [t.get_text() for t in right.texts]
    assert labels == [f"81,5{N}%", f"81,5{N}%", f"79,0{N}%", f"80,0{N}%"]
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert legend == ["exactitude courante (entraînement)", "modèle final, entraînement",
                      "modèle final, validation", "modèle final, test"]
    bars = [t.get_text() for t in right.get_xticklabels()]
    assert bars == ["courante\n(époque)", "finale\nentraînement", "finale\nvalidation", "finale\ntest"]
    assert fig._suptitle.get_text() == "Exactitude courante pendant l'époque et exactitude du modèle final"


def test_parameter_figure_labels():
    from lab_utils.plots import plot_parameter_counts

    fig = plot_parameter_counts(["gpt2-small", "gpt2-medium"])
    labels = [t.get_text() for t in fig.axes[0].texts if t.get_text()]
    assert labels == [f"LoRA 1,33 M (1,055{N}%)", f"LoRA 3,54 M (0,988{N}%)"]


def test_training_progress_bar_speaks_french(small_train, capsys):
    """The postfix of the training bar: 'perte' and 'exactitude courante', French numbers."""
    from lab_utils.config import TrainConfig
    from lab_utils.loaders import train_loader
    from lab_utils.run import build_classifier
    from lab_utils.train import train_classifier

    model, _ = build_classifier("ci")
    train_classifier(model, train_loader(small_train, TrainConfig()), progress=True)
    err = capsys.readouterr().err
    assert "Époque 1/1" in err and "perte 0," in err and "exactitude courante" in err
    assert "loss=" not in err and "acc=" not in err and "it/s" not in err

