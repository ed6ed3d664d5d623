"""Text front ends: one interface for word, character, WordPiece and SentencePiece tokens.

A front end turns text into the ids a language model reads and predicts, and back. The same
TensorFlow ops run in training (``tf.data``/eager), inside a SavedModel graph (TF Serving)
and, for every kind, inside a LiteRT model (tensorflow-text's TFLite custom ops).

Kinds (:data:`KINDS`):

* ``word``: today's word-level vocabulary, :class:`zoo.text.WordVectorizer` (a Keras
  ``TextVectorization``); ids identical to it. Its LiteRT path is the TF-free Python tokenizer
  of ``serving.tokenizer``.
* ``char``: characters, as SentencePiece's ``char`` model (a space is the piece U+2581
  ``"▁"``; Kudo & Richardson 2018), run with ``tensorflow_text.FastSentencepieceTokenizer``.
* ``wordpiece``: WordPiece (Schuster & Nakajima 2012; Devlin et al. 2019). The vocabulary is
  learned with tensorflow-text's WordPiece learner (``wordpiece_tokenizer_learner_lib.learn``,
  the algorithm behind ``bert_vocab_from_dataset``) from whitespace-split words, and text is
  split on whitespace (``tensorflow_text.WhitespaceTokenizer``) and each word into pieces with
  ``tensorflow_text.FastWordpieceTokenizer`` (Song et al. 2021). Splitting on whitespace only
  (not BERT's punctuation split) keeps a pre-tokenised corpus's words (``<unk>``, ``@-@``)
  whole. A word with a character never seen in training becomes the unknown id.
* ``sentencepiece``: a SentencePiece unigram model (Kudo 2018) trained with the
  ``sentencepiece`` package, run with ``tensorflow_text.FastSentencepieceTokenizer`` (its ids
  equal the package's own ``encode``, which the tests check).

The contract every front end keeps (the subword next-word search relies on it):

* ``kind``: one of :data:`KINDS`.
* ``pieces``: ``list[str]``, index = id; ``vocab_size == len(pieces)``.
* ``pad_id`` (0: never a real token), ``unk_id`` (what unknown text maps to: the corpus's own
  ``"<unk>"`` where the training text has it, as in PTB and WikiText-2, else id 1 ``"[UNK]"``),
  ``eos_id`` (the end of a line, ``"<eos>"``; never produced from text by ``encode``: the
  stream functions append it after every line).
* ``encode(text)``: ``str``, a list of ``str`` or a ``tf.string`` tensor ``(batch,)`` ->
  ``tf.RaggedTensor`` int32 ``(batch, (tokens))`` (eager, ``tf.function`` and SavedModel
  graphs alike). ``decode(ids) -> str`` inverts it up to the normalisation: white space
  collapsed to single spaces and stripped at both ends (``word`` kind: its standardisation
  too; SentencePiece kinds treat only ASCII white space as white space, other Unicode
  spaces are characters); ``eos_id`` decodes to a line break.
* ``word_start_mask()``: NumPy bool ``(vocab_size,)``, True where a piece begins a new word:
  ``word``: every real word; ``wordpiece``: pieces not starting with ``"##"``;
  ``sentencepiece``/``char``: pieces starting with U+2581. ``eos_id`` is a boundary (True);
  padding is False; ``[UNK]`` (id 1) is True for ``word`` and ``wordpiece`` (it stands for a
  whole unknown word) and False for ``sentencepiece``/``char`` (an unknown character inside
  a word).
* ``piece_text(id) -> str``: the piece's surface text without the ``"##"``/U+2581 marker.
* ``save(dir)`` / :func:`load_front_end` ``(dir)`` (reads the kind from ``front_end.json``;
  a run folder from before front ends, with only ``text.json``, loads as ``word``).
* :func:`fit_front_end` ``(kind, lines, vocab_size)`` learns one from training lines.
* Also: ``encode_lines`` (training streams), ``prompt_ids`` (``eos_id`` first, as the
  models read prompts), ``tokenize_outputs`` (the SavedModel's ``tokenize`` signature),
  ``surface_table`` (each id's text with a leading space where it starts a word: joining a
  row and stripping gives ``decode``), ``piece_names`` (how answers name ids),
  ``check_prompt`` (refuses empty and white-space-only prompts) and ``trackables``.

Comparable numbers across kinds: :func:`count_words` (whitespace words plus one end of line
per line) and :func:`count_characters` give the denominators of per-word perplexity and bits
per character (``training.evaluate``).
"""

