"""The checks of the notebooks' test cells (lab_utils.grading): every correct form of an
answer passes, a wrong one fails with a French message that says what is expected. And the
minimum scores of the hidden tests (lab_utils.thresholds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lab_utils import grading, thresholds
from lab_utils.classify import Prediction

N = "\u202f"


def _fails(call) -> str:
    with pytest.raises(AssertionError) as err:
        call()
    return str(err.value)


@pytest.mark.parametrize("got", [72, np.int64(72), np.int32(72), torch.tensor(72), torch.tensor([72]), 72.0,
                                 np.array(72)])
def test_counts_in_any_numeric_type(got):
    grading.check_number("n_wrapped", got, 72)
    grading.check_integer("n_wrapped", got, low=1, high=100)


@pytest.mark.parametrize("got", [0.0, 0, torch.tensor(0.0), np.float32(0.0), torch.zeros(()).max()])
def test_zero_difference_as_a_tensor_or_a_number(got):
    grading.check_number("max_diff", got, 0.0)


@pytest.mark.parametrize("got", [True, np.True_, torch.tensor(True)])
def test_booleans_in_any_type(got):
    grading.check_equal("base_frozen", got, True)


def test_no_check_returns_a_value():
    """A test cell ending in a number would be read by nbgrader as partial credit."""
    assert grading.check_integer("x", 5, low=1) is None
    assert grading.check_fraction("x", 0.5) is None
    assert grading.check_percent("x", 0.807, 0.807, 0.01) is None
    assert grading.check_number("x", 1, 1) is None


@pytest.mark.parametrize("call, message", [
    (lambda: grading.check_integer("total_params", 1_327_104, low=100_000_000, what="tous les paramètres"),
     "total_params : attendu un nombre entier d'au moins 100 000 000 (tous les paramètres), obtenu 1 327 104."),
    (lambda: grading.check_integer("total_params", 164364288.5, low=1),
     "total_params : attendu un nombre entier d'au moins 1, obtenu 164 364 288,5, qui n'est pas entier."),
    (lambda: grading.check_integer("head_drop", 0, low=1),
     "head_drop : attendu un nombre entier d'au moins 1, obtenu 0."),
    (lambda: grading.check_number("total_params", 163_037_184, 164_364_288),
     "total_params : attendu 164 364 288, obtenu 163 037 184."),
    (lambda: grading.check_number("max_diff", torch.ones(2, 3), 0.0),
     "max_diff : attendu un nombre, obtenu un tableau de forme (2, 3)."),
    (lambda: grading.check_number("max_diff", "0", 0.0),
     "max_diff : attendu un nombre, obtenu str '0'."),
    (lambda: grading.check_fraction("test_acc", 84.7),
     "test_acc : attendu une proportion entre 0 et 1, obtenu 84,7, qui ressemble à un pourcentage : divisez par 100."),
    (lambda: grading.check_fraction("test_acc", -0.1),
     "test_acc : attendu une proportion entre 0 et 1, obtenu -0,1."),
    (lambda: grading.check_percent("trainable_share", 0.00807, 0.807, abs_tol=0.01),
     "trainable_share : attendu un pourcentage (0,807 environ), obtenu 0,00807, qui est une proportion : "
     "multipliez par 100."),
    (lambda: grading.check_percent("trainable_share", 0.9, 0.807, abs_tol=0.01),
     "trainable_share : attendu 0,807 (à 0,01 près), obtenu 0,9."),
    (lambda: grading.check_equal("base_frozen", 1, True),
     "base_frozen : attendu un booléen (True), obtenu int 1."),
    (lambda: grading.check_equal("base_frozen", np.False_, True),
     "base_frozen : attendu True, obtenu False."),
])
def test_french_messages_say_what_is_expected(call, message):
    assert _fails(call) == message.replace(" 000", f"{N}000").replace(" 327", f"{N}327") \
        .replace(" 104", f"{N}104").replace(" 364", f"{N}364").replace(" 288", f"{N}288") \
        .replace(" 037", f"{N}037").replace(" 184", f"{N}184")


WANT = Prediction("spam", 0.987654)


@pytest.mark.parametrize("got", [WANT, ("spam", 0.987654), ["spam", 0.9877], ("SPAM", 0.988), (" spam ", 0.98765),
                                 ("spam", np.float32(0.987654)), ("spam", torch.tensor(0.9877))])
def test_predictions_in_any_form_and_rounded_to_3_decimals(got):
    grading.check_prediction("p", got, WANT)


@pytest.mark.parametrize("got, words", [
    (("spam", 0.99), "le modèle sauvegardé donne spam (0,9877), obtenu spam (0,9900)"),  # rounded to 2 decimals
    (("ham", 0.987654), "obtenu ham (0,9877)"),
    (("spam", 1.5), "attendu (\"spam\" ou \"ham\", confiance entre 0,5 et 1)"),
    ("spam", "attendu une prédiction (classe, confiance)"),
])
def test_wrong_predictions(got, words):
    assert words in _fails(lambda: grading.check_prediction("p", got, WANT))


def test_text_pairs():
    assert grading.text_pairs("my_texts", [("a", "Spam"), ["b", "ham "], ("c", "HAM")]) == \
        [("a", "spam"), ("b", "ham"), ("c", "ham")]
    assert "attendu une liste d'au moins 3 couples" in _fails(lambda: grading.text_pairs("my_texts", [("a", "spam")]))
    assert "my_texts[1] : attendu un couple (texte non vide, \"spam\" ou \"ham\")" in \
        _fails(lambda: grading.text_pairs("my_texts", [("a", "spam"), ("b", "junk"), ("c", "ham")]))


# ----------------------------------------------------------------------------- thresholds

def test_thresholds_from_the_environment(monkeypatch):
    monkeypatch.setenv("TP3_THRESHOLDS", json.dumps({"test_acc": 0.93, "instructor_texts": 0.7}))
    assert grading.threshold("test_acc", "full") == 0.93
    assert grading.threshold("instructor_texts", "ci") == 0.7


def test_thresholds_default_per_profile(monkeypatch):
    monkeypatch.delenv("TP3_THRESHOLDS", raising=False)
    assert grading.threshold("test_acc", "ci") == thresholds.DEFAULTS["ci"]["test_acc"]
    assert grading.threshold("instructor_texts", "full") == thresholds.DEFAULTS["full"]["instructor_texts"]
    monkeypatch.setenv("TP3_THRESHOLDS", json.dumps({"test_acc": 0.93}))  # a name it does not give: default
    assert grading.threshold("instructor_texts", "ci") == thresholds.DEFAULTS["ci"]["instructor_texts"]


@pytest.mark.parametrize("raw", ["{not json", "[0.9]", '{"test_acc": 1.5}', '{"test_acc": "0.9"}', '{"test_acc": true}'])
def test_bad_thresholds_are_refused_loudly(monkeypatch, raw):
    from lab_utils.errors import ConfigError

    monkeypatch.setenv("TP3_THRESHOLDS", raw)
    with pytest.raises(ConfigError, match="TP3_THRESHOLDS"):
        grading.threshold("test_acc", "full")


def test_threshold_rule():
    """Measured minus the margin, rounded down to a hundredth, never below chance."""
    assert thresholds.derive({"test_acc": 0.9666, "instructor_texts": 1.0}) == {"test_acc": 0.91, "instructor_texts": 0.8}
    assert thresholds.derive({"test_acc": 0.8473, "instructor_texts": 0.8}) == {"test_acc": 0.79, "instructor_texts": 0.6}
    assert thresholds.derive({"test_acc": 0.52, "instructor_texts": 0.5}) == {"test_acc": 0.5, "instructor_texts": 0.5}


def test_threshold_file_is_merged_per_profile(tmp_path):
    path = tmp_path / "thresholds.json"
    thresholds.write(path, "ci", {"test_acc": 0.8473, "instructor_texts": 0.8}, tmp_path / "run-ci", "1.0.0")
    thresholds.write(path, "full", {"test_acc": 0.9666, "instructor_texts": 1.0}, tmp_path / "run-full", "1.0.0")
    data = json.loads(path.read_text())
    assert set(data) == {"ci", "full"}
    assert data["ci"]["thresholds"] == {"test_acc": 0.79, "instructor_texts": 0.6}
    assert data["full"]["measured"] == {"test_acc": 0.9666, "instructor_texts": 1.0}
    assert data["full"]["run_dir"].endswith("run-full") and data["full"]["rule"] == thresholds.RULE
