"""lab_utils: everything the TP3 notebooks use (GPT-2, LoRA, SMS spam data, training).

Importing the package loads nothing from the network and allocates no model.

Where things live:
    config    GPTConfig / LoRAConfig / TrainConfig / DataConfig and model presets
    model     GPTModel and its parts (MultiHeadAttention with W_query, W_key, ...)
    weights   download and load OpenAI's GPT-2 weights
    profiles  full (pretrained), ci (tiny random) and random-small base models
    lora      LoRALayer, LinearWithLoRA, add_lora, merge_lora
    params    parameter counts
    adapter   save / load LoRA adapters
    data      the SMS Spam Collection: download, parse, deduplicate, balance, split
    loaders   datasets, padding / packing, DataLoaders
    train     fine-tuning loop and evaluation
    classify  classify_text / classify_texts
    plots     loss curve and accuracy comparison
    run       build_classifier, run folders, train_or_load
    submission  make_submission: the <student_id>.zip students hand in
    french    French number formatting (fr_number, fr_percent, fr_table)
    grading, thresholds  test-cell helpers, minimum scores of the hidden tests

Docstrings of what the notebooks call are in French: students read them with help().
Lab errors show in Jupyter as their French message alone (errors.LabError).
"""

__version__ = "1.0.0"

from .adapter import load_adapter, save_adapter
from .classify import Prediction, classify_text, classify_texts
from .config import DataConfig, GPTConfig, LoRAConfig, TrainConfig, gpt_config
from .data import LABELS, SPLIT_NAMES, load_splits, preview_messages, read_sms_spam, sms_spam_path, style_features
from .errors import LabError, RunError, SubmissionError
from .french import fr_number, fr_percent, fr_table
from .loaders import eval_loader, make_datasets, train_loader
from .lora import LinearWithLoRA, LoRALayer, add_lora, merge_lora, unmerge_lora
from .model import GPTModel, build_model, replace_head
from .params import (count_lora_parameters, count_parameters, lora_model_counts,
                     lora_parameters_formula, parameter_counts)
from . import grading
from .plots import plot_accuracies, plot_loss, plot_parameter_counts
from .profiles import get_profile, load_base_model
from .progress import is_grading
from .run import RUN_DIR, build_classifier, load_run, save_run, train_or_load
from .submission import make_submission
from .tokenizer import PAD_TOKEN_ID, get_tokenizer
from .train import History, evaluate, evaluate_splits, train_classifier

__all__ = [
    "load_adapter", "save_adapter",
    "Prediction", "classify_text", "classify_texts",
    "DataConfig", "GPTConfig", "LoRAConfig", "TrainConfig", "gpt_config",
    "LABELS", "SPLIT_NAMES", "load_splits", "preview_messages", "read_sms_spam", "sms_spam_path", "style_features",
    "LabError", "RunError", "SubmissionError",
    "fr_number", "fr_percent", "fr_table",
    "eval_loader", "make_datasets", "train_loader",
    "LinearWithLoRA", "LoRALayer", "add_lora", "merge_lora", "unmerge_lora",
    "GPTModel", "build_model", "replace_head",
    "count_lora_parameters", "count_parameters", "lora_model_counts", "lora_parameters_formula",
    "parameter_counts",
    "plot_accuracies", "plot_loss", "plot_parameter_counts",
    "get_profile", "load_base_model",
    "grading", "is_grading",
    "RUN_DIR", "build_classifier", "load_run", "save_run", "train_or_load", "make_submission",
    "PAD_TOKEN_ID", "get_tokenizer",
    "History", "evaluate", "evaluate_splits", "train_classifier",
]