from __future__ import annotations

import collections
import io
import json
import os

import numpy as np
import tensorflow as tf

from zoo.text import EOS_TOKEN, OOV_ID, PAD_ID, UNK_TOKEN, WordVectorizer, keep_last_tokens

KINDS = ("word", "char", "wordpiece", "sentencepiece")
CONFIG_FILE = "front_end.json"
SPM_FILE = "sentencepiece.model"
WORDPIECE_FILE = "wordpiece_vocab.txt"
PAD_PIECE = "[PAD]"
UNK_PIECE = "[UNK]"
JOINER = "##"
SPACE = "\u2581"  # SentencePiece's word-boundary marker


class FrontEndError(ValueError):
    """A front end cannot be built, loaded or used as asked; the message says why."""


def count_words(lines):
    """Words for per-word perplexity: whitespace-separated words plus one end of line per
    line (the ``<eos>`` every stream has), whatever the tokenizer. An int."""
    return sum(len(line.split()) + 1 for line in lines)


def count_characters(lines):
    """Characters for bits per character: the characters of each line with white space
    collapsed and stripped (the front ends' normalisation), plus one per line for its end.
    An int."""
    return sum(len(" ".join(line.split())) + 1 for line in lines)


def _as_text(text):
    if isinstance(text, str):
        text = [text]
    if isinstance(text, (list, tuple)):
        return tf.constant(list(text), dtype=tf.string)
    return tf.convert_to_tensor(text, dtype=tf.string)


