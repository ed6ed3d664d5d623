"""Next whole words from a subword model, and completion of an unfinished word.

The beam is checked against an exhaustive enumeration done here in NumPy: every piece
sequence up to the length limit, scored with the model's full-sequence ``call`` (not the
one-step call the beam uses), merged by surface text. Word-model completion is checked
against probabilities computed by hand.
"""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import NextWordPredictor, RecurrentLanguageModel, TransformerLanguageModel
from zoo.front_ends import FrontEnd
from zoo.models import LanguageModel
from zoo.text import WordVectorizer
from zoo.word_search import WordBeamSearch, split_unfinished_word, word_search_for

MARK = "\u2581"  # SentencePiece's word-start marker
PIECES = ["<pad>", "<unk>", "<eos>", MARK + "c", MARK + "ca", MARK + "d", "a", "t", "r", "og"]


class StandInFrontEnd(tf.Module, FrontEnd):
    """A SentencePiece-like front end with the interface of zoo.word_search: a prompt word
    ``w`` becomes the piece ``"▁w"`` (or ``<unk>``). (A FrontEnd for NextWordPredictor's
    surface tables; everything the search reads is defined here.)"""

    kind = "sentencepiece"
    pad_id, unk_id, eos_id = 0, 1, 2

    def __init__(self, pieces=PIECES):
        super().__init__()
        self.pieces = list(pieces)
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(self.pieces), tf.range(len(self.pieces), dtype=tf.int64)),
            default_value=self.unk_id)

    def word_start_mask(self):
        return np.array([p.startswith(MARK) or i == self.eos_id
                         for i, p in enumerate(self.pieces)])

    def piece_text(self, i):
        return self.pieces[i].replace(MARK, "")

    def encode(self, text):
        words = tf.strings.split(text)
        return tf.cast(self.table.lookup(tf.strings.join([MARK, words])), tf.int32)


class StandInCharFrontEnd(StandInFrontEnd):
    """Characters: the space piece begins a word (it is the boundary), as a character
    model's front end marks it; a prompt is its characters."""

    kind = "char"
    standardize = "lower_punct"  # a prompt to complete is lower-cased first

    def __init__(self):
        super().__init__(["<pad>", "<unk>", "\n", " ", "a", "b", "c"])

    def word_start_mask(self):
        return np.array([p in (" ", "\n") for p in self.pieces])

    def piece_text(self, i):
        return self.pieces[i]

    def encode(self, text):
        return tf.cast(self.table.lookup(tf.strings.unicode_split(text, "UTF-8")), tf.int32)


