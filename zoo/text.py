"""Word-level text front end: raw strings -> token ids -> words.

One object, :class:`WordVectorizer`, owns the vocabulary and the standardisation, and the
same TensorFlow string ops turn a training corpus into ids and a served prompt into ids,
so training and serving can never tokenise differently.

Index conventions (those of ``keras.layers.TextVectorization``): id 0 is padding ``""``,
id 1 is the out-of-vocabulary token ``"[UNK]"``, ids 2.. are the vocabulary, most frequent
first. An end-of-line token (``"<eos>"``, as in the Mikolov PTB setup) ends every line.
"""

from __future__ import annotations

import collections
import json
import os

import keras
import numpy as np
import tensorflow as tf

PAD_ID = 0
OOV_ID = 1
EOS_TOKEN = "<eos>"
UNK_TOKEN = "<unk>"

STANDARDIZE_MODES = ("none", "lower_punct")
SPLITS = ("whitespace", "character")


def standardize_lower_punct(text):
    """Lower-case and cut punctuation off words: ``"Hello, World!" -> "hello ,  world ! "``.

    Args:
        text: ``tf.string`` tensor of any shape.

    Returns:
        ``tf.string`` tensor of the same shape. Every character that is neither a letter, a
        digit nor white space becomes a token of its own (Unicode-aware, RE2 ``\\pL``/``\\pN``).
    """
    text = tf.strings.lower(text, encoding="utf-8")
    return tf.strings.regex_replace(text, r"([^\pL\pN\s])", r" \1 ")


def _standardizer(mode):
    if mode == "none":
        return None
    if mode == "lower_punct":
        return standardize_lower_punct
    raise ValueError(f"Unknown standardize mode {mode!r}; expected one of {STANDARDIZE_MODES}.")


