"""The grading memo (``lab_utils.eval_memo``): a stored evaluation is returned for the very
same computation only, and what the grader stores is what ``evaluate`` computes.

Oracles: ``evaluate`` with the memo unset (the real forward pass), and a deliberately wrong
stored value that shows whether the memo was used.
"""

from __future__ import annotations

import json

import pytest
import torch

import grading_course  # noqa: F401 (puts grading/ on the path)
from lab_utils import eval_memo
from lab_utils.loaders import SpamDataset, eval_loader
from lab_utils.run import build_classifier, load_run, load_run_into, save_run
from lab_utils.train import History, evaluate

POISON = [9.0, 0.123, 7]  # (loss, accuracy, n): no real evaluation gives these


@pytest.fixture(scope="module")
def model():
    model, _ = build_classifier("ci", seed=42)
    return model.eval()


@pytest.fixture(scope="module")
def messages(datasets):
    subset = SpamDataset.__new__(SpamDataset)
    subset.encoded, subset.labels = datasets["test"].encoded[:24], datasets["test"].labels[:24]
    return subset


def _poisoned(monkeypatch, model, batches, precision="fp32"):
    k = eval_memo.key(eval_memo.model_digest(model), eval_memo.batches_digest(batches), precision,
                      torch.device("cpu"))
    monkeypatch.setenv(eval_memo.MEMO_ENV, json.dumps({k: POISON}))


def _is_poison(result) -> bool:
    return (result.loss, result.accuracy, result.n) == tuple(POISON)


def test_the_same_computation_gets_the_stored_result(monkeypatch, model, messages):
    real = evaluate(model, eval_loader(messages))
    _poisoned(monkeypatch, model, list(eval_loader(messages)))
    model.train()
    assert _is_poison(evaluate(model, eval_loader(messages)))  # evaluated in eval mode, as stored
    assert model.training  # and left as it was
    model.eval()
    assert _is_poison(evaluate(model, eval_loader(messages)))
    monkeypatch.delenv(eval_memo.MEMO_ENV)
    assert evaluate(model, eval_loader(messages)) == real and not _is_poison(real)


def _flip_one_bit(m):
    w = m.trf_blocks[0].att.W_query.lora.B
    with torch.no_grad():
        w.view(torch.int32).view(-1)[0] ^= 1


def _hook(m):
    m.trf_blocks[0].register_forward_hook(lambda module, args, out: out)


def _instance_forward(m):
    block = m.trf_blocks[0]
    block.forward = block.forward


def _patched_class(m):
    import lab_utils.model as model_module

    original = model_module.FeedForward.forward

    def forward(self, x):
        return original(self, x)

    forward.__module__ = "__main__"
    m.patched = original  # restored by the test
    model_module.FeedForward.forward = forward


def _pre_hook(m):
    m.trf_blocks[0].att.register_forward_pre_hook(lambda module, args: None)


def _global_hook(m):
    handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: out)
    m.patched = handle.remove  # removed by the test


def _double(m):
    m.double()


def _alpha(m):
    lora = m.trf_blocks[0].att.W_query.lora
    lora.scale = lora.scale * 2


CHANGES = {"one bit of one weight": _flip_one_bit, "a forward hook": _hook, "a forward pre-hook": _pre_hook,
           "a global forward hook": _global_hook, "an instance forward": _instance_forward,
           "a class's forward replaced": _patched_class, "LoRA's scale": _alpha, "float64 weights": _double}


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_to_the_model_is_evaluated_for_real(monkeypatch, messages, change):
    import lab_utils.model as model_module

    m, _ = build_classifier("ci", seed=42)
    m.eval()
    batches = list(eval_loader(messages))
    _poisoned(monkeypatch, m, batches)
    assert _is_poison(evaluate(m, batches))
    original = model_module.FeedForward.forward
    try:
        CHANGES[change](m)
        assert not _is_poison(evaluate(m, batches))
    finally:
        model_module.FeedForward.forward = original
        if callable(getattr(m, "patched", None)) and change == "a global forward hook":
            m.patched()


def test_other_batches_or_precision_are_evaluated_for_real(monkeypatch, model, messages):
    batches = list(eval_loader(messages))
    _poisoned(monkeypatch, model, batches)
    other = [b._replace(input_ids=b.input_ids.clone()) for b in batches]
    other[0].input_ids[0, 0] += 1
    assert not _is_poison(evaluate(model, other))
    assert not _is_poison(evaluate(model, list(eval_loader(messages, max_tokens=64))))
    assert not _is_poison(evaluate(model, batches, precision="bf16"))


@pytest.mark.parametrize("memo", ["not json", "[1, 2]", json.dumps({"k": [1, 2]}), json.dumps({"k": ["a", 1, 2]}),
                                  json.dumps({str(i): [0.0, 1.0, 1] for i in range(eval_memo.MAX_ENTRIES + 1)})])
def test_a_malformed_memo_is_ignored(monkeypatch, memo):
    monkeypatch.setenv(eval_memo.MEMO_ENV, memo)
    assert eval_memo.stored() == {}


def test_what_the_grader_stores_is_what_the_notebook_computes(tmp_path, monkeypatch, datasets):
    """``precompute`` (the grader, from the run folder) against the notebook's path: the
    classifier built by ``build_classifier``, the run loaded into it, ``eval_loader`` of each
    split: every split a hit, with the values of a real evaluation."""
    m, _ = build_classifier("ci", seed=42)
    with torch.no_grad():  # a trained-looking adapter: not the initial state
        for p in m.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    monkeypatch.chdir(tmp_path)
    save_run("tp3_run", m, History(config={"seed": 42}))
    memo = eval_memo.precompute("tp3_run")
    assert len(memo) == 3
    notebook, _ = build_classifier("ci", seed=42)
    load_run_into(notebook, "tp3_run")
    monkeypatch.setenv(eval_memo.MEMO_ENV, json.dumps({k: POISON for k in memo}))
    for name in ("train", "val", "test"):
        assert _is_poison(evaluate(notebook, eval_loader(datasets[name]))), name
    monkeypatch.delenv(eval_memo.MEMO_ENV)
    reference, _ = load_run("tp3_run")
    cpu = torch.device("cpu")
    for name in ("train", "val", "test"):  # each split's entry is that split's real evaluation
        batches = list(eval_loader(datasets[name]))
        real = evaluate(reference, batches)
        k = eval_memo.key(eval_memo.model_digest(notebook.eval()), eval_memo.batches_digest(batches), "fp32", cpu)
        assert memo[k] == [real.loss, real.accuracy, real.n], name


def test_the_grader_speaks_the_same_memo():
    """The grader does not import lab_utils (nor torch): its copies of the names agree."""
    from autograder import sandbox, verify

    assert (verify.MEMO_ENV, verify.MEMO_ENTRIES) == (eval_memo.MEMO_ENV, eval_memo.MAX_ENTRIES)
    assert eval_memo.MEMO_ENV in sandbox.PASS_ENV
