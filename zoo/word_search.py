"""Whole next words from a subword model, and completion of an unfinished last word.

A subword model (WordPiece, SentencePiece, characters) predicts the next *piece*; a keyboard
wants the next *word*. :class:`WordBeamSearch` searches over piece sequences, from the
prompt's state, until a word boundary, in the TensorFlow graph (so it runs inside the
exported SavedModel), and returns whole words with their probabilities:

    P(word | context) = P(pieces | context) * P(next piece is a boundary | context, pieces)

where the pieces are one word-start piece followed by pieces that do not start a word, and a
boundary is a piece that starts a word or the end of line. This is the standard reading of a
subword model as a word model (the word ends where the next word starts); the beam keeps the
``beam_width`` most likely partial words at each length (Koehn 2004; Sutskever et al. 2014).

Completion (:meth:`WordBeamSearch.complete`, :meth:`zoo.NextWordPredictor.complete`): for a
prompt whose last word is unfinished (no trailing white space), the typed part ``prefix`` is
cut off the prompt; the answers are the words that start with it, given the context before
it, renormalised over those words:

    P(word | context, word starts with prefix) = P(word | context) / sum of P(w | context)
                                                 over the words w that start with prefix

A word model restricts its vocabulary to the words that start with the prefix (exact); a
subword model runs the same beam with only the pieces whose text agrees with the prefix.

Front ends. :class:`WordBeamSearch` needs only this of a front end: ``kind`` (str),
``pieces`` (list of str, index = id), ``word_start_mask()`` (NumPy bool ``(vocab,)``, True
for a piece that begins a new word; the end of line counts as a boundary), ``piece_text(id)``
(the piece's surface text without markers), ``eos_id``, ``pad_id``, ``unk_id`` and ``encode``
(``tf.string (batch,)`` -> int32 ``tf.RaggedTensor (batch, (pieces))``, graph-safe). If the
front end has ``prompt_ids(text, max_tokens)`` (the contract of
:meth:`zoo.text.WordVectorizer.prompt_ids`) it is used to read prompts. A prompt to
complete is first put in the form the pieces are in (:func:`standardize_prompt`), so that
the typed prefix is compared with piece texts in the same form (e.g. lower case).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from zoo.sampling import read_prompt_in_graph
from zoo.text import _standardizer

DEFAULT_BEAM_WIDTH = 8
DEFAULT_MAX_PIECES = 8

# White space as tf.strings.split (and so the word vectoriser) splits at it: RE2's \s and
# the vertical tab. _LAST_WORD matches everything up to and including the last one.
_SPACE = r"[\t\n\x0b\x0c\r ]"
_LAST_WORD = r"(?s)^.*" + _SPACE


def split_unfinished_word(text):
    """Split prompts into the context and their unfinished last word, in graph mode.

    Args:
        text: ``tf.string (batch,)``.

    Returns:
        ``(context, prefix)``, both ``tf.string (batch,)``, with ``context + prefix ==
        text``. ``prefix`` is what follows the last white space character (tab, newline,
        vertical tab, form feed, carriage return or space: where ``tf.strings.split``
        splits words); the whole text if there is none, ``""`` if the text ends in white
        space (the last word is finished).
    """
    prefix = tf.strings.regex_replace(text, _LAST_WORD, "")
    length = tf.strings.length(text) - tf.strings.length(prefix)
    context = tf.strings.substr(text, tf.zeros_like(length), length)
    return context, prefix


def _strip_end(text):
    """Prompts without trailing white space: the next word begins with its own word-start
    piece (a character model's space; WordPiece and SentencePiece drop the space anyway)."""
    return tf.strings.regex_replace(text, _SPACE + "+$", "")


def check_not_empty(text):
    """An assertion (graph and eager) that no prompt is empty; returns ``text``.

    Raises:
        tf.errors.InvalidArgumentError: a prompt is ``""`` (there is no word to complete).
    """
    empty = tf.reduce_any(tf.equal(tf.strings.length(text), 0))
    check = tf.debugging.Assert(
        tf.logical_not(empty),
        ["complete: a prompt is empty, so there is no word to complete. Send at least one "
         "character (or use serving_default for the first word of a line)."])
    with tf.control_dependencies([check]):
        return tf.identity(text)


def standardize_prompt(front_end, text):
    """Prompts in the form the vocabulary is in, before the last word is cut off.

    Args:
        front_end: a front end with ``normalize(text)`` (``tf.string`` -> ``tf.string``),
            or with a ``standardize`` mode of :mod:`zoo.text` (a
            :class:`zoo.text.WordVectorizer`: ``"none"`` or ``"lower_punct"``), or neither
            (the text is used as it is).
        text: ``tf.string (batch,)``.

    Returns:
        ``tf.string (batch,)``.
    """
    normalize = getattr(front_end, "normalize", None)
    if normalize is not None:
        return normalize(text)
    mode = getattr(front_end, "standardize", None)
    standardize = None if mode is None else _standardizer(mode)
    return text if standardize is None else standardize(text)


def starts_with(strings, prefixes):
    """bool ``(batch, n)``: ``strings[j]`` begins with ``prefixes[i]`` (compared as bytes; a
    byte prefix of valid UTF-8 is a character prefix).

    Args:
        strings: ``tf.string (n,)``.
        prefixes: ``tf.string (batch,)``.
    """
    shape = tf.stack([tf.size(prefixes), tf.size(strings)])
    length = tf.broadcast_to(tf.strings.length(prefixes)[:, None], shape)
    heads = tf.strings.substr(tf.broadcast_to(strings[None], shape), tf.zeros_like(length),
                              length)
    return tf.equal(heads, tf.broadcast_to(prefixes[:, None], shape))


class WordBeamSearch:
    """Next whole words, and completions of an unfinished word, from a subword model.

    Args:
        front_end: a text front end with the interface in the module docstring.
        model: a :class:`zoo.models.LanguageModel` with ``initial_state``/``step`` whose
            ``vocab_size`` equals ``len(front_end.pieces)``.
        beam_width: partial words kept per length, >= 1.
        max_pieces: the most pieces a word may have, >= 1 (and below a Transformer's
            ``max_length``).

    Raises:
        ValueError: vocabulary sizes differ; a bad ``beam_width`` or ``max_pieces``; a
            ``word_start_mask`` of the wrong shape; no piece can start a word.

    What is approximated (and what is not):

    * **Beam pruning.** After each piece only the ``beam_width`` most likely partial words
      (by ``P(pieces | context)``) are extended, so a word whose first pieces are unlikely
      can be missed, and its probability is then counted as 0. With ``beam_width`` at least
      the number of piece sequences of every length (``starts * continuations ** (n - 1)``)
      the search is exhaustive.
    * **Length.** Words of more than ``max_pieces`` pieces are never proposed.
    * **Piecings are merged.** A word reachable through several piece sequences (``"cat"``
      as ``"▁cat"`` or ``"▁ca" "t"``) gets the *sum* of their probabilities (the
      probability of the word, as the model defines it), over the piecings the beam found.
      So every probability returned is a lower bound of the model's exact ``P(word)``, equal
      to it when the search is exhaustive.
    * Words are compared by surface text (``piece_text`` joined; the white space a
      word-start piece may carry, such as a character model's space, is dropped).
    * A prompt is read without its trailing white space, so the next word begins with its
      own word-start piece (this matters for characters, whose space is a piece).
    * Never proposed: padding, the unknown piece (``unk_id``) and the end of line (which
      is a boundary, not a word); a word with empty surface text.
    * ``top_k`` returns the model's probabilities (no renormalisation), as the word-level
      ``serving_default`` does; ``complete`` renormalises over the completions found.
    """

    def __init__(self, front_end, model, beam_width=DEFAULT_BEAM_WIDTH,
                 max_pieces=DEFAULT_MAX_PIECES):
        pieces = list(front_end.pieces)
        vocab = len(pieces)
        if model.vocab_size != vocab:
            raise ValueError(f"The model predicts over {model.vocab_size} ids but the front "
                             f"end has {vocab} pieces: they come from different runs.")
        for name, value in (("beam_width", beam_width), ("max_pieces", max_pieces)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        positions = getattr(model, "max_length", None)
        if positions is not None and max_pieces >= positions:
            raise ValueError(f"max_pieces={max_pieces} leaves no room for the prompt in the "
                             f"model's max_length={positions} positions; give at most "
                             f"{positions - 1}.")
        starts = np.asarray(front_end.word_start_mask(), dtype=bool)
        if starts.shape != (vocab,):
            raise ValueError(f"word_start_mask() has shape {starts.shape}; expected ({vocab},).")
        special = np.zeros(vocab, bool)
        for i in (front_end.pad_id, front_end.unk_id, front_end.eos_id):
            if i is not None and 0 <= i < vocab:
                special[i] = True
        texts = [front_end.piece_text(i) for i in range(vocab)]
        # A word-start piece's own white space (a character model's " ") is not in the word.
        surface = [t.lstrip() if s else t for t, s in zip(texts, starts)]
        self.front_end, self.model = front_end, model
        if getattr(model, "stateful", False):
            self.model = model.stateless_copy()
        self.beam_width, self.max_pieces = int(beam_width), int(max_pieces)
        self.vocab_size = vocab
        self._start = tf.constant(starts & ~special)
        self._continue = tf.constant(~starts & ~special)
        boundary = starts.copy()
        boundary[front_end.eos_id] = True
        if front_end.pad_id is not None and 0 <= front_end.pad_id < vocab:
            boundary[front_end.pad_id] = False
        self._boundary = tf.constant(boundary)
        if not starts[~special].any():
            raise ValueError("No piece can start a word (word_start_mask() is False for every "
                             "piece but the special ones): the front end's mask is wrong.")
        self._surface = tf.constant(surface, tf.string)

    # -- prompts --------------------------------------------------------------------------
    def prompt_ids(self, text, max_tokens=None):
        """``<eos>`` + the front end's ids of each prompt, right-padded (the front end's own
        ``prompt_ids`` if it has one).

        Args:
            text: ``tf.string (batch,)``.
            max_tokens: keep only the last this many ids (``<eos>`` included).

        Returns:
            ``(ids, lengths)``: int32 ``(batch, time)`` padded with ``pad_id``, int32
            ``(batch,)`` real ids per row (>= 1).
        """
        own = getattr(self.front_end, "prompt_ids", None)
        if own is not None:
            return own(text, max_tokens)
        ragged = tf.cast(self.front_end.encode(text), tf.int32)
        eos = tf.fill([ragged.nrows(), 1], tf.constant(self.front_end.eos_id, tf.int32))
        ragged = tf.concat([tf.RaggedTensor.from_tensor(eos), ragged], axis=1)
        if max_tokens is not None:
            lengths = ragged.row_lengths()
            keep = tf.ragged.range(tf.maximum(lengths - max_tokens, 0), lengths)
            ragged = tf.gather(ragged, keep, batch_dims=1)
        return (ragged.to_tensor(default_value=self.front_end.pad_id),
                tf.cast(ragged.row_lengths(), tf.int32))

    # -- the search -------------------------------------------------------------------------
    def _row(self, row, length, prefix):
        """Candidate words of one prompt: ``(texts, log_probs)``, both ``(max_pieces *
        beam_width,)``; ``-inf`` marks no candidate."""
        beams, vocab = self.beam_width, self.vocab_size
        logits, states, _, _ = read_prompt_in_graph(self.model, row, length, self.max_pieces)
        states = [tf.repeat(s, beams, axis=0) for s in states]
        logits = tf.repeat(logits, beams, axis=0)
        scores = tf.concat([[0.0], tf.fill([beams - 1], -np.inf)], axis=0)  # one live beam
        text = tf.fill([beams], "")
        prefix_len = tf.strings.length(prefix)
        piece_len = tf.strings.length(self._surface)
        found_text, found_score = [], []
        for t in range(self.max_pieces + 1):
            log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
            # How much of the typed prefix the partial word has still to cover.
            left = tf.maximum(prefix_len - tf.strings.length(text), 0)
            if t > 0:  # the word ends here if the next piece is a boundary
                end = tf.reduce_logsumexp(tf.where(self._boundary[None], log_probs, -np.inf),
                                          axis=1)
                ok = tf.logical_and(tf.equal(left, 0), tf.not_equal(text, ""))
                found_text.append(text)
                found_score.append(tf.where(ok, scores + end, -np.inf))
            if t == self.max_pieces:
                break
            allowed = self._start if t == 0 else self._continue
            agree = tf.cond(tf.reduce_any(left > 0),  # string work only while typing
                            lambda: self._agree(prefix, prefix_len, left, piece_len),
                            lambda: tf.ones([beams, vocab], tf.bool))
            keep = tf.logical_and(allowed[None], agree)
            total = tf.where(keep, scores[:, None] + log_probs, -np.inf)
            scores, best = tf.math.top_k(tf.reshape(total, [-1]), k=beams)
            parents, tokens = best // vocab, best % vocab
            text = tf.strings.join([tf.gather(text, parents), tf.gather(self._surface, tokens)])
            states = [tf.gather(s, parents) for s in states]
            logits, states = self.model.step(tokens, states)
        return tf.concat(found_text, 0), tf.concat(found_score, 0)

    def _agree(self, prefix, prefix_len, left, piece_len):
        """bool ``(beams, vocab)``: piece ``v`` agrees with the ``left`` bytes of ``prefix``
        a beam has still to cover (one of the two starts with the other)."""
        shape = [self.beam_width, self.vocab_size]
        rest = tf.strings.substr(prefix, prefix_len - left, left)
        heads = tf.strings.substr(tf.broadcast_to(self._surface[None], shape),
                                  tf.zeros(shape, tf.int32), tf.broadcast_to(left[:, None], shape))
        typed = tf.strings.substr(tf.broadcast_to(rest[:, None], shape), tf.zeros(shape, tf.int32),
                                  tf.broadcast_to(piece_len[None], shape))
        return tf.equal(heads, typed)

    def _words(self, ids, lengths, prefixes, k, renormalise):
        """Search every row; merge piecings; the ``k`` best. See :meth:`top_k`."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}.")
        k = int(k)

        def one_row(args):
            row, length, prefix = args
            texts, scores = self._row(row, length, prefix)
            words, index = tf.unique(texts)
            if renormalise:  # relative to the best candidate, so nothing underflows to 0
                best = tf.reduce_max(scores)
                scores -= tf.where(tf.math.is_finite(best), best, 0.0)
            probs = tf.math.unsorted_segment_sum(tf.exp(scores), index, tf.shape(words)[0])
            if renormalise:
                probs = tf.math.divide_no_nan(probs, tf.reduce_sum(probs))
            words = tf.concat([words, tf.fill([k], "")], 0)  # at least k entries
            probs = tf.concat([probs, tf.zeros([k])], 0)
            values, best = tf.math.top_k(probs, k=k)
            words = tf.where(values > 0, tf.gather(words, best), "")
            return words, values

        return tf.map_fn(one_row, (ids, lengths, prefixes), fn_output_signature=(
            tf.TensorSpec([k], tf.string), tf.TensorSpec([k], tf.float32)))

    def top_k(self, text, k=5, max_prompt_tokens=None):
        """The ``k`` most likely next whole words after each prompt (graph-safe).

        Args:
            text: ``tf.string (batch,)``; each prompt is read as ending with a finished word.
            k: int >= 1.
            max_prompt_tokens: read only the last this many ids (``<eos>`` included).

        Returns:
            dict: ``words`` ``tf.string (batch, k)`` and ``probabilities`` float32
            ``(batch, k)``, most likely first; ``P(word | prompt)`` as in the class docstring
            (not renormalised). Slots past the words found hold ``""`` and 0.

        Raises:
            ValueError: ``k`` is not an int >= 1.
        """
        ids, lengths = self.prompt_ids(_strip_end(text), max_prompt_tokens)
        words, probs = self._words(ids, lengths, tf.fill(tf.shape(lengths), ""), k, False)
        return {"words": words, "probabilities": probs}

    def complete(self, text, k=5, max_prompt_tokens=None):
        """The ``k`` most likely completions of each prompt's unfinished last word.

        Args:
            text: ``tf.string (batch,)``, non-empty prompts. Standardised
                (:func:`standardize_prompt`), the last word is what follows the last white
                space (:func:`split_unfinished_word`); a prompt that ends in
                white space has an empty prefix, so every next word is a completion.
            k: int >= 1.
            max_prompt_tokens: read only the last this many ids of the context.

        Returns:
            dict: ``words`` ``tf.string (batch, k)``, whole words that start with the prefix;
            ``probabilities`` float32 ``(batch, k)``, renormalised over the completions the
            search found (see the class docstring); ``prefix`` ``tf.string (batch,)``, the
            unfinished word that was completed (in the form :func:`standardize_prompt`
            gives). A prefix that no word found starts with gives ``""`` and 0 in every
            slot.

        Raises:
            ValueError: ``k`` is not an int >= 1.
            tf.errors.InvalidArgumentError: an empty prompt.
        """
        text = check_not_empty(text)
        context, prefix = split_unfinished_word(standardize_prompt(self.front_end, text))
        ids, lengths = self.prompt_ids(_strip_end(context), max_prompt_tokens)
        words, probs = self._words(ids, lengths, prefix, k, True)
        return {"words": words, "probabilities": probs, "prefix": prefix}


def word_search_for(front_end, model, beam_width=DEFAULT_BEAM_WIDTH,
                    max_pieces=DEFAULT_MAX_PIECES):
    """The hook between a text front end and next-word answers: a :class:`WordBeamSearch`
    for a front end whose ``kind`` is not ``"word"`` (pieces must be searched to get whole
    words), None for a word-level one (its ids already are words).

    Args:
        front_end: a front end (module docstring) or a :class:`zoo.text.WordVectorizer`
            (no ``kind``: word level).
        model, beam_width, max_pieces: see :class:`WordBeamSearch`.
    """
    if getattr(front_end, "kind", "word") == "word":
        return None
    return WordBeamSearch(front_end, model, beam_width, max_pieces)