def tokenize(lines, standardize="none", split="whitespace"):
    """Split lines into tokens with the vectoriser's standardisation, in TensorFlow.

    Args:
        lines: list of ``str``.
        standardize: ``"none"`` (for pre-tokenised corpora such as PTB and WikiText-2) or
            ``"lower_punct"`` (see :func:`standardize_lower_punct`).
        split: ``"whitespace"`` (words) or ``"character"`` (Unicode characters, spaces
            included; character-level models).

    Returns:
        ``tf.RaggedTensor`` of ``tf.string``, shape ``(lines, (tokens))``.

    Raises:
        ValueError: unknown ``standardize`` or ``split``.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
    text = tf.constant(list(lines), dtype=tf.string)
    fn = _standardizer(standardize)
    if fn is not None:
        text = fn(text)
    if split == "character":
        return tf.strings.unicode_split(text, "UTF-8")
    return tf.strings.split(text)


def keep_last_tokens(ids, lengths, max_tokens=None):
    """Keep only the last ``max_tokens`` real ids of each right-padded row (graph mode).

    Args:
        ids: int32 ``(batch, time)``, right-padded with ``PAD_ID``.
        lengths: int32 ``(batch,)``, real ids per row.
        max_tokens: int or None (None: unchanged).

    Returns:
        ``(ids, lengths)``: int32 ``(batch, min(time, max_tokens))`` left-aligned and
        right-padded, and int32 ``(batch,)`` ``min(lengths, max_tokens)``.
    """
    if max_tokens is None:
        return ids, lengths
    width = tf.minimum(tf.shape(ids)[1], max_tokens)
    start = tf.maximum(lengths - max_tokens, 0)
    positions = tf.minimum(start[:, None] + tf.range(width)[None, :], tf.shape(ids)[1] - 1)
    ids = tf.where(tf.range(width)[None, :] < tf.minimum(lengths, max_tokens)[:, None],
                   tf.gather(ids, positions, batch_dims=1), PAD_ID)
    return ids, tf.minimum(lengths, max_tokens)


class WordVectorizer:
    """Vocabulary plus standardisation, wrapping ``keras.layers.TextVectorization``.

    Args:
        vocabulary: list of ``str`` tokens, most frequent first, without ``""`` and
            ``"[UNK]"`` (they are added at ids 0 and 1). Must contain ``eos_token``.
        standardize: ``"none"`` or ``"lower_punct"`` (see :func:`tokenize`).
        eos_token: the end-of-line token, default ``"<eos>"`` (``"\n"`` for characters).
        split: ``"whitespace"`` (word level, default) or ``"character"`` (character level:
            tokens are characters and the end of a line is the newline character).

    Raises:
        ValueError: empty vocabulary, duplicates, a missing ``eos_token`` or an unknown
            standardize mode.

    If the vocabulary has ``"<unk>"`` (PTB, WikiText-2), words unseen in training map to it,
    so the model sees the same token it was trained on for rare words.
    """

    def __init__(self, vocabulary, standardize="none", eos_token=EOS_TOKEN, split="whitespace"):
        vocabulary = [str(t) for t in vocabulary]
        if not vocabulary:
            raise ValueError("The vocabulary is empty: fit it on a corpus with some text first.")
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("The vocabulary has duplicate tokens.")
        reserved = {"", "[UNK]"} & set(vocabulary)
        if reserved:
            raise ValueError(f"The vocabulary must not contain the reserved tokens {reserved} "
                             "(padding and out-of-vocabulary ids 0 and 1).")
        if eos_token not in vocabulary:
            raise ValueError(f"The vocabulary must contain the end-of-line token {eos_token!r}.")
        _standardizer(standardize)
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
        self.standardize = standardize
        self.eos_token = eos_token
        self.split = split
        self.layer = keras.layers.TextVectorization(
            standardize=_standardizer(standardize),
            split=split,
            output_mode="int",
            vocabulary=vocabulary,
            name="text_vectorization",
        )
        self.layer.build((None,))
        self._vocabulary = list(self.layer.get_vocabulary())
        self.eos_id = self._vocabulary.index(eos_token)
        self.unk_id = self._vocabulary.index(UNK_TOKEN) if UNK_TOKEN in vocabulary else OOV_ID

    @property
    def vocabulary(self):
        """All tokens by id: ``["", "[UNK]", most frequent, ...]``."""
        return list(self._vocabulary)

    @property
    def vocab_size(self):
        """Number of ids, padding and OOV included (the size of the logits' last axis)."""
        return len(self._vocabulary)

    @classmethod
    def fit(cls, lines, standardize="none", max_tokens=None, min_count=1, eos_token=None,
            split="whitespace"):
        """Build a vocabulary from training lines.

        Args:
            lines: list of ``str``, the training split.
            standardize: see :func:`tokenize`.
            max_tokens: keep at most this many tokens (``eos_token`` always kept); None: all.
            min_count: drop tokens seen fewer times than this.
            eos_token: appended once per line and always in the vocabulary; default
                ``"<eos>"``, or ``"\n"`` with ``split="character"``.
            split: ``"whitespace"`` or ``"character"``.

        Returns:
            A :class:`WordVectorizer`. Ties in frequency are broken alphabetically, so the
            same lines always give the same ids.

        Raises:
            ValueError: no tokens in ``lines``.
        """
        if eos_token is None:
            eos_token = "\n" if split == "character" else EOS_TOKEN
        tokens = tokenize(lines, standardize, split).flat_values.numpy()
        if tokens.size == 0:
            raise ValueError("Cannot fit a vocabulary: the text has no tokens.")
        counts = collections.Counter(t.decode("utf-8") for t in tokens)
        counts.pop("[UNK]", None)  # a literal "[UNK]" in the text is the OOV id, not a word
        counts[eos_token] += len(lines)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        vocab = [t for t, c in ranked if c >= min_count or t == eos_token]
        if max_tokens is not None and len(vocab) > max_tokens:
            vocab = vocab[:max_tokens]
            if eos_token not in vocab:
                vocab[-1] = eos_token
        return cls(vocab, standardize=standardize, eos_token=eos_token, split=split)

    def encode_lines(self, lines):
        """Turn lines into one contiguous id stream with ``<eos>`` after every line.

        Args:
            lines: list of ``str``.

        Returns:
            ``np.ndarray`` of int32, shape ``(tokens,)``.
        """
        ids = self.layer(tf.constant(list(lines), dtype=tf.string))
        ragged = tf.RaggedTensor.from_tensor(ids, padding=PAD_ID) if not isinstance(
            ids, tf.RaggedTensor) else ids
        eos = tf.fill([ragged.nrows(), 1], tf.constant(self.eos_id, ragged.dtype))
        stream = tf.concat([ragged, tf.RaggedTensor.from_tensor(eos)], axis=1).flat_values
        stream = tf.where(stream == OOV_ID, tf.cast(self.unk_id, stream.dtype), stream)
        return stream.numpy().astype(np.int32)

    def prompt_ids(self, text, max_tokens=None):
        """Ids of prompts for next-word prediction, in graph mode (used by the export).

        An ``<eos>`` is put in front of every prompt, so a prompt reads as the start of a new
        line and an empty prompt asks for the first word of a line.

        Args:
            text: ``tf.string`` tensor ``(batch,)``.
            max_tokens: if set, keep only the last ``max_tokens`` ids of each prompt (bounds
                the work per request; an RNN's answer depends little on far context).

        Returns:
            ``(ids, lengths)``: ``ids`` int32 ``(batch, time)`` right-padded with 0,
            ``lengths`` int32 ``(batch,)`` the number of real tokens (>= 1) in each row.
        """
        ids = tf.cast(self.layer(text), tf.int32)
        ids = tf.where(ids == OOV_ID, tf.constant(self.unk_id, tf.int32), ids)
        eos = tf.fill([tf.shape(ids)[0], 1], tf.constant(self.eos_id, tf.int32))
        ids = tf.concat([eos, ids], axis=1)
        lengths = tf.reduce_sum(tf.cast(ids != PAD_ID, tf.int32), axis=1)
        return keep_last_tokens(ids, lengths, max_tokens)

    def save(self, directory):
        """Write ``vocab.txt`` (one token per line, ids 2..) and ``text.json``; a character
        vocabulary (it has the newline and space tokens) goes into ``text.json`` instead."""
        os.makedirs(directory, exist_ok=True)
        config = {"standardize": self.standardize, "eos_token": self.eos_token,
                  "split": self.split}
        if self.split == "character":
            config["vocabulary"] = self._vocabulary[2:]
        with open(os.path.join(directory, "vocab.txt"), "w", encoding="utf-8") as f:
            if self.split != "character":
                f.write("\n".join(self._vocabulary[2:]) + "\n")
        with open(os.path.join(directory, "text.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)

    @classmethod
    def load(cls, directory):
        """Read what :meth:`save` wrote. Raises ``FileNotFoundError`` naming the missing file."""
        vocab_path = os.path.join(directory, "vocab.txt")
        config_path = os.path.join(directory, "text.json")
        for path in (vocab_path, config_path):
            if not os.path.exists(path):
                raise FileNotFoundError(
                    f"{path} is missing: {directory} is not a training run folder "
                    "(nwp-train --output writes one)."
                )
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        vocab = config.pop("vocabulary", None)
        if vocab is None:
            with open(vocab_path, encoding="utf-8") as f:
                vocab = f.read().split("\n")[:-1]
        return cls(vocab, **config)
