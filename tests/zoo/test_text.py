"""The word vectoriser: standardisation, vocabulary, id streams, prompt ids."""

import numpy as np
import pytest
import tensorflow as tf

from zoo.text import OOV_ID, WordVectorizer, tokenize


def test_lower_punct_cuts_punctuation_into_tokens():
    tokens = tokenize(["Hello, World!  It's 3.5"], "lower_punct").to_list()[0]
    assert [t.decode() for t in tokens] == ["hello", ",", "world", "!", "it", "'", "s", "3",
                                            ".", "5"]


def test_none_splits_on_white_space_only():
    tokens = tokenize([" a <unk> N's  b "], "none").to_list()[0]
    assert [t.decode() for t in tokens] == ["a", "<unk>", "N's", "b"]


def test_vocabulary_is_ranked_by_frequency_then_alphabet():
    vec = WordVectorizer.fit(["b a b", "c b a"], "none")
    # counts: b 3, a 2, <eos> 2, c 1 -> ties broken alphabetically ("<" sorts before "a")
    assert vec.vocabulary == ["", "[UNK]", "b", "<eos>", "a", "c"]
    assert vec.vocab_size == 6


def test_max_tokens_keeps_eos():
    vec = WordVectorizer.fit(["x x x y y z"], "none", max_tokens=2)
    assert vec.vocabulary[2:] == ["x", "<eos>"]


def test_encode_lines_appends_eos_to_every_line_and_maps_unknowns():
    vec = WordVectorizer(["the", "cat", "<eos>"], "none")
    ids = vec.encode_lines(["the cat", "", "dog the"])
    the, cat, eos = 2, 3, 4
    np.testing.assert_array_equal(ids, [the, cat, eos, eos, OOV_ID, the, eos])


def test_unknown_words_map_to_unk_when_the_vocabulary_has_it():
    vec = WordVectorizer(["<unk>", "a", "<eos>"], "none")
    np.testing.assert_array_equal(vec.encode_lines(["zebra a"]), [2, 3, 4])
    ids, lengths = vec.prompt_ids(tf.constant(["zebra"]))
    np.testing.assert_array_equal(ids.numpy(), [[4, 2]])


def test_prompt_ids_put_eos_first_and_count_real_tokens():
    vec = WordVectorizer(["a", "b", "<eos>"], "none")
    ids, lengths = vec.prompt_ids(tf.constant(["a b a", "", "b"]))
    eos = 4
    np.testing.assert_array_equal(ids.numpy(), [[eos, 2, 3, 2], [eos, 0, 0, 0], [eos, 3, 0, 0]])
    np.testing.assert_array_equal(lengths.numpy(), [4, 1, 2])


def test_save_and_load_round_trip(tmp_path):
    vec = WordVectorizer.fit(["Hello, world.", "Hello again"], "lower_punct")
    vec.save(tmp_path)
    back = WordVectorizer.load(tmp_path)
    assert back.vocabulary == vec.vocabulary and back.standardize == "lower_punct"


def test_load_from_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        WordVectorizer.load(tmp_path)


@pytest.mark.parametrize("vocab, match", [
    ([], "empty"), (["a", "a", "<eos>"], "duplicate"), (["a"], "<eos>")])
def test_bad_vocabularies(vocab, match):
    with pytest.raises(ValueError, match=match):
        WordVectorizer(vocab)


def test_ptb_counts_match_the_published_figures(shared_data):
    """PTB: 10,000 types incl. <eos>; 73,760 valid tokens with one <eos> per line."""
    read = lambda name: (shared_data / "ptb" / name).read_text().split("\n")[:-1]  # noqa: E731
    vec = WordVectorizer.fit(read("ptb.train.txt"), "none")
    assert vec.vocab_size == 10_000 + 2  # + padding and [UNK]
    valid = vec.encode_lines(read("ptb.valid.txt"))
    assert valid.size == 73_760
    assert not np.any(valid == OOV_ID)  # every valid word occurs in train


def test_prompt_ids_keep_only_the_last_max_tokens():
    vec = WordVectorizer(["a", "b", "c", "<eos>"], "none")
    a, b, c, eos = 2, 3, 4, 5
    ids, lengths = vec.prompt_ids(tf.constant(["a b c a", "b", ""]), max_tokens=3)
    np.testing.assert_array_equal(ids.numpy(), [[b, c, a], [eos, b, 0], [eos, 0, 0]])
    np.testing.assert_array_equal(lengths.numpy(), [3, 2, 1])


def test_reserved_tokens_are_refused_and_a_literal_unk_is_not_a_word():
    with pytest.raises(ValueError, match="reserved"):
        WordVectorizer(["[UNK]", "<eos>"])
    vec = WordVectorizer.fit(["the [UNK] cat", "the"], "none")
    assert vec.vocabulary.count("[UNK]") == 1


def test_character_level_vocabulary_ids_and_round_trip(tmp_path):
    vec = WordVectorizer.fit(["ab a", "b"], split="character")
    # counts: a 2, b 2, " " 1, "\n" 2 (one per line) -> ties alphabetical: "\n" < a < b
    assert vec.vocabulary == ["", "[UNK]", "\n", "a", "b", " "]
    np.testing.assert_array_equal(vec.encode_lines(["ab a", "é"]), [3, 4, 5, 3, 2, 1, 2])
    ids, lengths = vec.prompt_ids(tf.constant(["ba", ""]))
    np.testing.assert_array_equal(ids.numpy(), [[2, 4, 3], [2, 0, 0]])
    vec.save(tmp_path)
    back = WordVectorizer.load(tmp_path)
    assert back.vocabulary == vec.vocabulary and back.split == "character"