class FrontEnd:
    """Base class: what every kind shares (module docstring). Subclasses set ``kind``,
    ``pieces``, ``unk_id``, ``eos_id`` and implement ``_encode``, ``_save`` and
    ``word_start_mask``."""

    kind = None
    pad_id = PAD_ID
    split = "subword"  # what generate and the keyboard metrics read (word: the vectoriser's)

    @property
    def vocab_size(self):
        """Number of ids, padding and unknown included (the logits' last axis)."""
        return len(self.pieces)

    @property
    def vocabulary(self):
        """``pieces`` (the name the word-level code uses)."""
        return list(self.pieces)

    @property
    def trackables(self):
        """TensorFlow objects an exported graph must track to call :meth:`encode`."""
        return []

    def encode(self, text):
        """Token ids of text, no end-of-line id added.

        Args:
            text: ``str``, list of ``str`` or ``tf.string`` ``(batch,)``.

        Returns:
            ``tf.RaggedTensor`` int32 ``(batch, (tokens))``; unknown text is ``unk_id``.
        """
        ids = self._encode(_as_text(text))
        values = tf.cast(ids.flat_values, tf.int32)
        # OOV (and a literal padding token in the text) read as the unknown token.
        values = tf.where((values == OOV_ID) | (values == PAD_ID),
                          tf.constant(self.unk_id, tf.int32), values)
        return ids.with_flat_values(values)

    def encode_lines(self, lines, batch_lines=20000):
        """One contiguous stream of ids with ``eos_id`` after every line (training data).

        Args:
            lines: list of ``str``.
            batch_lines: lines tokenised per TensorFlow call (bounds memory).

        Returns:
            ``np.ndarray`` int32 ``(tokens,)``.
        """
        parts = []
        for start in range(0, len(lines), batch_lines):
            ids = self.encode(list(lines[start:start + batch_lines]))
            eos = tf.fill([ids.nrows(), 1], tf.constant(self.eos_id, tf.int32))
            parts.append(tf.concat([ids, eos], axis=1).flat_values.numpy())
        if not parts:
            return np.zeros([0], np.int32)
        return np.concatenate(parts).astype(np.int32)

    def tokenize_outputs(self, text):
        """What a ``tokenize`` signature returns (graph mode; the same ids as :meth:`encode`).

        Args:
            text: ``tf.string`` ``(batch,)``.

        Returns:
            dict: ``ids`` int32 ``(batch, time)`` right-padded with ``pad_id`` and
            ``num_tokens`` int32 ``(batch,)``.
        """
        ids = self.encode(text)
        return {"ids": ids.to_tensor(PAD_ID), "num_tokens": tf.cast(ids.row_lengths(), tf.int32)}

    def prompt_ids(self, text, max_tokens=None):
        """Ids of prompts for next-token prediction, ``eos_id`` first (graph mode); the same
        contract as :meth:`zoo.text.WordVectorizer.prompt_ids`.

        Args:
            text: ``tf.string`` ``(batch,)``.
            max_tokens: keep only the last this many ids of each prompt.

        Returns:
            ``(ids, lengths)``: int32 ``(batch, time)`` right-padded with 0, int32
            ``(batch,)`` >= 1.
        """
        ids = self.encode(text)
        eos = tf.fill([ids.nrows(), 1], tf.constant(self.eos_id, tf.int32))
        ids = tf.concat([eos, ids], axis=1)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        return keep_last_tokens(ids.to_tensor(PAD_ID), lengths, max_tokens)

    def piece_text(self, token_id):
        """Surface text of one id, without the ``"##"`` / U+2581 marker (``""`` for padding,
        ``"\\n"`` for the end of line)."""
        token_id = int(token_id)
        if not 0 <= token_id < self.vocab_size:
            raise FrontEndError(f"id {token_id} is outside the vocabulary [0, "
                                f"{self.vocab_size}).")
        if token_id == self.pad_id:
            return ""
        if token_id == self.eos_id:
            return "\n"
        return self._strip_marker(self.pieces[token_id])

    def _strip_marker(self, piece):
        return piece

    def piece_names(self):
        """``list[str]`` by id: how an answer names each id: the piece's text without its
        marker (:meth:`piece_text`), and the piece itself for padding and end of line."""
        return [self.pieces[i] if i in (self.pad_id, self.eos_id) else self.piece_text(i)
                for i in range(self.vocab_size)]

    def surface_table(self):
        """``list[str]`` by id: each piece's text with a leading space where it starts a new
        word (``""`` for padding, ``"\\n"`` for end of line). Joining a row's entries and
        stripping gives :meth:`decode`."""
        starts = self.word_start_mask()
        table = []
        for i in range(self.vocab_size):
            text = self.piece_text(i)
            table.append(text if i in (self.pad_id, self.eos_id) or not starts[i]
                         else " " + text)
        return table

    def decode(self, ids):
        """Text of a sequence of ids (inverse of :meth:`encode` up to the normalisation).

        Args:
            ids: 1-D ints (list, NumPy or tensor).

        Returns:
            ``str``; ``eos_id`` becomes a line break, padding is skipped.
        """
        ids = np.asarray(ids).reshape(-1)
        table = self.surface_table()
        text = "".join(table[int(i)] for i in ids)
        return "\n".join(" ".join(line.split()) for line in text.split("\n"))

    def check_prompt(self, text):
        """Refuse a prompt that gives no tokens; returns its ids (``list[int]``) otherwise.

        Raises:
            FrontEndError: the prompt is empty; it has only white space (``str.isspace``,
                Unicode's: every front end drops it); or only characters this front end
                drops (none of today's kinds drop more than white space, but a
                standardisation may).
        """
        if not text:
            raise FrontEndError("The prompt is empty: send some text to continue.")
        if not text.strip():
            raise FrontEndError(f"The prompt {text!r} has only white space, which the "
                                f"{self.kind} tokenizer drops: send some words.")
        ids = self.encode(text)[0].numpy().tolist()
        if not ids:
            raise FrontEndError(f"The prompt {text!r} has only characters the {self.kind} "
                                "tokenizer drops: send some words.")
        return ids

    def save(self, directory):
        """Write the front end into ``directory`` (``front_end.json`` plus the kind's
        files)."""
        os.makedirs(directory, exist_ok=True)
        config = {"kind": self.kind, **self._save(directory)}
        with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(config, f)


