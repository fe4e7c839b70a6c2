#!/usr/bin/env python3
"""Peak memory of a student's training kernel (Binder kills a kernel above 2 GB).

    python benchmarks/bench_memory.py [--profile random-small]

1. Runs the training notebook (the release of tp3_partie2 with the answers written in) top
   to bottom in a real Jupyter kernel, as a student would: data, GPT-2 small + LoRA, one
   epoch, evaluation of the three splits, classifications, figures. Then asks the kernel
   for its peak resident memory (VmHWM) and its current one.
2. Measures the weight-loading path alone: OpenAI's file layout, loaded by weights.py,
   with random values (the real file cannot be downloaded here; same size and layout).

``random-small`` has GPT-2 small's architecture and sizes with random weights; ``full``
uses the real pretrained weights (needs them in the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_MB = 1536

LOAD_PATH = r"""
import sys, torch
sys.path.insert(0, {tests!r})
from transformers import GPT2Config, GPT2LMHeadModel
from hf_reference import write_published_checkpoint
torch.manual_seed(0)
path = write_published_checkpoint(GPT2LMHeadModel(GPT2Config(bos_token_id=0, eos_token_id=0)), {folder!r})
print(path.stat().st_size)
"""

MEASURE_LOAD = r"""
from lab_utils.weights import load_pretrained_gpt2
from lab_utils.model import replace_head
from lab_utils.lora import add_lora
model = load_pretrained_gpt2(path={path!r})
replace_head(model, 2); add_lora(model)
status = open("/proc/self/status").read()
print(status.split("VmHWM:")[1].split()[0], status.split("VmRSS:")[1].split()[0])
"""


def kernel_peak(profile: str) -> tuple[float, float, float]:
    import nbformat
    from nbclient import NotebookClient

    sys.path.insert(0, str(REPO / "grading"))
    from course import completed_release

    # What a student runs: the release notebook with its answers written (no hidden tests).
    nb = nbformat.reads(json.dumps(completed_release("tp3_partie2.ipynb")), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        'status = open("/proc/self/status").read()\n'
        'print(status.split("VmHWM:")[1].split()[0], status.split("VmRSS:")[1].split()[0])'))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(TP3_PROFILE=profile, TP3_PROGRESS="0")
        client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": tmp}})
        start = time.perf_counter()
        client.execute()
        seconds = time.perf_counter() - start
    hwm, rss = nb.cells[-1].outputs[0]["text"].split()
    return int(hwm) / 1024, int(rss) / 1024, seconds


def load_peak() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", LOAD_PATH.format(tests=str(REPO / "tests"), folder=tmp)],
                       check=True, capture_output=True)
        out = subprocess.run([sys.executable, "-c", MEASURE_LOAD.format(path=f"{tmp}/model.safetensors")],
                             check=True, capture_output=True, text=True)
    hwm, rss = out.stdout.split()
    return int(hwm) / 1024, int(rss) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="random-small")
    args = parser.parse_args()
    hwm, rss, seconds = kernel_peak(args.profile)
    print(f"training notebook kernel (profile {args.profile}, {seconds:.0f} s): peak {hwm:.0f} MB, "
          f"at the end {rss:.0f} MB; target {TARGET_MB} MB: {'met' if hwm <= TARGET_MB else 'MISSED'}")
    hwm, rss = load_peak()
    print(f"loading GPT-2 small from a file in OpenAI's layout (+ head, LoRA): peak {hwm:.0f} MB, "
          f"after {rss:.0f} MB")


if __name__ == "__main__":
    main()
