"""The training tokenizer without TensorFlow: text -> the ids ``zoo.text.WordVectorizer`` gives.

A phone or LiteRT runner must tokenise a prompt exactly as training did, but cannot import
TensorFlow. This module reimplements ``WordVectorizer`` (a ``keras.layers.TextVectorization``
with this project's standardisation) with the standard library and NumPy only, writes a
tokenizer *bundle* that describes the rules precisely enough for an Android or iOS developer
to reimplement them, and reads it back. ``tests/serving/test_tokenizer.py`` checks the ids
against ``WordVectorizer`` on every corpus and, code point by code point, the Unicode rules
against TensorFlow's own string ops.

Python API::

    from serving import tokenizer
    tokenizer.write(vectorizer, "bundle/")        # from a zoo.text.WordVectorizer
    tok = tokenizer.Tokenizer.load("bundle/")     # no TensorFlow needed from here on
    tok.tokens("Hello, world!")                   # ["hello", ",", "world", "!"]
    tok.prompt_ids("the meaning of", max_tokens=64)   # [eos_id, id("the"), ...]
    tok.encode_lines(["a line", "another"])       # int32 stream, eos after each line
    tok.decode([12, 7])                           # "the cat"

The bundle (a folder)
=====================

``tokenizer.json``: one UTF-8 JSON object (written with ASCII escapes), ``format_version`` 1.
Readers must reject any other ``format_version``, and may ignore keys they do not know.

``format_version``  1.
``kind``            ``"word"`` (tokens are words and punctuation marks) or ``"char"`` (tokens
                    are single Unicode code points). Same information as ``split``.
``standardize``     ``"none"`` or ``"lower_punct"``: the name of the rule set in training.
                    ``"none"`` means no change at all (the steps 1 and 2 below are skipped).
``split``           ``"whitespace"`` or ``"character"`` (step 3).
``lowercase``       bool: step 1 is done (true exactly when ``standardize`` is
                    ``"lower_punct"``).
``lowercase_rule``  null, or the exact rule of step 1 (see below) as an object:
                    ``{"mapping": "unicode_full_lowercase", "locale": "root",
                    "final_sigma": true, "unicode_version": "13.0",
                    "truncate_at_first_nul": true}``.
``punctuation_split`` null, or the exact rule of step 2 as an object: ``regex`` (RE2 syntax,
                    ``"([^\\pL\\pN\\s])"``), ``replacement`` (``" \\1 "``),
                    ``letter_number_categories`` (the general categories that stay
                    attached: Lu Ll Lt Lm Lo Nd Nl No), ``unicode_version`` (``"15.0"``:
                    the category data used), ``kept_whitespace`` (the five characters
                    ``\\s`` means in RE2: TAB LF FF CR SPACE; VT is *not* one).
``whitespace``      for ``split == "whitespace"``: the separator characters, exactly the six
                    ASCII ones TAB LF VT FF CR SPACE (U+0009-U+000D and U+0020); null for
                    ``"character"``.
``pad_token``, ``pad_id``   ``""`` and 0: padding, never produced by tokenising.
``oov_token``, ``oov_id``   ``"[UNK]"`` and 1: what an unknown token looks up to.
``unk_token``, ``unk_id``   the corpus's own unknown-word token (``"<unk>"`` in PTB and
                    WikiText-2) and its id, if the vocabulary has one; else null and 1.
                    Every id 1 is replaced by ``unk_id`` (step 5).
``eos_token``, ``eos_id``   the end-of-line token (``"<eos>"`` for words, ``"\\n"`` for
                    characters) and its id.
``prepend_eos``     true: a prompt is read as the start of a line, so its ids start with
                    ``eos_id`` (an empty prompt is ``[eos_id]``).
``append_eos_per_line`` true: training text is one id stream with ``eos_id`` after each
                    line.
``vocab_size``      the number of ids, 0 and 1 included (the model's logits width).
``vocabulary_file`` ``"vocab.txt"``, or null when the vocabulary is inline (below).
``vocabulary_sha256`` hex SHA-256 of the bytes of ``vocab.txt`` (null when inline). Readers
                    should check it: a ``vocab.txt`` from another run is caught.
``vocabulary``      only when ``vocabulary_file`` is null: the list of all tokens by id, from
                    id 0 (``""``) and 1 (``"[UNK]"``) on.

``vocab.txt``: UTF-8 without a byte-order mark; token ``i`` is line ``i`` (0-based), every
line ends with ``"\\n"`` (LF), so the file has ``vocab_size`` lines and starts with an
empty line (id 0, padding) and ``[UNK]`` (id 1). Split it on LF only, never on CR, VT, FF,
U+0085, U+2028 or U+2029 (some ``splitlines`` do): a vocabulary having a token with any of
those (or LF) is written inline instead, as is every character vocabulary (it has the
``"\\n"`` and ``" "`` tokens). A training run folder's ``vocab.txt`` (from
``WordVectorizer.save``, ids 2.. only) is a different file; ``Tokenizer.load`` refuses it.

The rules, in order (a prompt is one string; a line of training text too)
===========================================================================

1. Lowercase (``lowercase`` true only). What ``tf.strings.lower(text, encoding="utf-8")``
   does, which is ICU's root-locale full lowercase mapping with Unicode 13.0 data:

   * the text ends at its first U+0000 (NUL): it and everything after it are dropped;
   * each code point gets its full lowercase mapping (UnicodeData plus the unconditional
     SpecialCasing entries, which can lengthen the text: U+0130 "İ" -> "i" U+0307);
     no locale rules (no Turkish dotless i, no Lithuanian dots);
   * U+03A3 "Σ" becomes final "ς" (U+03C2) when a cased letter comes before it and none
     after it, skipping case-ignorable characters both ways (Unicode's Final_Sigma), else
     "σ"; "ẞ" (U+1E9E) becomes "ß", not "ss";
   * characters new in Unicode 14.0 or later are left alone and are neither cased nor
     case-ignorable (e.g. U+2C2F, U+A7C0, Vithkuqi U+10570-U+105BC stay upper case), and
     U+1734 is case-ignorable (its Unicode 13 category was Mn).

   Android ``String.toLowerCase(Locale.ROOT)`` and ICU ``u_strToLower(..., "")`` implement
   this (up to their Unicode version). Python's ``str.lower`` differs from TensorFlow only on
   the Unicode 14.0+ characters and U+0000; this module corrects both.
2. Punctuation split (``punctuation_split`` not null): every code point that is neither a
   letter nor a number (general category L* or N*, Unicode 15.0 data, as RE2 in TensorFlow
   2.21 has it) nor one of TAB LF FF CR SPACE is replaced by SPACE, itself, SPACE. So
   punctuation, symbols, emoji (each code point of an emoji sequence separately), combining
   marks (U+0301 after "e" is split off "e"), format characters, non-ASCII spaces (U+00A0,
   U+3000: they become tokens) and VT all become their own tokens; "don't" -> "don ' t",
   "3.5" -> "3 . 5", "x²" stays one token (² is No).
3. Split. ``whitespace``: cut at runs of the six ASCII separators TAB LF VT FF CR SPACE and
   drop empty pieces. No other character separates tokens: U+00A0, U+2003, U+3000, U+0085,
   U+001C-U+001F are part of a word with ``standardize`` ``"none"`` (Python's ``str.split()``
   would cut there: do not use it). ``character``: every code point is a token, spaces and
   line breaks included (``"\\r\\n"`` is two tokens); nothing is dropped.
4. Look up each token in the vocabulary (exact code point match); a token that is not
   there (a literal ``"[UNK]"`` included) gets ``oov_id`` 1.
5. Replace id 1 by ``unk_id`` (a no-op when the vocabulary has no ``"<unk>"``).
6. Prompts: put ``eos_id`` in front; if the runner bounds the context to ``max_tokens``,
   keep the *last* ``max_tokens`` ids (the leading ``eos_id`` is dropped first).
   Training text: ``eos_id`` after every line, lines concatenated into one stream.

An empty or all-whitespace prompt has no tokens (``prompt_ids`` gives ``[eos_id]``);
an empty training line gives ``[eos_id]``.

Differences from TensorFlow
===========================

None known on Python 3.11 (Unicode 14.0 data): the test compares every code point (alone
and in the contexts that decide the final sigma) with ``tf.strings.lower``,
``tf.strings.regex_replace`` and ``tf.strings.split``. This package runs on Python 3.11 and
3.12; on 3.12 (Unicode 15.0) the same tables apply, but that version was not compared. A
``str`` with a lone surrogate (not encodable as UTF-8) is refused, as ``tf.constant`` does.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import os
import re
import unicodedata

import numpy as np

FORMAT_VERSION = 1
CONFIG_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"

PAD_TOKEN, PAD_ID = "", 0
OOV_TOKEN, OOV_ID = "[UNK]", 1
UNK_TOKEN = "<unk>"
STANDARDIZE_MODES = ("none", "lower_punct")
SPLITS = ("whitespace", "character")
KINDS = {"whitespace": "word", "character": "char"}

#: What ``tf.strings.split`` (and TextVectorization's ``"whitespace"`` split) cuts at.
WHITESPACE = "\t\n\x0b\x0c\r "
#: RE2's ``\s``: the white space the punctuation rule leaves alone (no VT).
RE2_SPACE = "\t\n\x0c\r "
#: Characters some line readers split at (Python ``str.splitlines``, Swift ``.newlines``).
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

_WORDS = re.compile("[^" + re.escape(WHITESPACE) + "]+")

# -- Unicode version tables (measured against TensorFlow 2.21; see the module docstring) ----

# Letters and numbers that are new in Unicode 15.0 (RE2's data in TensorFlow 2.21), which
# Python 3.11's unicodedata (14.0) calls unassigned.
_LN_NEW_IN_15_0 = (
    (0x1123F, 0x11240), (0x11F02, 0x11F02), (0x11F04, 0x11F10), (0x11F12, 0x11F33),
    (0x11F50, 0x11F59), (0x1342F, 0x1342F), (0x13441, 0x13446), (0x1B132, 0x1B132),
    (0x1B155, 0x1B155), (0x1D2C0, 0x1D2D3), (0x1DF25, 0x1DF2A), (0x1E030, 0x1E06D),
    (0x1E4D0, 0x1E4EB), (0x1E4F0, 0x1E4F9), (0x2B739, 0x2B739), (0x31350, 0x323AF),
)
# Unicode 15.1 letters (CJK Extension I): RE2 in TensorFlow 2.21 does not know them. Only a
# Python with Unicode 15.1 data (3.13+, outside requires-python) would call them letters.
_LN_NEW_IN_15_1 = ((0x2EBF0, 0x2EE5D),)

# Code points whose case properties tf.strings.lower (ICU, Unicode 13.0) does not know but
# Python does: Unicode 14.0 letters and marks that Python calls cased or case-ignorable.
# TensorFlow leaves them unchanged and treats them as neither.
_CASE_UNKNOWN_TO_TF = (
    (0x0888, 0x0888), (0x0890, 0x0891), (0x0898, 0x089F), (0x08C9, 0x08D2), (0x0C3C, 0x0C3C),
    (0x180F, 0x180F), (0x1AC1, 0x1ACE), (0x1DFA, 0x1DFA), (0x2C2F, 0x2C2F), (0x2C5F, 0x2C5F),
    (0xA7C0, 0xA7C1), (0xA7D0, 0xA7D1), (0xA7D3, 0xA7D3), (0xA7D5, 0xA7D9), (0xA7F2, 0xA7F4),
    (0xFBC2, 0xFBC2), (0x10570, 0x1057A), (0x1057C, 0x1058A), (0x1058C, 0x10592),
    (0x10594, 0x10595), (0x10597, 0x105A1), (0x105A3, 0x105B1), (0x105B3, 0x105B9),
    (0x105BB, 0x105BC), (0x10780, 0x10785), (0x10787, 0x107B0), (0x107B2, 0x107BA),
    (0x10F82, 0x10F85), (0x11070, 0x11070), (0x11073, 0x11074), (0x110C2, 0x110C2),
    (0x1AFF0, 0x1AFF3), (0x1AFF5, 0x1AFFB), (0x1AFFD, 0x1AFFE), (0x1CF00, 0x1CF2D),
    (0x1CF30, 0x1CF46), (0x1DF00, 0x1DF09), (0x1DF0B, 0x1DF1E), (0x1E2AE, 0x1E2AE),
    # Everything new in Unicode 15.0 (a no-op on Python 3.11, which does not know them).
    (0x0CF3, 0x0CF3), (0x0ECE, 0x0ECE), (0x10EFD, 0x10EFF), (0x1123F, 0x11241),
    (0x11B00, 0x11B09), (0x11F00, 0x11F10), (0x11F12, 0x11F3A), (0x11F3E, 0x11F59),
    (0x1342F, 0x1342F), (0x13439, 0x13455), (0x1B132, 0x1B132), (0x1B155, 0x1B155),
    (0x1D2C0, 0x1D2D3), (0x1DF25, 0x1DF2A), (0x1E030, 0x1E06D), (0x1E08F, 0x1E08F),
    (0x1E4D0, 0x1E4F9), (0x1F6DC, 0x1F6DC), (0x1F774, 0x1F776), (0x1F77B, 0x1F77F),
    (0x1F7D9, 0x1F7D9), (0x1FA75, 0x1FA77), (0x1FA87, 0x1FA88), (0x1FAAD, 0x1FAAF),
    (0x1FABB, 0x1FABD), (0x1FABF, 0x1FABF), (0x1FACE, 0x1FACF), (0x1FADA, 0x1FADB),
    (0x1FAE8, 0x1FAE8), (0x1FAF7, 0x1FAF8), (0x2B739, 0x2B739), (0x31350, 0x323AF),
)
# Case-ignorable for TensorFlow (Mn in Unicode 13.0) but not for Python (Mc since 14.0).
_CASE_IGNORABLE_FOR_TF = ((0x1734, 0x1734),)


def _range_set(ranges):
    ranges = sorted(ranges)
    starts = [a for a, _ in ranges]
    ends = [b for _, b in ranges]

    def contains(cp):
        i = bisect.bisect_right(starts, cp) - 1
        return i >= 0 and cp <= ends[i]

    return contains


def _char_class(ranges):
    return "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


_in_ln_15_0 = _range_set(_LN_NEW_IN_15_0)
_in_ln_15_1 = _range_set(_LN_NEW_IN_15_1)
_in_case_unknown = _range_set(_CASE_UNKNOWN_TO_TF)
_in_ignorable_for_tf = _range_set(_CASE_IGNORABLE_FOR_TF)
# Text without any of these lowers with plain str.lower().
_LOWER_SPECIAL = re.compile("[\x00\u03a3" + _char_class(_CASE_UNKNOWN_TO_TF)
                            + _char_class(_CASE_IGNORABLE_FOR_TF) + "]")

_CASED, _IGNORABLE, _NEITHER = "cased", "ignorable", "neither"


@functools.lru_cache(maxsize=None)
def _case_class(ch):
    """How the Final_Sigma rule sees ``ch`` in TensorFlow: cased (and not case-ignorable),
    case-ignorable, or neither."""
    cp = ord(ch)
    if _in_ignorable_for_tf(cp):
        return _IGNORABLE
    if _in_case_unknown(cp):
        return _NEITHER
    # Python does not expose Cased / Case_Ignorable; its own Final_Sigma rule reveals them.
    if ("\u0391\u03a3" + ch).lower()[1] == "\u03c3":  # "ΑΣx": σ iff x is cased, not ignorable
        return _CASED
    if ("\u0391" + ch + "\u03a3").lower()[-1] == "\u03c2":  # "ΑxΣ": ς iff x is skipped
        return _IGNORABLE
    return _NEITHER


def _final_sigma(text, i):
    before = False
    for ch in reversed(text[:i]):
        kind = _case_class(ch)
        if kind != _IGNORABLE:
            before = kind == _CASED
            break
    if not before:
        return False
    for ch in text[i + 1:]:
        kind = _case_class(ch)
        if kind != _IGNORABLE:
            return kind != _CASED
    return True


def lowercase(text):
    """``tf.strings.lower(text, encoding="utf-8")`` in Python (rule 1 of the module docstring)."""
    if text.isascii():
        return text.partition("\x00")[0].lower()
    if _LOWER_SPECIAL.search(text) is None:
        return text.lower()
    text = text.partition("\x00")[0]
    out = []
    for i, ch in enumerate(text):
        if ch == "\u03a3":
            out.append("\u03c2" if _final_sigma(text, i) else "\u03c3")
        elif _in_case_unknown(ord(ch)):
            out.append(ch)
        else:
            out.append(ch.lower())  # context-free for every character but capital sigma
    return "".join(out)


@functools.lru_cache(maxsize=None)
def _stays_attached(ch):
    """Letter, number or RE2 ``\\s``: not split off by the punctuation rule."""
    if ch in RE2_SPACE:
        return True
    cp = ord(ch)
    if _in_ln_15_1(cp):
        return False
    return unicodedata.category(ch)[0] in "LN" or _in_ln_15_0(cp)


_ASCII_PUNCT = re.compile(r"([^A-Za-z0-9\t\n\x0c\r ])")


def split_punctuation(text):
    """``tf.strings.regex_replace(text, r"([^\\pL\\pN\\s])", r" \\1 ")`` in Python (rule 2)."""
    if text.isascii():
        return _ASCII_PUNCT.sub(r" \1 ", text)
    return "".join(ch if _stays_attached(ch) else f" {ch} " for ch in text)


def standardize_text(text, standardize):
    """Rules 1 and 2 for ``standardize`` ``"none"`` or ``"lower_punct"``."""
    if standardize == "none":
        return text
    if standardize == "lower_punct":
        return split_punctuation(lowercase(text))
    raise ValueError(f"Unknown standardize mode {standardize!r}; expected one of "
                     f"{STANDARDIZE_MODES}.")


class TokenizerError(ValueError):
    """A tokenizer bundle or description cannot be used; the message says why."""


def _check_text(text, what="text"):
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, got {type(text).__name__}"
                        + (" (decode bytes as UTF-8 first)" if isinstance(text, bytes) else "")
                        + ".")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ValueError(f"{what} is not valid Unicode: a lone surrogate "
                             f"U+{ord(text[err.start]):04X} at index {err.start}.") from None
    return text


class Tokenizer:
    """The ``WordVectorizer`` rules without TensorFlow.

    Args:
        vocabulary: every token by id: ``["", "[UNK]", most frequent, ...]`` (ids 0 and 1
            included, unlike ``WordVectorizer``'s argument).
        standardize: ``"none"`` or ``"lower_punct"``.
        split: ``"whitespace"`` (words) or ``"character"``.
        eos_token: the end-of-line token; default ``"<eos>"``, or ``"\\n"`` for characters.

    Raises:
        TokenizerError: ids 0 and 1 are not ``""`` and ``"[UNK]"``; a duplicate, a non-str
            token, a missing ``eos_token``; an unknown ``standardize`` or ``split``.
    """

    def __init__(self, vocabulary, standardize="none", split="whitespace", eos_token=None):
        vocabulary = list(vocabulary)
        if standardize not in STANDARDIZE_MODES:
            raise TokenizerError(f"Unknown standardize {standardize!r}; expected one of "
                                 f"{STANDARDIZE_MODES}.")
        if split not in SPLITS:
            raise TokenizerError(f"Unknown split {split!r}; expected one of {SPLITS}.")
        if eos_token is None:
            eos_token = "\n" if split == "character" else "<eos>"
        bad = next((t for t in vocabulary if not isinstance(t, str)), None)
        if bad is not None:
            raise TokenizerError(f"Vocabulary tokens must be str; found {bad!r}.")
        if vocabulary[:2] != [PAD_TOKEN, OOV_TOKEN]:
            raise TokenizerError(f"The vocabulary must start with {PAD_TOKEN!r} (id 0) and "
                                 f"{OOV_TOKEN!r} (id 1); it starts with {vocabulary[:2]!r}.")
        index = {}
        for i, token in enumerate(vocabulary):
            if token in index:
                raise TokenizerError(f"Token {token!r} is in the vocabulary twice (ids "
                                     f"{index[token]} and {i}).")
            index[token] = i
        if index.get(eos_token, 0) < 2:
            raise TokenizerError(f"The vocabulary has no end-of-line token {eos_token!r}.")
        self.standardize = standardize
        self.split = split
        self.kind = KINDS[split]
        self.eos_token = eos_token
        self._vocabulary = vocabulary
        self._index = index
        self.eos_id = index[eos_token]
        self.unk_id = index.get(UNK_TOKEN, OOV_ID)

    @classmethod
    def from_vectorizer(cls, vectorizer):
        """The same rules as a ``zoo.text.WordVectorizer`` (read from its attributes: this
        module never imports TensorFlow itself)."""
        tok = cls(vectorizer.vocabulary, vectorizer.standardize, vectorizer.split,
                  vectorizer.eos_token)
        if (tok.eos_id, tok.unk_id) != (vectorizer.eos_id, vectorizer.unk_id):
            raise TokenizerError("The vectorizer's eos/unk ids disagree with its vocabulary.")
        return tok

    # -- properties ------------------------------------------------------------------------
    @property
    def vocabulary(self):
        """All tokens by id: ``["", "[UNK]", most frequent, ...]`` (a copy)."""
        return list(self._vocabulary)

    @property
    def vocab_size(self):
        """The number of ids, padding and ``[UNK]`` included."""
        return len(self._vocabulary)

    # -- text -> ids -----------------------------------------------------------------------
    def tokens(self, text):
        """The tokens of one string (rules 1-3): ``"Hi, you" -> ["hi", ",", "you"]``.

        Raises:
            TypeError: ``text`` is not a ``str``.
            ValueError: ``text`` has a lone surrogate.
        """
        text = standardize_text(_check_text(text), self.standardize)
        if self.split == "character":
            return list(text)
        return _WORDS.findall(text)

    def _ids(self, tokens):
        index, unk = self._index, self.unk_id
        ids = [index.get(t, OOV_ID) for t in tokens]
        return [unk if i == OOV_ID else i for i in ids]

    def encode(self, text):
        """Ids of the tokens of ``text`` (rules 1-5), without the leading ``<eos>``."""
        return self._ids(self.tokens(text))

    def prompt_ids(self, text, max_tokens=None):
        """A prompt's ids as ``WordVectorizer.prompt_ids`` gives them for one row: ``eos_id``
        then the ids of ``text``, of which the last ``max_tokens`` are kept.

        Args:
            text: ``str``.
            max_tokens: None (all) or an int >= 1.

        Returns:
            list of int, never empty.

        Raises:
            TypeError: ``text`` is not a str; ``max_tokens`` is not an int.
            ValueError: ``max_tokens`` < 1; a lone surrogate in ``text``.
        """
        if max_tokens is not None:
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)):
                raise TypeError(f"max_tokens must be an int or None, got {max_tokens!r}.")
            if max_tokens < 1:
                raise ValueError(f"max_tokens must be at least 1, got {max_tokens}.")
        ids = [self.eos_id] + self.encode(text)
        return ids if max_tokens is None else ids[-int(max_tokens):]

    def encode_lines(self, lines):
        """Lines -> one id stream with ``eos_id`` after every line, as
        ``WordVectorizer.encode_lines``.

        Args:
            lines: a list (or other iterable, not a single str) of ``str``.

        Returns:
            ``np.ndarray`` int32 ``(tokens,)``.
        """
        if isinstance(lines, (str, bytes)):
            raise TypeError("lines must be a list of str, not a single string.")
        stream = []
        for n, line in enumerate(lines):
            stream.extend(self._ids(self.tokens(_check_text(line, f"lines[{n}]"))))
            stream.append(self.eos_id)
        return np.asarray(stream, dtype=np.int32)

    def decode(self, ids):
        """Ids -> text: tokens joined by a space (words) or nothing (characters); padding
        (id 0) is skipped.

        Raises:
            ValueError: an id outside ``[0, vocab_size)``, or ``ids`` not 1-D integers.
        """
        arr = np.asarray(ids)
        if arr.size == 0:
            return ""
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"ids must be a 1-D sequence of ints, got {arr.dtype} "
                             f"shape {arr.shape}.")
        bad = arr[(arr < 0) | (arr >= self.vocab_size)]
        if bad.size:
            raise ValueError(f"Id {int(bad[0])} is outside the vocabulary [0, "
                             f"{self.vocab_size}).")
        words = [self._vocabulary[i] for i in arr.tolist() if i != PAD_ID]
        return ("" if self.kind == "char" else " ").join(words)

    # -- the bundle ------------------------------------------------------------------------
    def _inline_vocabulary(self):
        return self.kind == "char" or any(
            c in t for t in self._vocabulary for c in _LINE_BREAKS)

    def _vocab_bytes(self):
        return ("\n".join(self._vocabulary) + "\n").encode("utf-8")

    def describe(self):
        """The ``tokenizer.json`` object (see the module docstring), JSON-serialisable."""
        lower = self.standardize == "lower_punct"
        inline = self._inline_vocabulary()
        desc = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "standardize": self.standardize,
            "split": self.split,
            "lowercase": lower,
            "lowercase_rule": {
                "mapping": "unicode_full_lowercase", "locale": "root", "final_sigma": True,
                "unicode_version": "13.0", "truncate_at_first_nul": True,
            } if lower else None,
            "punctuation_split": {
                "regex": r"([^\pL\pN\s])", "replacement": r" \1 ", "regex_syntax": "RE2",
                "letter_number_categories": ["Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Nl", "No"],
                "unicode_version": "15.0", "kept_whitespace": list(RE2_SPACE),
            } if lower else None,
            "whitespace": list(WHITESPACE) if self.split == "whitespace" else None,
            "pad_token": PAD_TOKEN, "pad_id": PAD_ID,
            "oov_token": OOV_TOKEN, "oov_id": OOV_ID,
            "unk_token": UNK_TOKEN if UNK_TOKEN in self._index else None,
            "unk_id": self.unk_id,
            "eos_token": self.eos_token, "eos_id": self.eos_id,
            "prepend_eos": True,
            "append_eos_per_line": True,
            "vocab_size": self.vocab_size,
            "vocabulary_file": None if inline else VOCAB_FILE,
            "vocabulary_sha256": (None if inline
                                  else hashlib.sha256(self._vocab_bytes()).hexdigest()),
        }
        if inline:
            desc["vocabulary"] = self.vocabulary
        return desc

    def save(self, directory):
        """Write ``tokenizer.json`` (and ``vocab.txt`` for a word vocabulary) into
        ``directory``, creating it; existing files of those names are replaced."""
        os.makedirs(directory, exist_ok=True)
        desc = self.describe()
        if desc["vocabulary_file"] is not None:
            _write_atomic(os.path.join(directory, VOCAB_FILE), self._vocab_bytes())
        text = json.dumps(desc, indent=1, ensure_ascii=True) + "\n"
        _write_atomic(os.path.join(directory, CONFIG_FILE), text.encode("utf-8"))

    @classmethod
    def from_description(cls, desc, vocabulary=None):
        """A tokenizer from a ``tokenizer.json`` object and, if it is not inline, the
        vocabulary (all ids). Checks every field it relies on.

        Raises:
            TokenizerError: an unknown ``format_version`` or ``kind``, a missing or wrong
                field, fields that contradict each other or the vocabulary.
        """
        if not isinstance(desc, dict):
            raise TokenizerError(f"The tokenizer description must be a JSON object, got "
                                 f"{type(desc).__name__}.")
        version = desc.get("format_version")
        if version != FORMAT_VERSION:
            raise TokenizerError(f"Unsupported format_version {version!r}; this reader knows "
                                 f"{FORMAT_VERSION}.")
        kind = desc.get("kind")
        if kind not in KINDS.values():
            raise TokenizerError(f"Unknown kind {kind!r}; expected 'word' or 'char'.")
        for field in ("standardize", "split", "eos_token"):
            if not isinstance(desc.get(field), str):
                raise TokenizerError(f"Field {field!r} is missing or not a string.")
        if desc["split"] not in SPLITS or KINDS[desc["split"]] != kind:
            raise TokenizerError(f"split {desc['split']!r} does not fit kind {kind!r}.")
        if desc.get("lowercase") != (desc["standardize"] == "lower_punct"):
            raise TokenizerError(f"lowercase {desc.get('lowercase')!r} contradicts "
                                 f"standardize {desc['standardize']!r}.")
        if (desc.get("pad_id"), desc.get("oov_id")) != (PAD_ID, OOV_ID):
            raise TokenizerError("pad_id and oov_id must be 0 and 1.")
        if desc.get("prepend_eos") is not True:
            raise TokenizerError("prepend_eos must be true (the only rule this format has).")
        if vocabulary is None:
            vocabulary = desc.get("vocabulary")
            if not isinstance(vocabulary, list):
                raise TokenizerError("The description has neither a vocabulary_file nor an "
                                     "inline vocabulary list.")
        tok = cls(vocabulary, desc["standardize"], desc["split"], desc["eos_token"])
        if desc.get("vocab_size") != tok.vocab_size:
            raise TokenizerError(f"vocab_size is {desc.get('vocab_size')!r} but the vocabulary "
                                 f"has {tok.vocab_size} tokens: files from different runs?")
        for field in ("eos_id", "unk_id"):
            if desc.get(field) != getattr(tok, field):
                raise TokenizerError(f"{field} is {desc.get(field)!r} but the vocabulary puts "
                                     f"it at {getattr(tok, field)}.")
        return tok

    @classmethod
    def load(cls, directory):
        """Read a bundle that :meth:`save` / :func:`write` made.

        Raises:
            FileNotFoundError: ``directory`` is not a folder, or lacks ``tokenizer.json`` or
                the ``vocab.txt`` it names (the message says which).
            TokenizerError (a ValueError): bad JSON, an unknown ``format_version`` or
                ``kind``, a ``vocab.txt`` that is not the one described (size, SHA-256).
        """
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{directory} is not a folder; give the tokenizer bundle "
                                    f"folder (with {CONFIG_FILE}).")
        config_path = os.path.join(directory, CONFIG_FILE)
        if not os.path.exists(config_path):
            hint = (" It looks like a training run folder (text.json); write a bundle with "
                    "serving.tokenizer.write(WordVectorizer.load(run), folder)."
                    if os.path.exists(os.path.join(directory, "text.json")) else "")
            raise FileNotFoundError(f"{config_path} is missing: {directory} is not a "
                                    f"tokenizer bundle (serving.tokenizer.write makes one).{hint}")
        try:
            with open(config_path, encoding="utf-8") as f:
                desc = json.load(f)
        except UnicodeDecodeError as err:
            raise TokenizerError(f"{config_path} is not UTF-8: {err}.") from None
        except json.JSONDecodeError as err:
            raise TokenizerError(f"{config_path} is not valid JSON: {err}.") from None
        vocabulary = None
        if isinstance(desc, dict) and desc.get("vocabulary_file") is not None:
            name = desc["vocabulary_file"]
            if not isinstance(name, str) or os.path.basename(name) != name or name in (
                    "", ".", ".."):
                raise TokenizerError(f"{config_path}: vocabulary_file must be a file name in "
                                     f"the bundle folder, got {name!r}.")
            vocab_path = os.path.join(directory, name)
            if not os.path.exists(vocab_path):
                raise FileNotFoundError(f"{vocab_path} is missing: {directory} is not a "
                                        f"complete tokenizer bundle ({CONFIG_FILE} names it).")
            with open(vocab_path, "rb") as f:
                data = f.read()
            sha = desc.get("vocabulary_sha256")
            if sha is not None and hashlib.sha256(data).hexdigest() != sha:
                raise TokenizerError(f"{vocab_path} is not the vocabulary {CONFIG_FILE} "
                                     "describes (its SHA-256 differs): files from different "
                                     "runs, or an edited file.")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise TokenizerError(f"{vocab_path} is not UTF-8: {err}.") from None
            if not text.endswith("\n"):
                raise TokenizerError(f"{vocab_path} must end with a newline (one token per "
                                     "line, every line ending in LF).")
            vocabulary = text[:-1].split("\n")
        try:
            return cls.from_description(desc, vocabulary)
        except TokenizerError as err:
            raise TokenizerError(f"{config_path}: {err}") from None


def _write_atomic(path, data):
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def describe(vectorizer):
    """The ``tokenizer.json`` object for a ``zoo.text.WordVectorizer`` (module docstring)."""
    return Tokenizer.from_vectorizer(vectorizer).describe()


def write(vectorizer, directory):
    """Write the tokenizer bundle of a ``zoo.text.WordVectorizer`` into ``directory``;
    returns the :class:`Tokenizer`."""
    tok = Tokenizer.from_vectorizer(vectorizer)
    tok.save(directory)
    return tok
