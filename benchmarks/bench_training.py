#!/usr/bin/env python3
"""Speed and memory of one-epoch LoRA fine-tuning of GPT-2 small: baseline versus the lab.

    python benchmarks/bench_training.py                 # baseline extrapolated from 24 batches
    python benchmarks/bench_training.py --full          # everything measured in full (~12 min)
    python benchmarks/bench_training.py --variants all  # also padded / grouped / bf16 variants

Each configuration runs in its own process (so that its peak resident memory is its own)
on GPT-2 small's architecture with random weights (speed does not depend on their values),
LoRA rank 8 on the 72 block linears, batch size 8, the real deduplicated balanced split.

- baseline: the classic recipe: every batch padded to the longest training message,
  eager attention (explicit mask and softmax), logits of every position computed and
  the last real token's read; the same model, data and optimiser;
- lab: exactly what the notebooks and the CLI call (``train_classifier``, ``evaluate``
  on ``eval_loader``) with TrainConfig's defaults: packed batches, fused attention, the
  last block computed only for the tokens that are read, fp32.

Evaluation (train, val, test) is timed the same way: the baseline pads batches of 16
to the longest message; the lab uses length-sorted batches of at most 512 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

VARIANTS = {
    # name: TrainConfig overrides of the lab's own path (train_classifier, evaluate)
    "lab": {},
    "lab-bf16": dict(precision="bf16"),
    "padded": dict(batching="padded"),
    "grouped": dict(batching="grouped"),
}
BASELINE_EVAL_BATCH = 16  # messages per evaluation batch in the baseline


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def matmul_peak(dtype_name: str) -> float:
    """GFLOP/s of a GPT-2-sized matmul (1024 x 768 @ 768 x 3072), best of 10."""
    import torch

    dtype = getattr(torch, {"fp32": "float32", "bf16": "bfloat16"}[dtype_name])
    a, b = torch.randn(1024, 768, dtype=dtype), torch.randn(768, 3072, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(10):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 1024 * 768 * 3072 / best / 1e9


def forward_flops(cfg, batch, read_only: bool) -> float:
    """Matmul FLOPs of one forward pass over ``batch``: the block linears (12 C^2 per token:
    W_query, W_key, W_value, out_proj 4 C^2, fc1 and fc2 8 C^2) and attention (scores and
    weighted sum: 2 C per earlier token). With ``read_only`` the last block computes keys
    and values for every token but the rest only for the last token of each message."""
    C, L = cfg.emb_dim, cfg.n_layers
    tokens = batch.input_ids.numel()
    if batch.attn_mask is None:  # one message per row: each token sees half its row on average
        context = tokens * batch.input_ids.shape[1] / 2
    else:  # packed: each token sees half its own message
        context = float((batch.lengths.float() ** 2).sum() / 2)
    full = 12 * C * C * tokens + 2 * C * context
    if not read_only:
        return 2 * L * full
    read = len(batch.labels)
    last = 2 * C * C * tokens + 10 * C * C * read + 2 * C * float(batch.lengths.sum())
    return 2 * ((L - 1) * full + last)


def worker(name: str, max_batches: int | None) -> dict:
    import itertools

    import torch

    from lab_utils.config import TrainConfig, gpt_config
    from lab_utils.data import load_splits
    from lab_utils.loaders import eval_loader, make_datasets, train_loader
    from lab_utils.lora import add_lora
    from lab_utils.model import build_model, replace_head
    from lab_utils.profiles import get_profile
    from lab_utils.tokenizer import get_tokenizer
    from lab_utils.train import evaluate, train_classifier

    baseline = name == "baseline"
    cfg = TrainConfig(**({} if baseline else VARIANTS[name]))
    datasets = make_datasets(load_splits(), get_tokenizer())
    longest = max(max(d.lengths) for d in datasets.values())

    # The random-small profile's model (GPT-2 small's architecture).
    gpt_cfg = gpt_config("gpt2-small").with_(attn_impl="eager" if baseline else "sdpa")
    model = build_model(gpt_cfg, seed=get_profile("random-small").base_seed)
    replace_head(model, 2, seed=cfg.seed)
    add_lora(model, seed=cfg.seed)

    def train_batches():  # a fresh loader each time: the same seeded order
        if baseline:
            return baseline_loader(datasets["train"], cfg.batch_size, longest, shuffle_seed=cfg.seed)
        return train_loader(datasets["train"], cfg)

    total_batches = len(train_batches())
    n_batches = min(total_batches, max_batches or total_batches)
    batches = list(itertools.islice(train_batches(), n_batches))  # for the token and FLOP counts
    real = sum(b.num_tokens for b in batches)
    computed = sum(b.input_ids.numel() for b in batches)
    flops = sum(2 * forward_flops(gpt_cfg, b, read_only=not baseline) for b in batches)  # fwd + input-grad bwd

    start = time.perf_counter()
    if baseline:
        losses = baseline_train(model, batches, cfg)
    else:  # exactly what the notebooks call
        losses = train_classifier(model, train_batches(), cfg=cfg, progress=False).batch_losses
    train_seconds = time.perf_counter() - start

    evaluation = {}
    for split, ds in datasets.items():
        if baseline:
            loader = baseline_loader(ds, BASELINE_EVAL_BATCH, longest)
            n_eval = len(loader) if max_batches is None else max(1, min(len(loader), max_batches // 4))
            eval_batches = list(itertools.islice(loader, n_eval))
            t = time.perf_counter()
            accuracy = baseline_accuracy(model, eval_batches)
            gflop = sum(forward_flops(gpt_cfg, b, read_only=False) for b in eval_batches) / 1e9
        else:
            loader = eval_loader(ds, cfg.eval_tokens)
            n_eval, eval_batches = len(loader), list(loader)
            t = time.perf_counter()
            accuracy = evaluate(model, loader, precision=cfg.precision).accuracy
            gflop = sum(forward_flops(gpt_cfg, b, read_only=True) for b in eval_batches) / 1e9
        seconds = time.perf_counter() - t
        evaluation[split] = dict(seconds=seconds * len(loader) / n_eval, measured_batches=n_eval,
                                 batches=len(loader), measured_seconds=seconds, accuracy=accuracy, gflop=gflop,
                                 real_tokens=sum(b.num_tokens for b in eval_batches),
                                 computed_tokens=sum(b.input_ids.numel() for b in eval_batches))
    return dict(
        name=name, batches_measured=n_batches, batches_per_epoch=total_batches,
        epoch_seconds=train_seconds * total_batches / n_batches, measured_seconds=train_seconds,
        real_tokens=real, computed_tokens=computed, gflop=flops / 1e9,
        losses=losses, evaluation=evaluation, peak_rss_mb=peak_rss_mb(),
        threads=torch.get_num_threads(),
    )


def baseline_loader(dataset, batch_size: int, longest: int, shuffle_seed: int | None = None):
    """The classic recipe's batches: every message padded to the longest of the data."""
    import torch
    import torch.nn.functional as F

    from lab_utils.loaders import pad
    from lab_utils.tokenizer import PAD_TOKEN_ID

    def to_longest(items):
        batch = pad(items)
        extra = longest - batch.input_ids.shape[1]
        return batch._replace(input_ids=F.pad(batch.input_ids, (0, extra), value=PAD_TOKEN_ID))

    generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=generator is not None,
                                       generator=generator, collate_fn=to_longest)


