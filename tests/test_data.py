"""The SMS Spam Collection: exact parse, deduplication, balance, split, verified download."""

from __future__ import annotations

import csv
from dataclasses import replace

import pandas as pd
import pytest

from http_server import FileServer, Route
from lab_utils.config import DataConfig
from lab_utils.data import SMS_SPAM, balance, deduplicate, load_splits, read_sms_spam, sms_spam_path
from lab_utils.download import fetch, sha256sum
from lab_utils.errors import ChecksumError, DataError, DownloadError


@pytest.fixture(scope="module")
def raw(shared):
    return read_sms_spam(shared / "data" / "SMSSpamCollection")


def test_exact_parse(raw, shared):
    assert len(raw) == 5574
    assert (raw.label == 1).sum() == 747 and (raw.label == 0).sum() == 4827
    lines = (shared / "data" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()
    assert raw.text.tolist() == [line.split("\t", 1)[1] for line in lines]


def test_pandas_default_quoting_is_the_pitfall(shared):
    """Independent check that the naive CSV parse really loses rows (TP3.md)."""
    naive = pd.read_csv(shared / "data" / "SMSSpamCollection", sep="\t", header=None)
    assert len(naive) == 5572
    exact = pd.read_csv(shared / "data" / "SMSSpamCollection", sep="\t", header=None,
                        quoting=csv.QUOTE_NONE, keep_default_na=False)
    assert len(exact) == 5574


def test_deduplication_removes_403_copies(raw):
    dedup = deduplicate(raw)
    assert len(raw) - len(dedup) == 403
    assert dedup.text.is_unique
    assert (raw.label == 1).sum() - (dedup.label == 1).sum() == 94


def test_balance_undersamples_ham(raw):
    balanced = balance(deduplicate(raw), seed=42)
    assert (balanced.label == 0).sum() == (balanced.label == 1).sum() == 653


def test_split_sizes_and_no_leak(splits):
    assert splits.sizes() == {"train": 914, "val": 130, "test": 262}
    sets = [set(df.text) for _, df in splits.items()]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


def test_split_is_deterministic(splits):
    again = load_splits()
    for (_, a), (_, b) in zip(splits.items(), again.items()):
        pd.testing.assert_frame_equal(a, b)
    other = load_splits(DataConfig(seed=7))
    assert set(other.test.text) != set(splits.test.text)


def test_classic_mode_keeps_duplicates_and_leaks(raw):
    classic = load_splits(DataConfig(deduplicate=False))
    assert sum(classic.sizes().values()) == 2 * 747
    leaked = set(classic.train.text) & set(classic.test.text)
    assert leaked, "without deduplication identical messages land in train and test"


def test_bad_lines_are_reported(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("ham\tok\nspom\toops\n", encoding="utf-8")
    with pytest.raises(DataError, match="ligne 2"):
        read_sms_spam(path)


def test_changed_file_fails_checksum(tmp_path, monkeypatch, shared):
    data = (shared / "data" / "SMSSpamCollection").read_bytes()
    (tmp_path / "SMSSpamCollection").write_bytes(data.replace(b"Go until", b"Go untIl", 1))
    monkeypatch.setenv("TP3_DATA_DIR", str(tmp_path))
    with pytest.raises(ChecksumError, match="SHA-256 attendu 7d039a24"):
        sms_spam_path()


def test_shared_file_passes_checksum(shared):
    assert sha256sum(shared / "data" / "SMSSpamCollection") == SMS_SPAM.sha256
    assert sms_spam_path().samefile(shared / "data" / "SMSSpamCollection")


def test_download_extracts_and_verifies(tmp_path, sms_zip):
    with FileServer() as server:
        server.routes["/sms.zip"] = Route(sms_zip)
        path = fetch(replace(SMS_SPAM, url=server.url("/sms.zip")), tmp_path, progress=False)
    assert path == tmp_path / "SMSSpamCollection"
    assert sha256sum(path) == SMS_SPAM.sha256
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["SMSSpamCollection"]


def test_offline_download_gives_manual_steps(tmp_path):
    remote = replace(SMS_SPAM, url="http://127.0.0.1:9/nothing.zip")
    with pytest.raises(DownloadError) as err:
        fetch(remote, tmp_path, retries=1, backoff=0.01, progress=False)
    assert "Étapes manuelles" in str(err.value) and "SMSSpamCollection" in str(err.value)
    assert not (tmp_path / "SMSSpamCollection").exists()
