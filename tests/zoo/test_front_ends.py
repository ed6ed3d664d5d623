"""Front ends (zoo.front_ends): the same ids in eager code, in a SavedModel reloaded in a fresh
process and in the LiteRT tokenizer, on held-out text of each corpus kind; decode inverts
encode; open vocabularies never answer <unk> for unseen words; bad input is refused.

References are independent of the code under test: ``keras``-based ``WordVectorizer`` (the
word kind's ids), the ``sentencepiece`` package's own ``encode`` (SentencePiece ids), a
greedy longest-match-first WordPiece written here from the algorithm's definition (Devlin
et al. 2019, Wu et al. 2016), and ``str.split`` for the normalisation.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow_text")
sentencepiece = pytest.importorskip("sentencepiece")

import tensorflow as tf  # noqa: E402

from training.corpora import CorpusError, RemoteFile, _read_lines, load_corpus  # noqa: E402
from zoo.front_ends import (  # noqa: E402
    KINDS, SPACE, FrontEndError, TokenizerModule, WordFrontEnd, count_characters,
    count_words, fit_front_end, load_front_end)
from zoo.text import WordVectorizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_LINES = 250  # a few hundred lines keep the WordPiece learner to seconds
HELD_OUT = 60
VOCAB = {"word": None, "char": None, "wordpiece": 300, "sentencepiece": 300}
CORPUS_KINDS = ("ptb", "tiny-shakespeare", "wikitext-2")


def _lines(corpus):
    """Training lines and held-out (test split) lines with some text."""
    train = [line for line in corpus.train if line.strip()][:TRAIN_LINES]
    test = [line for line in corpus.test if line.strip()][:HELD_OUT]
    return train, test


@pytest.fixture(scope="module")
def fitted(shared_data, tmp_path_factory):
    """``{(kind, corpus): (front_end, held_out_lines, saved_dir)}`` for every kind and corpus
    kind, each front end saved (front end files + a SavedModel with its ``tokenize``)."""
    out = {}
    base = tmp_path_factory.mktemp("front_ends")
    for corpus_name in CORPUS_KINDS:
        corpus = load_corpus(corpus_name, shared_data, allow_download=False)
        train, test = _lines(corpus)
        for kind in KINDS:
            options = ({"standardize": corpus.standardize, "split": corpus.split}
                       if kind == "word" else {})
            front_end = fit_front_end(kind, train, VOCAB[kind], **options)
            folder = base / f"{kind}-{corpus_name}"
            front_end.save(folder)
            module = TokenizerModule(front_end)
            tf.saved_model.save(module, str(folder / "saved_model"),
                                signatures={"tokenize": module.tokenize})
            out[(kind, corpus_name)] = (front_end, test, folder)
    return out


def _ragged(ids, splits):
    return [ids[splits[i]:splits[i + 1]].tolist() for i in range(len(splits) - 1)]


@pytest.mark.slow
def test_eager_savedmodel_in_fresh_process_and_litert_ids_agree(fitted):
    # Eager ids, ids of the SavedModels reloaded in a new Python process (which must import
    # tensorflow_text first), and ids of each LiteRT tokenizer, on held-out test lines.
    from ai_edge_litert.interpreter import InterpreterWithCustomOps
    import tensorflow_text

    from serving.litert_export import convert_tokenizer
    from serving.tokenizer import Tokenizer

    eager = {key: fe.encode(test).to_list() for key, (fe, test, _) in fitted.items()}
    jobs = {f"{k}|{c}": (str(folder / "saved_model"), test)
            for (k, c), (_, test, folder) in fitted.items()}
    script = (
        "import json, sys, tensorflow as tf, tensorflow_text\n"
        "jobs = json.load(sys.stdin); out = {}\n"
        "for key, (path, lines) in jobs.items():\n"
        "    r = tf.saved_model.load(path).signatures['tokenize'](text=tf.constant(lines))\n"
        "    ids, s = r['ids'].numpy(), r['row_splits'].numpy()\n"
        "    out[key] = [ids[s[i]:s[i + 1]].tolist() for i in range(len(s) - 1)]\n"
        "print(json.dumps(out))\n")
    proc = subprocess.run([sys.executable, "-c", script], input=json.dumps(jobs), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reloaded = json.loads(proc.stdout.strip().split("\n")[-1])
    for (kind, corpus), (front_end, test, folder) in fitted.items():
        key = f"{kind}|{corpus}"
        assert reloaded[key] == eager[(kind, corpus)], key
        # the front end loaded back from its folder gives the same ids
        again = load_front_end(folder)
        assert again.kind == kind and again.pieces == front_end.pieces
        assert again.encode(test).to_list() == eager[(kind, corpus)]
        if kind == "word":  # the phone keeps the TF-free Python tokenizer
            tok = Tokenizer.from_vectorizer(front_end.vectorizer)
            assert [tok.encode(line) for line in test] == eager[(kind, corpus)], key
            continue
        content, ops = convert_tokenizer(front_end)
        assert any(op.startswith("TFText>") or "Wordpiece" in op for op in ops), ops
        interpreter = InterpreterWithCustomOps(
            model_content=content,
            custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS)
        runner = interpreter.get_signature_runner("tokenize")
        out = runner(text=np.array(test, dtype=object))
        assert _ragged(out["ids"], out["row_splits"]) == eager[(kind, corpus)], key


def test_word_kind_ids_are_word_vectorizers(shared_data):
    for corpus_name in ("ptb", "tiny-shakespeare"):
        corpus = load_corpus(corpus_name, shared_data, allow_download=False)
        train, test = _lines(corpus)
        reference = WordVectorizer.fit(train, corpus.standardize)
        front_end = fit_front_end("word", train, standardize=corpus.standardize)
        assert front_end.pieces == reference.vocabulary
        assert np.array_equal(front_end.encode_lines(test), reference.encode_lines(test))
        # encode() is the stream without the <eos> ids
        stream = reference.encode_lines(test)
        flat = np.concatenate([np.asarray(r) for r in front_end.encode(test).to_list()])
        assert np.array_equal(flat, stream[stream != reference.eos_id])
        for text in ([""], ["the cat"]):
            a, b = front_end.prompt_ids(tf.constant(text)), reference.prompt_ids(
                tf.constant(text))
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def _has_unknown(front_end, ids):
    return front_end.unk_id in ids or 1 in ids


def test_decode_inverts_encode_up_to_normalisation(fitted):
    checked = 0
    for (kind, corpus), (front_end, test, _) in fitted.items():
        for line in test:
            ids = np.asarray(front_end.encode(line)[0]).tolist()
            if _has_unknown(front_end, ids) or (kind == "word"):
                continue  # an unknown character or word cannot come back
            assert front_end.decode(ids) == " ".join(line.split()), (kind, corpus, line)
            checked += 1
    assert checked >= 0.5 * HELD_OUT * len(CORPUS_KINDS) * 3


def test_word_kind_decode_gives_its_tokens(fitted):
    for corpus in CORPUS_KINDS:
        front_end, test, _ = fitted[("word", corpus)]
        for line in test:
            ids = np.asarray(front_end.encode(line)[0]).tolist()
            words = [front_end.pieces[i] for i in ids]
            assert front_end.decode(ids) == " ".join(words)


def test_eos_decodes_to_a_line_break(fitted):
    for kind in ("sentencepiece", "wordpiece", "char"):
        front_end, _, _ = fitted[(kind, "ptb")]
        ids = front_end.encode_lines(["the market", "fell"])
        assert ids.tolist().count(front_end.eos_id) == 2
        assert front_end.decode(ids) == "the market\nfell\n"


def test_sentencepiece_ids_are_the_sentencepiece_packages(fitted):
    for kind in ("sentencepiece", "char"):
        for corpus in CORPUS_KINDS:
            front_end, test, _ = fitted[(kind, corpus)]
            processor = sentencepiece.SentencePieceProcessor(model_proto=front_end.model_proto)
            want = [processor.encode(line) for line in test]
            # the package's unknown id 1 reads as the corpus's <unk> in the front end
            want = [[front_end.unk_id if i == 1 else i for i in row] for row in want]
            got = [np.asarray(r).tolist() for r in front_end.encode(test).to_list()]
            assert got == want, (kind, corpus)


def _greedy_wordpiece(word, vocab, unk):
    """Longest-match-first WordPiece of one word (the algorithm's definition)."""
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                pieces.append(vocab[piece])
                start = end
                break
        else:
            return [unk]
    return pieces


def test_wordpiece_ids_are_greedy_longest_match(fitted):
    for corpus in CORPUS_KINDS:
        front_end, test, _ = fitted[("wordpiece", corpus)]
        vocab = {p: i for i, p in enumerate(front_end.pieces)}
        for line in test:
            want = [i for w in line.split()
                    for i in _greedy_wordpiece(w, vocab, front_end.unk_id)]
            assert np.asarray(front_end.encode(line)[0]).tolist() == want, line


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece"])
def test_unseen_words_get_pieces_never_unk(fitted, kind):
    front_end, _, _ = fitted[(kind, "ptb")]
    prompt = "the unbelievably zestful marketeers"
    words = prompt.split()
    assert not {"unbelievably", "zestful", "marketeers"} & set(front_end.pieces)
    ids = np.asarray(front_end.encode(prompt)[0]).tolist()
    assert front_end.unk_id not in ids and 1 not in ids
    assert len(ids) > len(words)  # unseen words split into several pieces
    assert front_end.decode(ids) == prompt
    starts = front_end.word_start_mask()[ids]
    # every word begins with exactly one word-start piece (sentencepiece may give a bare
    # U+2581 piece before a word whose first character is not glued to it)
    assert starts.sum() == len(words)


def test_word_start_mask_and_piece_text_by_hand():
    front_end = fit_front_end("wordpiece", ["aa ab", "ba ab", "aab"] * 30, 10)
    pieces = front_end.pieces
    mask = front_end.word_start_mask()
    for i, piece in enumerate(pieces):
        if piece == "[PAD]":
            assert not mask[i]
        elif piece == "[UNK]":  # an unknown word is replaced whole
            assert mask[i]
        elif piece == "<eos>":
            assert mask[i] and front_end.piece_text(i) == "\n"
        else:
            assert mask[i] == (not piece.startswith("##"))
            assert front_end.piece_text(i) == piece.replace("##", "", 1)
    spm = fit_front_end("char", ["ab ba", "abba"] * 10)
    for i, piece in enumerate(spm.pieces):
        if piece.startswith(SPACE):
            assert spm.word_start_mask()[i] and spm.piece_text(i) == piece[1:]


def test_unk_of_the_corpus_stays_one_token(fitted):
    for kind in ("wordpiece", "sentencepiece"):
        front_end, _, _ = fitted[(kind, "ptb")]
        assert "<unk>" in front_end.pieces
        ids = np.asarray(front_end.encode("a <unk> b")[0]).tolist()
        assert ids.count(front_end.pieces.index("<unk>")) == 1


def test_counts_for_comparable_numbers():
    lines = ["  the cat  sat ", "", "é"]
    assert count_words(lines) == 3 + 1 + 0 + 1 + 1 + 1
    assert count_characters(lines) == len("the cat sat") + 1 + 1 + 2


def test_comparable_metrics_by_hand():
    from training.evaluate import comparable_metrics

    # 20 nats; words: 2 + 1 end of line, 1 + 1 = 5; characters: 3 + 1, 1 + 1 = 6
    got = comparable_metrics(2.0, 10, ["a b", "c"])
    assert got["per_word_perplexity"] == pytest.approx(np.exp(20 / 5))
    assert got["bits_per_character"] == pytest.approx(20 / np.log(2) / 6)


# -- bad input ------------------------------------------------------------------------------

def test_unknown_kind():
    with pytest.raises(FrontEndError, match="Unknown tokenizer kind 'bpe'.*wordpiece"):
        fit_front_end("bpe", ["a b"], 10)


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece", "char"])
def test_vocab_size_too_small_for_the_specials(kind):
    with pytest.raises(FrontEndError, match="too small.*special tokens"):
        fit_front_end(kind, ["a <unk> b"] * 5, 4)


@pytest.mark.parametrize("kind", ["wordpiece", "sentencepiece", "char"])
def test_vocab_size_larger_than_the_text_supports(kind):
    with pytest.raises(FrontEndError, match="(larger than this text supports|cannot train)"):
        fit_front_end(kind, ["the cat sat on the mat"] * 5, 5000)


def test_subword_kinds_need_a_vocab_size():
    with pytest.raises(FrontEndError, match="needs an integer --vocab-size"):
        fit_front_end("wordpiece", ["a b"], None)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_prompt_and_prompt_of_dropped_characters(fitted, kind):
    front_end, _, _ = fitted[(kind, "ptb")]
    with pytest.raises(FrontEndError, match="The prompt is empty"):
        front_end.check_prompt("")
    # Unicode white space (no-break, ideographic, line separator) and ASCII: all dropped
    with pytest.raises(FrontEndError, match="only white space, which the .* tokenizer drops"):
        front_end.check_prompt(" \t\u00a0\u3000\u2028 ")
    assert front_end.check_prompt("the") == front_end.encode("the").to_list()[0]


def test_corpus_not_utf8_names_the_line(tmp_path):
    (tmp_path / "ptb").mkdir()
    (tmp_path / "ptb" / "bad.txt").write_bytes(b"good line\nsecond\ncaf\xe9 au lait\n")
    remote = RemoteFile("ptb/bad.txt", "http://example.invalid/bad.txt", "0" * 64)
    with pytest.raises(CorpusError, match=r"line 3 has the byte\(s\) b'\\xe9'"):
        _read_lines(remote, str(tmp_path), allow_download=False)


def test_load_unknown_kind_and_old_run_folder(tmp_path):
    (tmp_path / "front_end.json").write_text(json.dumps({"kind": "bpe"}))
    with pytest.raises(FrontEndError, match="unknown tokenizer kind 'bpe'"):
        load_front_end(tmp_path)
    old = tmp_path / "old"
    WordVectorizer.fit(["the cat", "a dog"]).save(old)  # a run folder from before front ends
    front_end = load_front_end(old)
    assert front_end.kind == "word" and front_end.vocab_size == 2 + 5