def baseline_logits(model, batch):
    """The classic forward: logits of every position, then read at the last real token."""
    return model(batch.input_ids)[batch.rows, batch.last]


def baseline_train(model, batches, cfg) -> list[float]:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    losses = []
    for batch in batches:
        loss = F.cross_entropy(baseline_logits(model, batch), batch.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def baseline_accuracy(model, batches) -> float:
    import torch

    model.eval()
    correct = seen = 0
    with torch.no_grad():
        for batch in batches:
            correct += int((baseline_logits(model, batch).argmax(-1) == batch.labels).sum())
            seen += len(batch.labels)
    return correct / max(seen, 1)


def run_worker(name: str, max_batches: int | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", name]
    if max_batches:
        cmd += ["--max-batches", str(max_batches)]
    env = {**os.environ, "TP3_PROGRESS": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"worker {name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--max-batches", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-batches", type=int, default=24,
                        help="training batches of the baseline actually run, then extrapolated (default 24)")
    parser.add_argument("--full", action="store_true", help="run every configuration in full")
    parser.add_argument("--variants", default="lab-bf16", help="extra variants: comma list or 'all'")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.max_batches)))
        return

    import torch

    extra = [v for v in VARIANTS if v not in ("baseline", "lab")] if args.variants == "all" else \
        [v for v in args.variants.split(",") if v]
    print(f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}")
    peaks = {p: matmul_peak(p) for p in ("fp32", "bf16")}
    print(f"Matmul peak (1024x768 @ 768x3072): fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")

    results = {"baseline": run_worker("baseline", None if args.full else args.baseline_batches)}
    for name in ["lab", *extra]:
        results[name] = run_worker(name, None)

    base, lab = results["baseline"], results["lab"]
    print("\nTraining, one epoch of", lab["batches_per_epoch"], "batches of 8 (GPT-2 small, LoRA r=8):")
    header = f"{'config':10s} {'s/epoch':>8s} {'real tok/s':>10s} {'comp. tok/s':>11s} {'pad %':>6s} " \
             f"{'GFLOP/s':>8s} {'% peak':>7s} {'peak RSS':>9s} {'speed-up':>9s}"
    print(header)
    for name, r in results.items():
        peak = peaks["bf16" if "bf16" in name else "fp32"]
        gflops = r["gflop"] / r["measured_seconds"]
        note = f" (extrapolated from {r['batches_measured']} batches)" if r["batches_measured"] < r["batches_per_epoch"] else ""
        print(f"{name:10s} {r['epoch_seconds']:8.1f} {r['real_tokens'] / r['measured_seconds']:10.0f} "
              f"{r['computed_tokens'] / r['measured_seconds']:11.0f} "
              f"{100 * (1 - r['real_tokens'] / r['computed_tokens']):6.1f} {gflops:8.0f} {100 * gflops / peak:6.0f}% "
              f"{r['peak_rss_mb']:7.0f} MB {base['epoch_seconds'] / r['epoch_seconds']:8.2f}x{note}")

    print("\nEvaluation of train + val + test (accuracy, loss, no gradients):")
    print(f"{'config':10s} {'train s':>8s} {'val s':>6s} {'test s':>7s} {'total s':>8s} {'real tok/s':>10s} "
          f"{'GFLOP/s':>8s} {'% peak':>7s} {'at peak':>8s} {'speed-up':>9s}")
    base_total = sum(e["seconds"] for e in base["evaluation"].values())
    for name, r in results.items():
        ev = r["evaluation"]
        total = sum(e["seconds"] for e in ev.values())
        measured = sum(e["measured_seconds"] for e in ev.values())
        tok = sum(e["real_tokens"] for e in ev.values()) / measured
        gflops = sum(e["gflop"] for e in ev.values()) / measured
        peak = peaks["bf16" if "bf16" in name else "fp32"]
        at_peak = total * gflops / peak  # the same FLOPs at 100 % of the matmul peak
        note = " (extrapolated)" if any(e["measured_batches"] < e["batches"] for e in ev.values()) else ""
        print(f"{name:10s} {ev['train']['seconds']:8.1f} {ev['val']['seconds']:6.1f} {ev['test']['seconds']:7.1f} "
              f"{total:8.1f} {tok:10.0f} {gflops:8.0f} {100 * gflops / peak:6.0f}% {at_peak:7.1f}s "
              f"{base_total / total:8.2f}x{note}")

    if "lab-bf16" in results:
        import numpy as np

        a, b = np.array(lab["losses"]), np.array(results["lab-bf16"]["losses"])
        print(f"\nbf16 versus fp32 loss history ({len(a)} batches): max |diff| {np.abs(a - b).max():.4f}, "
              f"mean |diff| {np.abs(a - b).mean():.4f}, mean loss fp32 {a.mean():.4f} / bf16 {b.mean():.4f}; "
              "test accuracy fp32 {:.4f} / bf16 {:.4f}".format(
                  lab["evaluation"]["test"]["accuracy"], results["lab-bf16"]["evaluation"]["test"]["accuracy"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peaks": peaks, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
