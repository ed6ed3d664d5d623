"""serving.tokenizer: the same ids as zoo.text.WordVectorizer, without TensorFlow.

TensorFlow is imported here only as the reference; a subprocess checks that the tokenizer
itself never loads it.
"""

import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from serving import tokenizer as tokenizer_lib
from serving.tokenizer import Tokenizer, TokenizerError
from tests.conftest import ROOT
from training.corpora import load_corpus
from zoo.text import WordVectorizer, tokenize


def reference_prompt_ids(vec, texts, max_tokens=None):
    """WordVectorizer.prompt_ids, eagerly, one list of ids per prompt."""
    ids, lengths = vec.prompt_ids(tf.constant(texts), max_tokens)
    return [row[:n].tolist() for row, n in zip(ids.numpy(), lengths.numpy())]


def reference_tokens(texts, standardize, split):
    return [[t.decode("utf-8") for t in row] for row in
            tokenize(texts, standardize, split).to_list()]


def assert_same_as_vectorizer(vec, tok, lines):
    """Tokens, encode_lines and prompt_ids (whole, and cut to 5 and 1 tokens) agree."""
    want = reference_tokens(lines, vec.standardize, vec.split)
    got = [tok.tokens(line) for line in lines]
    for line, w, g in zip(lines, want, got):
        assert g == w, f"tokens of {line!r}"
    np.testing.assert_array_equal(tok.encode_lines(lines), vec.encode_lines(lines))
    for max_tokens in (None, 5, 1):
        want = reference_prompt_ids(vec, lines, max_tokens)
        for line, w in zip(lines, want):
            assert tok.prompt_ids(line, max_tokens) == w, f"{line!r}, max_tokens={max_tokens}"


# -- (a) no TensorFlow ---------------------------------------------------------------------