class WordFrontEnd(FrontEnd):
    """The ``word`` kind: a :class:`zoo.text.WordVectorizer` behind the front-end interface
    (ids identical to it; its ``split`` may be ``"character"`` for the character corpora).

    Args:
        vectorizer: a :class:`zoo.text.WordVectorizer`.
    """

    kind = "word"

    def __init__(self, vectorizer):
        self.vectorizer = vectorizer
        self.pieces = vectorizer.vocabulary
        self.unk_id = vectorizer.unk_id
        self.eos_id = vectorizer.eos_id
        self.split = vectorizer.split
        self.standardize = vectorizer.standardize
        self.eos_token = vectorizer.eos_token
        self.layer = vectorizer.layer

    @property
    def trackables(self):
        return [self.vectorizer.layer]

    def _encode(self, text):
        ids = self.vectorizer.layer(text)
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids, padding=PAD_ID)
        return ids

    def encode_lines(self, lines, batch_lines=None):
        return self.vectorizer.encode_lines(lines)

    def prompt_ids(self, text, max_tokens=None):
        return self.vectorizer.prompt_ids(text, max_tokens)

    def word_start_mask(self):
        mask = np.ones([self.vocab_size], bool)
        mask[PAD_ID] = False
        if self.split == "character":  # a character model: a word ends at a space
            mask[:] = False
            if " " in self.pieces:
                mask[self.pieces.index(" ")] = True
        mask[self.eos_id] = True
        return mask

    def piece_text(self, token_id):
        if self.split == "character" and int(token_id) not in (self.pad_id, self.eos_id):
            return self.pieces[int(token_id)]
        return super().piece_text(token_id)

    def surface_table(self):
        if self.split != "character":
            return super().surface_table()
        return ["" if i == self.pad_id else "\n" if i == self.eos_id else self.pieces[i]
                for i in range(self.vocab_size)]

    def _save(self, directory):
        self.vectorizer.save(directory)
        return {}

    @classmethod
    def fit(cls, lines, vocab_size=None, standardize="none", split="whitespace", min_count=1):
        """Fit a :class:`zoo.text.WordVectorizer` (``vocab_size`` ids in all, padding and
        ``[UNK]`` included; None keeps every word)."""
        max_tokens = None if vocab_size is None else vocab_size - 2
        return cls(WordVectorizer.fit(lines, standardize, max_tokens=max_tokens,
                                      min_count=min_count, split=split))


def _specials(lines):
    """Reserved pieces: padding, unknown, end of line, and the corpus's own ``<unk>`` word
    when the training text has it (PTB, WikiText-2), so it stays one token."""
    has_unk = any(UNK_TOKEN in line.split() for line in lines)
    return [PAD_PIECE, UNK_PIECE, EOS_TOKEN] + ([UNK_TOKEN] if has_unk else [])


def _check_vocab_size(kind, vocab_size, specials):
    if vocab_size is None or int(vocab_size) != vocab_size:
        raise FrontEndError(f"The {kind} front end needs an integer --vocab-size, got "
                            f"{vocab_size!r}.")
    if vocab_size < len(specials) + 1:
        raise FrontEndError(
            f"--vocab-size {vocab_size} is too small for the {kind} front end: its special "
            f"tokens {specials} take {len(specials)} ids; ask for at least "
            f"{len(specials) + 1}.")


