"""Test set-up: offline, reading the shared data and tokenizer, writing only to tmp."""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TP3_SHARED", REPO.parent / "shared")).resolve()

# Set before lab_utils is imported anywhere, so every test sees the same environment.
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken_cache"))
os.environ.setdefault("TP3_DATA_DIR", str(SHARED / "data"))
os.environ.setdefault("TP3_CACHE_DIR", tempfile.mkdtemp(prefix="tp3-test-cache-"))
os.environ.setdefault("TP3_PROFILE", "ci")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TP3_PROGRESS"] = "0"
os.environ.pop("NBGRADER_EXECUTION", None)


# The longest modules first (measured), so that the workers of the quick profile (pytest-xdist,
# one module per worker at a time, in this order: dev.py passes --no-loadscope-reorder) end
# together instead of one running the hub test alone at the end.
LONGEST_FIRST = ["test_jupyterhub.py", "test_nbgrader_workflow.py", "test_instructor_browser.py",
                 "test_class_reports.py", "test_grading_trust.py", "test_course_preflight.py", "test_browser.py",
                 "test_dev_commands.py", "test_cli.py", "test_exchange.py", "test_rerun.py", "test_preflight.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module keeps its order


def pytest_report_header(config):
    return f"shared folder: {SHARED} ({'found' if SHARED.is_dir() else 'MISSING'})"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "data" / "SMSSpamCollection").is_file():
        pytest.fail(f"{SHARED} must hold data/SMSSpamCollection and tiktoken_cache/ (set TP3_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def sms_zip(shared) -> bytes:
    """The shared SMS file packed as UCI publishes it (a zip with the file and a readme)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.write(shared / "data" / "SMSSpamCollection", "SMSSpamCollection")
        z.writestr("readme", "SMS Spam Collection v.1")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tokenizer(shared):
    from lab_utils.tokenizer import get_tokenizer

    return get_tokenizer()


@pytest.fixture(scope="session")
def splits(shared):
    from lab_utils.data import load_splits

    return load_splits()


@pytest.fixture(scope="session")
def datasets(splits, tokenizer):
    from lab_utils.loaders import make_datasets

    return make_datasets(splits, tokenizer)


@pytest.fixture(scope="session")
def small_train(datasets):
    """The first 40 training messages (5 batches of 8): quick trainings for behaviour tests."""
    from lab_utils.loaders import SpamDataset

    subset = SpamDataset.__new__(SpamDataset)
    subset.encoded, subset.labels = datasets["train"].encoded[:40], datasets["train"].labels[:40]
    return subset