def test_importing_and_tokenizing_never_loads_tensorflow(tmp_path):
    Tokenizer(["", "[UNK]", "<eos>", "hello", ","], "lower_punct").save(tmp_path)
    code = textwrap.dedent(f"""
        import sys
        from serving.tokenizer import Tokenizer
        tok = Tokenizer.load({str(tmp_path)!r})
        assert tok.prompt_ids("Hello, World!", max_tokens=3) == [4, 1, 1], tok.prompt_ids("Hello")
        tok.encode_lines(["hello ,", "Ünïcode ΟΔΟΣ"]); tok.decode([3, 4])
        loaded = sorted(m for m in sys.modules
                        if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "zoo"))
        assert not loaded, loaded
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


# -- (b) the real corpora ------------------------------------------------------------------

CORPUS_CASES = {
    # name: (corpus, standardize override or None)
    "ptb": ("ptb", None),
    "wikitext-2": ("wikitext-2", None),
    "tiny-shakespeare-char": ("tiny-shakespeare-char", None),
    "tiny-shakespeare-words": ("tiny-shakespeare", None),
    "default": ("default", None),
    # Not a training configuration: WikiText's accents, dashes and symbols through lower_punct.
    "wikitext-2-lower_punct": ("wikitext-2", "lower_punct"),
}


@pytest.mark.parametrize("case", list(CORPUS_CASES))
def test_same_ids_as_the_vectorizer_on_held_out_text(case, request, tmp_path):
    name, standardize = CORPUS_CASES[case]
    data_dir = None if name == "default" else request.getfixturevalue("shared_data")
    corpus = load_corpus(name, data_dir=data_dir, allow_download=False)
    standardize = standardize or corpus.standardize
    vec = WordVectorizer.fit(corpus.train[:3000], standardize, split=corpus.split)
    tokenizer_lib.write(vec, tmp_path)  # through the files, as a phone reads them
    tok = Tokenizer.load(tmp_path)
    assert tok.vocabulary == vec.vocabulary
    assert (tok.eos_id, tok.unk_id, tok.vocab_size) == (vec.eos_id, vec.unk_id, vec.vocab_size)
    held_out = corpus.valid[:400] + corpus.test[:400]
    assert_same_as_vectorizer(vec, tok, held_out)
    if tok.kind == "word":
        assert (tok.encode_lines(held_out) == tok.unk_id).any(), "no unknown words tested"


# -- (c) edge cases ------------------------------------------------------------------------

EDGE_PROMPTS = [
    "", " ", "   \t  ", "\n", "\t\n\x0b\x0c\r ", "a\tb\nc\rd\x0be\x0cf", "  the  cat  ",
    "zebra", "the zebra", "[UNK]", "<unk>", "<eos>", "the <eos> cat",
    "Hello, World!", "don't", "3.5", "(a)", "...", "a--b", "x²", "e\u0301", "\u00e9",
    "caf\u00e9 na\u00efve \u00dcber", "\u0661\u0662\u0663 \u4e09\u56db", "\u2167 \u00bd",
    "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469", "ok\U0001F642", "\u00a0", "a\u00a0b",
    "a\u3000b", "a\u2003b", "a\u0085b", "a\x1cb", "a\u200bb", "\ufeffthe",
    "\u0130stanbul", "\u1e9eTRASSE", "\u039f\u0394\u039f\u03a3", "\u03a3", "\u0391\u03a3.",
    "TheCat", "THE CAT", "a\x00B c", "\x00", "\u2c2f\u03a3", "\U00010570",
    "the cat " * 20,
]


@pytest.fixture(scope="module")
def edge_vectorizers():
    words = ["the", "cat", ",", "!", "hello", "world", "'", "t", "don", "a", "b", ".", "3",
             "x²", "é", "caf\u00e9", "\u0661\u0662\u0663", "\u0391\u03c3", "\u03bf\u03b4\u03bf\u03c2",
             "\U0001F44D", "\u00a0", "i\u0307stanbul", "<unk>", "<eos>"]
    return {
        "none": WordVectorizer(words, "none"),
        "none-no-unk": WordVectorizer([w for w in words if w != "<unk>"], "none"),
        "lower_punct": WordVectorizer(words, "lower_punct"),
        "char": WordVectorizer(list("thca ,!\u00e9\u0301\t\r\x0b\n"), "none",
                               eos_token="\n", split="character"),
        "char-lower_punct": WordVectorizer(list("thca ,!\n"), "lower_punct",
                                           eos_token="\n", split="character"),
    }


@pytest.mark.parametrize("which", ["none", "none-no-unk", "lower_punct", "char",
                                   "char-lower_punct"])
def test_edge_cases_match_the_vectorizer(edge_vectorizers, which):
    vec = edge_vectorizers[which]
    assert_same_as_vectorizer(vec, Tokenizer.from_vectorizer(vec), EDGE_PROMPTS)


def test_edge_cases_by_hand(edge_vectorizers):
    tok = Tokenizer.from_vectorizer(edge_vectorizers["lower_punct"])
    eos, unk = tok.eos_id, tok.unk_id
    assert tok.prompt_ids("") == tok.prompt_ids(" \t\n ") == [eos]
    np.testing.assert_array_equal(tok.encode_lines(["", "  "]), [eos, eos])
    assert tok.encode_lines([]).dtype == np.int32 and tok.encode_lines([]).size == 0
    assert tok.tokens("Hello, World!") == ["hello", ",", "world", "!"]
    assert tok.tokens("don't 3.5") == ["don", "'", "t", "3", ".", "5"]
    assert tok.tokens("a\u00a0b\u3000c") == ["a", "\u00a0", "b", "\u3000", "c"]
    assert tok.tokens("x² \u0661\u0662\u0663") == ["x²", "\u0661\u0662\u0663"]
    assert tok.tokens("\U0001F44D\U0001F3FD ok") == ["\U0001F44D", "\U0001F3FD", "ok"]
    assert tok.tokens("\u0130stanbul") == ["i", "\u0307", "stanbul"]
    assert tok.tokens("\u039f\u0394\u039f\u03a3 \u0391\u03a3\u0391") == [
        "\u03bf\u03b4\u03bf\u03c2", "\u03b1\u03c3\u03b1"]
    assert tok.tokens("The Cat\x00 ignored") == ["the", "cat"]  # tf.strings.lower stops at NUL
    assert tok.encode("zebra") == [unk] and tok.tokens("[UNK]") == ["[", "unk", "]"]
    assert tok.prompt_ids("the cat , the cat") == [eos] + tok.encode("the cat , the cat")
    assert tok.prompt_ids("the cat , the cat", max_tokens=2) == tok.encode("the cat")
    assert tok.prompt_ids("the cat", max_tokens=99) == [eos] + tok.encode("the cat")
    assert tok.prompt_ids("the", max_tokens=np.int64(1)) == tok.encode("the")
    assert tok.decode(tok.encode("Hello, World!")) == "hello , world !"
    assert tok.decode(np.array([0, tok.eos_id, 0])) == "<eos>" and tok.decode([]) == ""
    plain = Tokenizer.from_vectorizer(edge_vectorizers["none"])
    assert plain.tokens(" a\u00a0b  The\x00cat ") == ["a\u00a0b", "The\x00cat"]
    assert plain.encode("zebra [UNK]") == [plain.unk_id] * 2 and plain.unk_id != 1
    assert Tokenizer.from_vectorizer(edge_vectorizers["none-no-unk"]).encode("zebra") == [1]
    char = Tokenizer.from_vectorizer(edge_vectorizers["char"])
    assert char.tokens("a\r\nb") == ["a", "\r", "\n", "b"]
    assert char.encode("c\n") == [char.vocabulary.index("c"), char.eos_id]
    assert char.decode(char.encode("that cat")) == "that cat"


def _code_points():
    """Planes 0 and 1 whole; the rest sampled, with every table's edges."""
    cps = set(range(0x20000))
    cps.update(range(0x20000, 0x110000, 251))
    for table in (tokenizer_lib._LN_NEW_IN_15_0, tokenizer_lib._LN_NEW_IN_15_1,
                  tokenizer_lib._CASE_UNKNOWN_TO_TF, tokenizer_lib._CASE_IGNORABLE_FOR_TF):
        for a, b in table:
            cps.update((a - 1, a, b, b + 1))
    return [chr(c) for c in sorted(cps) if not 0xD800 <= c <= 0xDFFF]


@pytest.mark.slow
def test_unicode_rules_match_tensorflow_code_point_by_code_point():
    chars = _code_points()

    def tf_lower(strings):
        out = tf.strings.lower(tf.constant(strings), encoding="utf-8").numpy()
        return [s.decode("utf-8") for s in out]

    # Lowercase, alone and where it decides a final sigma (cased / case-ignorable).
    for make in (lambda c: c, lambda c: "\u0391\u03a3" + c, lambda c: "\u0391" + c + "\u03a3"):
        strings = [make(c) for c in chars]
        bad = [s for s, want in zip(strings, tf_lower(strings))
               if tokenizer_lib.lowercase(s) != want]
        assert not bad, [f"U+{ord(s[-1] if len(s) < 3 else s[1]):04X}" for s in bad[:10]]
    punct = tf.strings.regex_replace(tf.constant(chars), r"([^\pL\pN\s])", r" \1 ").numpy()
    bad = [c for c, want in zip(chars, punct)
           if tokenizer_lib.split_punctuation(c) != want.decode("utf-8")]
    assert not bad, [f"U+{ord(c):04X}" for c in bad[:10]]
    strings = [f"a{c}b" for c in chars]
    want = reference_tokens(strings, "none", "whitespace")
    plain = Tokenizer(["", "[UNK]", "<eos>"])
    bad = [s for s, w in zip(strings, want) if plain.tokens(s) != w]
    assert not bad, [f"U+{ord(s[1]):04X}" for s in bad[:10]]


# -- the bundle ----------------------------------------------------------------------------

def test_word_bundle_files(tmp_path):
    vec = WordVectorizer.fit(["The cat sat.", "The dog, the cat!"], "lower_punct")
    tok = tokenizer_lib.write(vec, tmp_path)
    desc = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert desc == tokenizer_lib.describe(vec) == tok.describe()
    assert desc["format_version"] == 1 and desc["kind"] == "word"
    assert desc["lowercase"] is True and desc["punctuation_split"]["regex_syntax"] == "RE2"
    assert desc["whitespace"] == ["\t", "\n", "\x0b", "\x0c", "\r", " "]
    assert (desc["pad_id"], desc["oov_id"], desc["eos_id"]) == (0, 1, vec.eos_id)
    assert desc["unk_token"] is None and desc["unk_id"] == 1 and desc["prepend_eos"] is True
    data = (tmp_path / "vocab.txt").read_bytes()
    assert desc["vocabulary_file"] == "vocab.txt" and "vocabulary" not in desc
    assert desc["vocabulary_sha256"] == hashlib.sha256(data).hexdigest()
    lines = data.decode("utf-8").split("\n")
    assert lines[-1] == "" and lines[:-1] == vec.vocabulary and lines[:2] == ["", "[UNK]"]
    assert len(lines) - 1 == desc["vocab_size"] == vec.vocab_size


def test_char_bundle_keeps_the_vocabulary_in_the_json(tmp_path):
    vec = WordVectorizer.fit(["ab c", "a\tb"], "none", split="character")
    tokenizer_lib.write(vec, tmp_path)
    desc = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert desc["kind"] == "char" and desc["vocabulary_file"] is None
    assert desc["vocabulary"] == vec.vocabulary and "\n" in desc["vocabulary"]
    assert desc["eos_token"] == "\n" and desc["whitespace"] is None
    assert not (tmp_path / "vocab.txt").exists()
    assert Tokenizer.load(tmp_path).prompt_ids("ab\tc") == reference_prompt_ids(vec, ["ab\tc"])[0]


def test_a_word_with_a_line_separator_goes_inline(tmp_path):
    tok = Tokenizer(["", "[UNK]", "<eos>", "a\u2028b"])
    tok.save(tmp_path)
    assert tok.describe()["vocabulary_file"] is None and not (tmp_path / "vocab.txt").exists()
    assert Tokenizer.load(tmp_path).encode("a\u2028b c") == [3, 1]


# -- (d) errors ----------------------------------------------------------------------------

@pytest.fixture
def bundle(tmp_path):
    Tokenizer(["", "[UNK]", "<eos>", "the"], "lower_punct").save(tmp_path)
    return tmp_path


def _edit_json(folder, **changes):
    path = folder / "tokenizer.json"
    desc = json.loads(path.read_text())
    desc.update(changes)
    path.write_text(json.dumps(desc))


def test_missing_files_say_which_and_that_it_is_no_bundle(tmp_path, bundle):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        Tokenizer.load(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json is missing.*not a tokenizer "
                                                r"bundle"):
        Tokenizer.load(empty)
    (empty / "text.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="training run folder"):
        Tokenizer.load(empty)
    (bundle / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"vocab\.txt is missing.*not a complete"):
        Tokenizer.load(bundle)


@pytest.mark.parametrize("content, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_bad_json(bundle, content, match):
    path = bundle / "tokenizer.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TokenizerError, match=match):
        Tokenizer.load(bundle)


@pytest.mark.parametrize("changes, match", [
    ({"format_version": 2}, "Unsupported format_version 2"),
    ({"format_version": None}, "Unsupported format_version None"),
    ({"kind": "bpe"}, "Unknown kind 'bpe'"),
    ({"kind": "char"}, "does not fit kind"),
    ({"standardize": "nfkc"}, "lowercase True contradicts"),
    ({"standardize": "nfkc", "lowercase": False}, "Unknown standardize 'nfkc'"),
    ({"vocab_size": 99}, "vocab_size is 99"),
    ({"eos_id": 3}, "eos_id is 3"),
    ({"oov_id": 2}, "pad_id and oov_id"),
    ({"vocabulary_file": "../vocab.txt"}, "vocabulary_file must be a file name"),
    ({"vocabulary_file": None}, "neither a vocabulary_file nor an inline"),
])
def test_bad_fields(bundle, changes, match):
    _edit_json(bundle, **changes)
    with pytest.raises(TokenizerError, match=match):
        Tokenizer.load(bundle)


def test_a_vocab_txt_from_elsewhere_is_refused(bundle):
    (bundle / "vocab.txt").write_text("\n[UNK]\n<eos>\nthe\ncat\n")
    with pytest.raises(TokenizerError, match="SHA-256 differs"):
        Tokenizer.load(bundle)
    _edit_json(bundle, vocabulary_sha256=None)
    with pytest.raises(TokenizerError, match="vocab_size is 4 but the vocabulary has 5"):
        Tokenizer.load(bundle)
    (bundle / "vocab.txt").write_text("the\n<eos>\n")  # WordVectorizer.save's format
    with pytest.raises(TokenizerError, match="must start with ''"):
        Tokenizer.load(bundle)


def test_bad_input(bundle):
    tok = Tokenizer.load(bundle)
    for text in (b"the", None, 3, ["the"]):
        with pytest.raises(TypeError, match="must be a str"):
            tok.prompt_ids(text)
    with pytest.raises(TypeError, match="decode bytes"):
        tok.encode(b"the")
    with pytest.raises(TypeError, match="not a single string"):
        tok.encode_lines("the cat")
    with pytest.raises(TypeError, match=r"lines\[1\] must be a str"):
        tok.encode_lines(["the", b"cat"])
    with pytest.raises(ValueError, match="lone surrogate U\\+D800"):
        tok.tokens("the \ud800")
    for bad, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="max_tokens"):
            tok.prompt_ids("the", max_tokens=bad)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([4])
    with pytest.raises(ValueError, match="1-D sequence of ints"):
        tok.decode([[1, 2]])
    with pytest.raises(TokenizerError, match="must start with"):
        Tokenizer(["the", "<eos>"])
    with pytest.raises(TokenizerError, match="no end-of-line token"):
        Tokenizer(["", "[UNK]", "the"])
    with pytest.raises(TokenizerError, match="twice"):
        Tokenizer(["", "[UNK]", "<eos>", "the", "the"])
    with pytest.raises(TokenizerError, match="Unknown split"):
        Tokenizer(["", "[UNK]", "<eos>"], split="bpe")
