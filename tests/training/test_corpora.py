"""Corpora: the embedded default, the real corpora, downloads and bad input."""

import hashlib

import numpy as np
import pytest

from training import corpora
from training.corpora import CorpusError, RemoteFile, load_corpus
from training.data import make_windows, window_dataset


def test_default_corpus_is_deterministic_and_split_in_order():
    a, b = load_corpus("default"), load_corpus("default")
    assert a.train == b.train and a.valid == b.valid and a.test == b.test
    n = len(a.train) + len(a.valid) + len(a.test)
    assert len(a.train) / n == pytest.approx(0.90, abs=0.01)
    assert all(line.strip() for line in a.train + a.valid + a.test)
    assert a.train[-1] != a.valid[0]


def test_ptb_from_the_shared_folder(shared_data):
    ptb = load_corpus("ptb", shared_data, allow_download=False)
    assert (len(ptb.train), len(ptb.valid), len(ptb.test)) == (42_068, 3_370, 3_761)
    assert sum(len(line.split()) for line in ptb.valid) == 70_390
    assert ptb.standardize == "none"


def test_wikitext2_and_shakespeare_from_the_shared_folder(shared_data):
    wt2 = load_corpus("wikitext-2", shared_data, allow_download=False)
    assert len(wt2.train) == 36_718
    ts = load_corpus("tiny-shakespeare", shared_data, allow_download=False)
    assert len(ts.train) + len(ts.valid) + len(ts.test) == 40_000


def test_missing_file_without_download_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(CorpusError, match=r"ptb\.train\.txt.*--data-dir"):
        load_corpus("ptb", tmp_path, allow_download=False)


def test_empty_file_is_refused(tmp_path):
    (tmp_path / "ptb").mkdir()
    for split in ("train", "valid", "test"):
        (tmp_path / "ptb" / f"ptb.{split}.txt").write_text("\n\n")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus("ptb", tmp_path)


def test_unknown_corpus():
    with pytest.raises(CorpusError, match="ptb"):
        load_corpus("imdb")


def test_data_dir_falls_back_to_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(corpora.DATA_DIR_ENV, str(tmp_path))
    assert corpora.resolve_data_dir() == str(tmp_path)
    assert corpora.resolve_data_dir("x") == "x"


def test_download_checks_the_sha256_and_keeps_nothing_on_mismatch(tmp_path):
    source = tmp_path / "remote.txt"
    source.write_text("some text\n")
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    target = tmp_path / "cache" / "x.txt"
    corpora.download(RemoteFile("x.txt", source.as_uri(), good), str(target))
    assert target.read_text() == "some text\n"

    bad_target = tmp_path / "cache" / "y.txt"
    with pytest.raises(CorpusError, match="sha256"):
        corpora.download(RemoteFile("y.txt", source.as_uri(), "0" * 64), str(bad_target))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["x.txt"]


def test_failed_download_says_what_to_do(tmp_path):
    missing = (tmp_path / "nothing-here.txt").as_uri()
    with pytest.raises(CorpusError, match="Could not download"):
        corpora.download(RemoteFile("z.txt", missing, "0" * 64), str(tmp_path / "z.txt"))


def test_windows_shift_targets_by_one_and_pad_the_tail():
    inputs, targets = make_windows(np.arange(1, 9), bptt=3)  # tokens 1..8
    np.testing.assert_array_equal(inputs, [[1, 2, 3], [4, 5, 6], [7, 0, 0]])
    np.testing.assert_array_equal(targets, [[2, 3, 4], [5, 6, 7], [8, 0, 0]])


def test_every_token_after_the_first_is_a_target_once():
    ids = np.random.default_rng(0).integers(2, 50, size=1001)
    batches = list(window_dataset(ids, bptt=7, batch_size=5, shuffle=True, seed=1))
    targets = np.concatenate([t.numpy().ravel() for _, t in batches])
    np.testing.assert_array_equal(np.sort(targets[targets != 0]), np.sort(ids[1:]))


@pytest.mark.parametrize("ids, bptt", [([5], 3), (np.arange(10), 0)])
def test_windows_reject_too_short_streams_and_bad_bptt(ids, bptt):
    with pytest.raises(ValueError):
        make_windows(ids, bptt)


def test_streams_are_contiguous_rows_cut_into_windows():
    from training.data import make_streams

    inputs, targets = make_streams(np.arange(1, 12), batch_size=2, bptt=3)  # 11 tokens
    # inputs 1..10 -> rows [1..5], [6..10]; windows of 3, the second padded
    np.testing.assert_array_equal(inputs[0], [[1, 2, 3], [6, 7, 8]])
    np.testing.assert_array_equal(inputs[1], [[4, 5, 0], [9, 10, 0]])
    np.testing.assert_array_equal(targets[0], [[2, 3, 4], [7, 8, 9]])
    np.testing.assert_array_equal(targets[1], [[5, 6, 0], [10, 11, 0]])


def test_streams_make_every_token_after_the_first_a_target_once():
    from training.data import make_streams

    ids = np.random.default_rng(3).integers(2, 40, size=503)
    _, targets = make_streams(ids, batch_size=7, bptt=5)
    flat = targets.transpose(1, 0, 2).reshape(-1)  # row by row = text order
    np.testing.assert_array_equal(flat[flat != 0], ids[1:])


def test_tiny_shakespeare_as_characters(shared_data):
    from zoo import WordVectorizer

    ts = load_corpus("tiny-shakespeare-char", shared_data, allow_download=False)
    assert ts.split == "character"
    vec = WordVectorizer.fit(ts.train, split="character")
    assert vec.vocab_size - 2 <= 65  # 65 distinct characters in the whole file
    ids = vec.encode_lines(ts.valid)
    assert ids.size == sum(len(line) + 1 for line in ts.valid)