class WordPieceFrontEnd(FrontEnd):
    """The ``wordpiece`` kind (module docstring).

    Args:
        pieces: the vocabulary, index = id: ``[PAD]``, ``[UNK]``, ``<eos>``, optionally
            ``<unk>``, then the learned pieces (word-initial ones plain, the others with
            ``"##"`` in front).
    """

    kind = "wordpiece"

    def __init__(self, pieces):
        import tensorflow_text as tf_text

        pieces = [str(p) for p in pieces]
        if pieces[:3] != [PAD_PIECE, UNK_PIECE, EOS_TOKEN]:
            raise FrontEndError(f"A WordPiece vocabulary must start with {PAD_PIECE}, "
                                f"{UNK_PIECE}, {EOS_TOKEN}; got {pieces[:3]}.")
        if len(set(pieces)) != len(pieces):
            raise FrontEndError("The WordPiece vocabulary has duplicate pieces.")
        self.pieces = pieces
        self.eos_id = 2
        self.unk_id = pieces.index(UNK_TOKEN) if UNK_TOKEN in pieces else OOV_ID
        self._words = tf_text.WhitespaceTokenizer()
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=pieces, suffix_indicator=JOINER, token_out_type=tf.int32,
            unknown_token=UNK_PIECE, no_pretokenization=True, support_detokenization=False)

    @property
    def trackables(self):
        return [self._words, self._wordpiece]

    def _encode(self, text):
        words = self._words.tokenize(text)  # (batch, (words))
        return self._wordpiece.tokenize(words).merge_dims(-2, -1)

    def word_start_mask(self):
        mask = np.array([not p.startswith(JOINER) for p in self.pieces])
        mask[PAD_ID] = False  # [UNK] replaces a whole word: a word start
        return mask

    def _strip_marker(self, piece):
        return piece[len(JOINER):] if piece.startswith(JOINER) else piece

    def _save(self, directory):
        with open(os.path.join(directory, WORDPIECE_FILE), "w", encoding="utf-8") as f:
            f.write("\n".join(self.pieces) + "\n")
        return {"vocabulary_file": WORDPIECE_FILE}

    @classmethod
    def _load(cls, directory, config):
        with open(os.path.join(directory, config["vocabulary_file"]), encoding="utf-8") as f:
            return cls(f.read().split("\n")[:-1])

    @classmethod
    def fit(cls, lines, vocab_size):
        """Learn at most ``vocab_size`` pieces (specials included) from training lines.

        Uses tensorflow-text's WordPiece learner (``wordpiece_tokenizer_learner_lib.learn``,
        the core of ``bert_vocab_from_dataset``) on whitespace word counts. The learner
        returns fewer pieces than asked (its thresholds are searched, not exact).

        Raises:
            FrontEndError: ``vocab_size`` too small for the specials, or larger than the
                text supports (more than its distinct words and characters).
        """
        from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib

        specials = _specials(lines)
        _check_vocab_size("wordpiece", vocab_size, specials)
        counts = collections.Counter(w for line in lines for w in line.split())
        for token in specials:
            counts.pop(token, None)
        if not counts:
            raise FrontEndError("Cannot learn a WordPiece vocabulary: the text has no words.")
        chars = {c for w in counts for c in w}
        most = len(specials) + len(counts) + 2 * len(chars)
        if vocab_size > most:
            raise FrontEndError(
                f"--vocab-size {vocab_size} is larger than this text supports for wordpiece "
                f"(at most {most}: {len(counts)} distinct words, {len(chars)} characters as "
                f"initial and '##' pieces, {len(specials)} specials); ask for fewer.")
        learned = wordpiece_tokenizer_learner_lib.learn(
            sorted(counts.items()), vocab_size, specials,
            upper_thresh=max(counts.values()) + 1, lower_thresh=1 if len(lines) < 5000 else 10)
        return cls(learned)