def peaked(model, seed=0, scale=1.5):
    """Random weights large enough that the piece distributions are far from uniform."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, scale, w.shape).astype("float32")
                       for w in model.get_weights()])
    return model


def lstm(vocab=len(PIECES)):
    model = RecurrentLanguageModel(vocab, embedding_dim=6, units=6, num_layers=1)
    model.build((None, None))
    return peaked(model)


def transformer(vocab=len(PIECES)):
    model = TransformerLanguageModel(vocab, model_dim=8, num_layers=1, num_heads=2, ffn_dim=8,
                                     max_length=16)
    model.build((None, None))
    return peaked(model, scale=0.8)


def exhaustive(front_end, model, context_ids, max_pieces, prefix=None):
    """``{word: P(word | context)}`` over every piece sequence of 1..max_pieces pieces (a
    word-start piece, then continuation pieces), piecings of one word summed; with
    ``prefix``, only words starting with it, renormalised over them."""
    starts = front_end.word_start_mask()
    special = np.zeros(len(starts), bool)
    special[[front_end.pad_id, front_end.unk_id, front_end.eos_id]] = True
    first = np.flatnonzero(starts & ~special)
    rest = np.flatnonzero(~starts & ~special)
    boundary = starts.copy()
    boundary[front_end.eos_id] = True
    words = {}
    for n in range(1, max_pieces + 1):
        seqs = [(f, *r) for f in first for r in itertools.product(rest, repeat=n - 1)]
        ids = np.array([list(context_ids) + list(s) for s in seqs], np.int32)
        logits = model(ids, training=False).numpy().astype(np.float64)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        c = len(context_ids)
        for row, seq in enumerate(seqs):
            total = sum(logp[row, c - 1 + j, piece] for j, piece in enumerate(seq))
            total += np.log(np.exp(logp[row, -1])[boundary].sum())
            word = "".join(front_end.piece_text(p) for p in seq).strip()  # a char's " "
            if word and (prefix is None or word.startswith(prefix)):
                words[word] = words.get(word, 0.0) + np.exp(total)
    if prefix is not None:
        norm = sum(words.values())
        words = {w: p / norm for w, p in words.items()}
    return words


def ranked(words, k):
    return sorted(words.items(), key=lambda kv: -kv[1])[:k]


def as_lists(out, row=0):
    return ([w.decode() for w in out["words"].numpy()[row]],
            out["probabilities"].numpy()[row].astype(np.float64))


FULL_BEAM = 3 * 4 ** 2  # starts * continuations ** (max_pieces - 1): every sequence kept


@pytest.mark.parametrize("make", [lstm, transformer], ids=["lstm", "transformer"])
def test_a_wide_beam_gives_the_exhaustive_top_k_words(make):
    front_end, model = StandInFrontEnd(), make()
    search = WordBeamSearch(front_end, model, beam_width=FULL_BEAM, max_pieces=3)
    k = 6
    out = search.top_k(tf.constant(["ca d", ""]), k=k)
    for row, context in enumerate([[2, 4, 5], [2]]):
        exact = ranked(exhaustive(front_end, model, context, 3), k)
        words, probs = as_lists(out, row)
        assert words == [w for w, _ in exact]
        np.testing.assert_allclose(probs, [p for _, p in exact], rtol=2e-5)
    # "cat" is reachable as "▁c a t" and "▁ca t": the two piecings are summed.
    assert "cat" in exhaustive(front_end, model, [2], 3)


def test_character_models_find_words_between_spaces():
    front_end = StandInCharFrontEnd()
    model = lstm(vocab=len(front_end.pieces))
    search = WordBeamSearch(front_end, model, beam_width=27, max_pieces=4)  # 1 * 3 ** 3
    ab = [2, 4, 5]  # "<eos> a b"
    for prompt in ("ab", "ab "):  # the word starts with its own space either way
        words, probs = as_lists(search.top_k(tf.constant([prompt]), k=5))
        exact = ranked(exhaustive(front_end, model, ab, 4), 5)
        assert words == [w for w, _ in exact]
        np.testing.assert_allclose(probs, [p for _, p in exact], rtol=2e-5)
    out = search.complete(tf.constant(["ab c", "AB C"]), k=5)
    exact = ranked(exhaustive(front_end, model, ab, 4, prefix="c"), 5)
    for row in (0, 1):
        words, probs = as_lists(out, row)
        assert words == [w for w, _ in exact] and all(w.startswith("c") for w in words)
        np.testing.assert_allclose(probs, [p for _, p in exact], rtol=2e-5)
    assert out["prefix"].numpy().tolist() == [b"c", b"c"]


def test_a_narrow_beam_finds_a_subset_with_probabilities_at_most_the_exact_ones():
    front_end, model = StandInFrontEnd(), lstm()
    exact = exhaustive(front_end, model, [2, 5], 3)
    out = WordBeamSearch(front_end, model, beam_width=2, max_pieces=3).top_k(
        tf.constant(["d"]), k=5)
    words, probs = as_lists(out)
    found = [(w, p) for w, p in zip(words, probs) if w]
    assert found and len(found) < len(exact)
    for word, prob in found:
        assert prob <= exact[word] * (1 + 2e-5)
    assert list(probs) == sorted(probs, reverse=True)


def test_the_search_runs_inside_a_tf_function_and_matches_eager():
    front_end, model = StandInFrontEnd(), lstm()
    search = WordBeamSearch(front_end, model, beam_width=4, max_pieces=3)
    graph = tf.function(lambda t: search.top_k(t, k=4),
                        input_signature=[tf.TensorSpec([None], tf.string)])
    text = tf.constant(["ca", "d ca d"])
    eager, traced = search.top_k(text, k=4), graph(text)
    assert (eager["words"].numpy() == traced["words"].numpy()).all()
    np.testing.assert_allclose(eager["probabilities"], traced["probabilities"], rtol=1e-6)


@pytest.mark.parametrize("prefix", ["c", "ca", "cat", "d", "dog", "car"])
def test_subword_completion_equals_the_renormalised_exhaustive_answer(prefix):
    front_end, model = StandInFrontEnd(), lstm()
    search = WordBeamSearch(front_end, model, beam_width=FULL_BEAM, max_pieces=3)
    out = search.complete(tf.constant([f"ca {prefix}"]), k=4)
    exact = ranked(exhaustive(front_end, model, [2, 4], 3, prefix=prefix), 4)
    words, probs = as_lists(out)
    assert out["prefix"].numpy()[0].decode() == prefix
    assert [w for w in words if w] == [w for w, _ in exact]
    np.testing.assert_allclose(probs[:len(exact)], [p for _, p in exact], rtol=2e-5)
    assert all(w.startswith(prefix) for w in words if w)


def test_a_trailing_space_completes_any_next_word_and_a_prefix_nothing_starts_is_empty():
    front_end, model = StandInFrontEnd(), lstm()
    search = WordBeamSearch(front_end, model, beam_width=FULL_BEAM, max_pieces=3)
    out = search.complete(tf.constant(["ca ", "ca x"]), k=3)
    exact = ranked(exhaustive(front_end, model, [2, 4], 3, prefix=""), 3)
    words, probs = as_lists(out, 0)
    assert words == [w for w, _ in exact]
    np.testing.assert_allclose(probs, [p for _, p in exact], rtol=2e-5)
    words, probs = as_lists(out, 1)  # no word starts with "x": the documented empty answer
    assert words == ["", "", ""] and (probs == 0).all()


def test_an_empty_prompt_is_a_clear_error():
    search = WordBeamSearch(StandInFrontEnd(), lstm(), beam_width=2, max_pieces=2)
    with pytest.raises(tf.errors.InvalidArgumentError, match="a prompt is empty"):
        search.complete(tf.constant(["ca d", ""]), k=2)


def test_bad_settings_are_refused():
    front_end = StandInFrontEnd()
    with pytest.raises(ValueError, match="beam_width"):
        WordBeamSearch(front_end, lstm(), beam_width=0)
    with pytest.raises(ValueError, match="max_length"):
        WordBeamSearch(front_end, transformer(), max_pieces=16)
    with pytest.raises(ValueError, match="10 pieces"):
        WordBeamSearch(front_end, lstm(vocab=12))


def test_split_unfinished_word():
    text = ["the ca", "the cat ", "cat", "a\tb\nc", "a\x0bb\x0c", "ö\r\u00e9t"]
    context, prefix = split_unfinished_word(tf.constant(text))
    assert [p.decode() for p in prefix.numpy()] == ["ca", "", "cat", "c", "", "\u00e9t"]
    assert [c.decode() for c in context.numpy()] == ["the ", "the cat ", "", "a\tb\n",
                                                     "a\x0bb\x0c", "ö\r"]
    # the vectoriser splits at the same characters
    assert tf.strings.split(tf.constant("a\x0bb")).numpy().tolist() == [b"a", b"b"]


def test_the_hook_gives_subword_front_ends_the_word_beam_and_word_models_none():
    front_end, model = StandInFrontEnd(), lstm()
    assert word_search_for(WordVectorizer(["<eos>", "a"]), model) is None
    predictor = NextWordPredictor(front_end, model, beam_width=FULL_BEAM, max_pieces=3)
    assert isinstance(predictor.word_search, WordBeamSearch)
    words, probs = as_lists(predictor.top_k(tf.constant(["ca"]), k=3))
    exact = ranked(exhaustive(front_end, model, [2, 4], 3), 3)
    assert words == [w for w, _ in exact]
    np.testing.assert_allclose(probs, [p for _, p in exact], rtol=2e-5)


# -- word models: restrict the vocabulary to the prefix and renormalise ----------------------
class FixedDistribution(LanguageModel):
    """A stand-in model whose next-token distribution is the same after every prompt."""

    def __init__(self, probs=None, logits=None):
        fixed = np.log(probs) if logits is None else np.asarray(logits)
        super().__init__(len(fixed))
        self.fixed = tf.constant(fixed, tf.float32)

    def features(self, token_ids, training=False):
        return tf.zeros(tf.concat([tf.shape(token_ids), [1]], 0))

    def logits_from_features(self, features, training=False):
        shape = tf.concat([tf.shape(features)[:-1], [self.vocab_size]], 0)
        return tf.broadcast_to(self.fixed, shape)


# ids: 0 "", 1 [UNK], 2 <eos>, 3 cat, 4 car, 5 cart, 6 dog
VOCAB = ["<eos>", "cat", "car", "cart", "dog"]
PROBS = [0.01, 0.04, 0.10, 0.30, 0.20, 0.15, 0.20]


@pytest.mark.parametrize("prompt,expected", [
    ("the ca", [("cat", 0.30 / 0.65), ("car", 0.20 / 0.65), ("cart", 0.15 / 0.65)]),
    ("the car", [("car", 0.20 / 0.35), ("cart", 0.15 / 0.35)]),
    ("d", [("dog", 1.0)]),
    ("the ", [("cat", 0.30 / 0.85), ("car", 0.20 / 0.85), ("dog", 0.20 / 0.85)]),
])
def test_word_completion_is_the_hand_computed_renormalised_distribution(prompt, expected):
    predictor = NextWordPredictor(WordVectorizer(VOCAB), FixedDistribution(PROBS))
    out = predictor.complete(tf.constant([prompt]), k=3)
    words, probs = as_lists(out)
    k = len(expected)
    assert words[:k] == [w for w, _ in expected] and all(w == "" for w in words[k:])
    np.testing.assert_allclose(probs[:k], [p for _, p in expected], rtol=1e-5)
    assert (probs[k:] == 0).all()


def test_word_completion_standardises_the_prefix_and_answers_empty_for_no_word():
    lower = WordVectorizer(VOCAB, standardize="lower_punct")
    out = NextWordPredictor(lower, FixedDistribution(PROBS)).complete(
        tf.constant(["Dog, CAR", "the x", "<e"]), k=2)
    assert [p.decode() for p in out["prefix"].numpy()] == ["car", "x", "e"]
    words, probs = as_lists(out, 0)
    assert words == ["car", "cart"]
    np.testing.assert_allclose(probs, [0.20 / 0.35, 0.15 / 0.35], rtol=1e-5)
    for row in (1, 2):  # nothing starts with "x"; "<eos>" is never a completion
        words, probs = as_lists(out, row)
        assert words == ["", ""] and (probs == 0).all()
    with pytest.raises(tf.errors.InvalidArgumentError, match="a prompt is empty"):
        NextWordPredictor(WordVectorizer(VOCAB), FixedDistribution(PROBS)).complete(
            tf.constant([""]), k=2)


def test_word_completion_of_a_real_model_equals_numpy_restriction():
    vectorizer = WordVectorizer(["<eos>", "the", "then", "there", "cat", "car"])
    model = RecurrentLanguageModel(vectorizer.vocab_size, embedding_dim=4, units=4,
                                   num_layers=1)
    model.build((None, None))
    peaked(model)
    predictor = NextWordPredictor(vectorizer, model)
    out = predictor.complete(tf.constant(["cat th"]), k=3)
    ids = np.array([[vectorizer.eos_id, 6]])
    p = keras.ops.softmax(model(ids)[0, -1]).numpy().astype(np.float64)
    keep = {w: p[i] for i, w in enumerate(vectorizer.vocabulary) if w.startswith("th")}
    total = sum(keep.values())
    expected = sorted(((w, q / total) for w, q in keep.items()), key=lambda kv: -kv[1])
    words, probs = as_lists(out)
    assert words == [w for w, _ in expected]
    np.testing.assert_allclose(probs, [q for _, q in expected], rtol=1e-5)


@pytest.mark.slow
def test_the_subword_search_survives_a_saved_model_round_trip(tmp_path):
    front_end, model = StandInFrontEnd(), lstm()
    search = WordBeamSearch(front_end, model, beam_width=6, max_pieces=3)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.track(front_end)
    spec = [tf.TensorSpec([None], tf.string, name="text")]
    archive.add_endpoint("serving_default", lambda text: search.top_k(text, k=4), spec)
    archive.add_endpoint("complete", lambda text: search.complete(text, k=4), spec)
    archive.write_out(str(tmp_path / "1"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "1")).signatures
    text = tf.constant(["ca d", "d c", "ca "])
    for name, direct in (("serving_default", search.top_k(text, k=4)),
                         ("complete", search.complete(text, k=4))):
        out = loaded[name](text=text)
        assert (out["words"].numpy() == direct["words"].numpy()).all()
        np.testing.assert_allclose(out["probabilities"], direct["probabilities"], rtol=1e-5)


def test_k_must_be_a_positive_int():
    search = WordBeamSearch(StandInFrontEnd(), lstm(), beam_width=2, max_pieces=2)
    for k in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="k must be an int >= 1"):
            search.top_k(tf.constant(["ca"]), k=k)


def test_completion_of_words_the_model_finds_very_unlikely_does_not_underflow():
    probs = np.array([1e-3] * 6 + [1.0], np.float64)  # "cat", "car", "cart": e^-120 below "dog"
    logits = np.log(probs / probs.sum())
    logits[3:6] = logits[6] - 120.0 + np.array([2.0, 1.0, 0.0])
    model = FixedDistribution(logits=logits)  # in float32, exp(-120) is 0
    out = NextWordPredictor(WordVectorizer(VOCAB), model).complete(tf.constant(["ca"]), k=3)
    words, got = as_lists(out)
    e = np.exp([2.0, 1.0, 0.0])
    assert words == ["cat", "car", "cart"]
    np.testing.assert_allclose(got, e / e.sum(), rtol=1e-5)