class SentencePieceFrontEnd(FrontEnd):
    """The ``sentencepiece`` (unigram) and ``char`` kinds (module docstring).

    Args:
        model_proto: ``bytes`` of a serialized SentencePiece model whose ids 0, 1, 2 are
            ``[PAD]``, ``[UNK]``, ``<eos>`` (as :meth:`fit` trains it).
        kind: ``"sentencepiece"`` or ``"char"``.
    """

    def __init__(self, model_proto, kind="sentencepiece"):
        import sentencepiece
        import tensorflow_text as tf_text

        if kind not in ("sentencepiece", "char"):
            raise FrontEndError(f"SentencePieceFrontEnd kind must be sentencepiece or char, "
                                f"got {kind!r}.")
        self.kind = kind
        self.model_proto = bytes(model_proto)
        self.processor = sentencepiece.SentencePieceProcessor(model_proto=self.model_proto)
        self.pieces = [self.processor.id_to_piece(i)
                       for i in range(self.processor.get_piece_size())]
        if self.pieces[:3] != [PAD_PIECE, UNK_PIECE, EOS_TOKEN]:
            raise FrontEndError(f"This SentencePiece model's ids 0-2 are {self.pieces[:3]}, "
                                f"not {PAD_PIECE}, {UNK_PIECE}, {EOS_TOKEN}: train it with "
                                "fit_front_end.")
        self.eos_id = 2
        self.unk_id = self.pieces.index(UNK_TOKEN) if UNK_TOKEN in self.pieces else OOV_ID
        self._tokenizer = tf_text.FastSentencepieceTokenizer(self.model_proto)

    @property
    def trackables(self):
        return []  # the model is a constant captured by the graph; nothing to track

    def _encode(self, text):
        return self._tokenizer.tokenize(text)

    def word_start_mask(self):
        mask = np.array([p.startswith(SPACE) for p in self.pieces])
        mask[self.eos_id] = True
        return mask

    def _strip_marker(self, piece):
        return piece[1:] if piece.startswith(SPACE) else piece

    def _save(self, directory):
        with open(os.path.join(directory, SPM_FILE), "wb") as f:
            f.write(self.model_proto)
        return {"model_file": SPM_FILE}

    @classmethod
    def _load(cls, directory, config):
        with open(os.path.join(directory, config["model_file"]), "rb") as f:
            return cls(f.read(), kind=config["kind"])

    @classmethod
    def fit(cls, lines, vocab_size, kind="sentencepiece"):
        """Train a SentencePiece model on training lines with the ``sentencepiece`` package.

        Unigram (``kind="sentencepiece"``) or ``char`` model; identity normalisation (the text
        is kept as is, white space collapsed), every training character covered, ids 0-2
        ``[PAD]``, ``[UNK]``, ``<eos>`` and ``<unk>`` as one piece when the text has it.
        For ``char``, ``vocab_size`` None takes every character of the text.

        Raises:
            FrontEndError: ``vocab_size`` too small for the specials, or larger than the
                text supports (SentencePiece's own limit, quoted).
        """
        import sentencepiece

        specials = _specials(lines)
        text = [line for line in lines if line.strip()]
        if not text:
            raise FrontEndError("Cannot train SentencePiece: the text has no words.")
        chars = {c for line in text for c in line if not c.isspace()}
        if kind == "char":
            most = len(specials) + len(chars) + 1  # + the space piece
            if vocab_size is None:
                vocab_size = most
            _check_vocab_size(kind, vocab_size, specials)
            if vocab_size > most:
                raise FrontEndError(
                    f"--vocab-size {vocab_size} is larger than this text supports for char "
                    f"(at most {most}: {len(chars)} characters, the space, {len(specials)} "
                    "specials); ask for fewer or leave it out.")
        else:
            _check_vocab_size(kind, vocab_size, specials)
        model = io.BytesIO()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=iter(text), model_writer=model, vocab_size=int(vocab_size),
                model_type="char" if kind == "char" else "unigram",
                pad_id=0, pad_piece=PAD_PIECE, unk_id=1, unk_piece=UNK_PIECE, bos_id=-1,
                eos_id=-1, user_defined_symbols=specials[2:], normalization_rule_name="identity",
                character_coverage=1.0, hard_vocab_limit=kind != "char", minloglevel=2,
                num_threads=1, input_sentence_size=0, max_sentence_length=1 << 16)
        except RuntimeError as err:
            raise FrontEndError(f"SentencePiece cannot train a {vocab_size}-piece {kind} "
                                f"model on this text: {err}") from None
        return cls(model.getvalue(), kind=kind)


class TokenizerModule(tf.Module):
    """A ``tf.Module`` with one ``tokenize`` function: the graph a SavedModel or a LiteRT
    ``tokenizer.tflite`` carries for a front end.

    ``tokenize(text)``: ``text`` ``tf.string`` ``(batch,)`` -> dict ``ids`` int32
    ``(total,)`` (every row's ids, concatenated) and ``row_splits`` int32 ``(batch + 1,)``
    (row ``i`` is ``ids[row_splits[i]:row_splits[i+1]]``): the ragged ids of
    :meth:`FrontEnd.encode` as two flat tensors, which LiteRT can return.

    Args:
        front_end: a :class:`FrontEnd`.
    """

    def __init__(self, front_end):
        super().__init__()
        self.front_end = front_end
        self.resources = list(front_end.trackables)
        self.tokenize = tf.function(
            self._tokenize, input_signature=[tf.TensorSpec([None], tf.string, name="text")])

    def _tokenize(self, text):
        ids = self.front_end.encode(text)
        return {"ids": ids.flat_values, "row_splits": tf.cast(ids.row_splits, tf.int32)}


def fit_front_end(kind, lines, vocab_size=None, **word_options):
    """Learn a front end of ``kind`` from training lines.

    Args:
        kind: one of :data:`KINDS`.
        lines: list of ``str``, the training split.
        vocab_size: ids in all (specials included); required for ``wordpiece`` and
            ``sentencepiece``; None for ``word`` keeps every word and for ``char`` every
            character.
        **word_options: ``standardize``, ``split``, ``min_count`` for the ``word`` kind.

    Returns:
        A :class:`FrontEnd`.

    Raises:
        FrontEndError: unknown kind, or a vocabulary size the text cannot give.
    """
    if kind not in KINDS:
        raise FrontEndError(f"Unknown tokenizer kind {kind!r}; choose one of "
                            f"{', '.join(KINDS)}.")
    if kind == "word":
        if vocab_size is not None and vocab_size < 3:
            raise FrontEndError(f"--vocab-size {vocab_size} is too small for the word front "
                                "end: padding, [UNK] and <eos> take 3 ids.")
        return WordFrontEnd.fit(lines, vocab_size, **word_options)
    if kind == "wordpiece":
        return WordPieceFrontEnd.fit(lines, vocab_size)
    return SentencePieceFrontEnd.fit(lines, vocab_size, kind=kind)


def load_front_end(directory):
    """Load the front end saved in ``directory`` (kind from ``front_end.json``; a folder
    with only the word vectoriser's ``text.json`` loads as ``word``).

    Raises:
        FileNotFoundError: no front end in ``directory``.
        FrontEndError: an unknown kind in ``front_end.json``.
    """
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.exists(path):
        return WordFrontEnd(WordVectorizer.load(directory))
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    kind = config.get("kind")
    if kind == "word":
        return WordFrontEnd(WordVectorizer.load(directory))
    if kind == "wordpiece":
        return WordPieceFrontEnd._load(directory, config)
    if kind in ("sentencepiece", "char"):
        return SentencePieceFrontEnd._load(directory, config)
    raise FrontEndError(f"{path} names an unknown tokenizer kind {kind!r}; this version "
                        f"knows {', '.join(KINDS)}.")


def as_front_end(obj):
    """A :class:`FrontEnd` for ``obj``: itself, or a :class:`zoo.text.WordVectorizer`
    wrapped as the ``word`` kind."""
    if isinstance(obj, FrontEnd):
        return obj
    if isinstance(obj, WordVectorizer):
        return WordFrontEnd(obj)
    raise TypeError(f"Expected a FrontEnd or WordVectorizer, got {type(obj).__name__}.")
