"""Keyboard metrics for next-word prediction: top-k accuracy and keystroke savings.

Perplexity says how much probability a model gives the text; a keyboard user sees something
else: a strip of 3 suggested words above the keys. This module measures that, from the
model's next-token distributions, in pure NumPy (it imports neither TensorFlow nor Keras):

* **top-1 / top-3 accuracy** of the next token over all targets: the fraction of positions
  where the true next token is the most probable one / among the 3 most probable ones.
  Hard et al. (2018), "Federated Learning for Mobile Keyboard Prediction" (arXiv:1811.03604),
  report these as top-1 and top-3 *recall* for Gboard's next-word suggestions.
* **keystroke savings rate** (KSR): the fraction of keystrokes a user saves by tapping
  suggestions instead of typing words out, ``(keys without - keys with prediction) / keys
  without``, the usual figure of merit of word prediction in the text-entry literature
  (e.g. Trnka & McCoy 2008, "Evaluating word prediction: framing keystroke savings", ACL-08
  short papers; Fowler et al. 2015, "Effects of language modeling and its personalization
  on touchscreen typing performance", CHI 2015). The exact keystroke model used here is in
  :class:`KeyboardMetrics`.

:class:`KeyboardMetrics` accumulates over chunks of positions, so a long test text never
has to be held as one ``(tokens, vocab_size)`` array.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

#: Probabilities below this are raised to it before the log, so a target the model gives
#: probability 0 (float32 underflow) costs -log(1e-30) = 69.1 nats instead of infinity.
PROB_FLOOR = 1e-30

# Rows per internal slice of update(): bounds the temporaries to about 2**22 elements per
# (rows, vocab_size) array, whatever chunk size the caller passes.
_SLICE_ELEMENTS = 1 << 22


class KeyboardMetrics:
    """Accumulates perplexity, top-1 / top-k accuracy and keystroke savings over positions.

    Args:
        vocabulary: list of ``str`` tokens by id (``vocabulary[i]`` is the token of id
            ``i``), e.g. ``WordVectorizer.vocabulary``: id 0 ``""`` (padding), id 1
            ``"[UNK]"``, then the words; it may contain ``"<eos>"`` and ``"<unk>"``.
        special_ids: iterable of ids that are never suggested and never counted as typed
            words (padding, ``"[UNK]"``, ``"<unk>"``, ``"<eos>"``). They still count as
            targets for perplexity and top-k accuracy.
        k: the number of suggestions in the strip, and the ``k`` of top-k accuracy
            (default 3, as Gboard's strip).
        keystrokes: compute the keystroke figures (default True). False for character-level
            models, where "words" are characters and a suggestion strip is meaningless; the
            keystroke fields of :meth:`result` are then None.

    Raises:
        ValueError: an empty vocabulary, ``k < 1``, or a special id outside
            ``[0, len(vocabulary))``.

    **Accuracy.** At every position, the true next id ``t`` is a top-1 hit if it is the
    argmax of the full distribution and a top-k hit if it is among the ``k`` most probable
    ids of the full distribution (special ids included: this is the model's accuracy, as
    with ``keras.metrics.SparseTopKCategoricalAccuracy``). Ties are broken by lower id: ``t``
    ranks after every id ``i`` with ``p[i] > p[t]``, or ``p[i] == p[t]`` and ``i < t``.

    **Perplexity.** ``exp(mean over positions of -log max(p[t], PROB_FLOOR))``, the mean in
    nats per token.

    **Keystroke savings.** Only targets that are not special ids are *typed words*; the
    others (end of line, unknown word, padding) are neither typed nor suggested. A
    *candidate* is a vocabulary entry whose id is not special.

    * Without prediction a word ``w`` costs ``len(w) + 1`` keystrokes: its characters
      (Unicode code points) and a space.
    * *Next-word* strip: before the word is begun, the strip shows the ``k`` most probable
      candidates (ties by lower id). If ``w`` is among them it costs 1 keystroke (the tap,
      which also inserts the space); otherwise ``len(w) + 1``.
    * *Prefix* strip (word completion): after each typed character the strip is recomputed
      as the ``k`` most probable candidates that start with the characters typed so far.
      With ``j`` characters typed (``j = 0 .. len(w) - 1``; ``j = 0`` is the next-word strip)
      and ``w`` in the strip, the user taps it: the word costs ``j + 1`` keystrokes, for the
      smallest such ``j``. If ``w`` is never in the strip it costs ``len(w) + 1``. The
      probabilities are the *same* next-word distribution, restricted to the prefix: a
      keyboard cannot re-run a word-level model per character (that needs a character or
      subword model), so this is the completion a word-level model offers.
    * ``KSR = 1 - keystrokes_with_strip / keystrokes_without``, one figure per strip
      (``ksr_next_word``, ``ksr_prefix``). A word taken from the strip saves its remaining
      characters; a word not taken costs what it costs without prediction, so
      ``0 <= ksr_next_word <= ksr_prefix < 1``.

    Prefix ranks are exact and fast: the candidates are sorted by string once; the
    candidates that start with a prefix are a contiguous range of that order (found with
    :func:`bisect`), and ``w`` is in a prefix's strip iff fewer than ``k`` candidates of
    the range beat it, which a cumulative sum over the sorted order counts for every prefix
    at once.

    Example::

        m = KeyboardMetrics(vectorizer.vocabulary, {0, 1, vectorizer.eos_id})
        for probs, targets in chunks:        # float (n, V), int (n,)
            m.update(probs, targets)
        m.result()["ksr_prefix"]
    """

    def __init__(self, vocabulary, special_ids, k=3, keystrokes=True):
        self.vocabulary = [str(t) for t in vocabulary]
        size = len(self.vocabulary)
        if size < 1:
            raise ValueError("KeyboardMetrics needs a non-empty vocabulary.")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}.")
        self.k = int(k)
        self.keystrokes = bool(keystrokes)
        special = sorted({int(i) for i in special_ids})
        bad = [i for i in special if not 0 <= i < size]
        if bad:
            raise ValueError(f"special_ids {bad} are outside the vocabulary's ids "
                             f"[0, {size}).")
        self.special_ids = tuple(special)
        self._special = np.zeros(size, bool)
        self._special[special] = True
        self._nats = 0.0
        self._tokens = 0
        self._top1 = 0
        self._topk = 0
        self._typed = 0
        self._without = 0
        self._next_word = 0
        self._prefix = 0
        if self.keystrokes:
            self._index_prefixes()

    @property
    def vocab_size(self):
        """Number of ids (the distributions' last axis)."""
        return len(self.vocabulary)

    def _index_prefixes(self):
        """Sort the candidates by string and find, for every candidate ``w`` and every
        ``j``, the range of sorted positions of the candidates that start with ``w[:j]``."""
        candidates = [i for i in range(self.vocab_size) if not self._special[i]]
        order = sorted(candidates, key=lambda i: (self.vocabulary[i], i))
        words = [self.vocabulary[i] for i in order]
        self._sorted_ids = np.asarray(order, np.int64)
        self._sorted_pos = np.full(self.vocab_size, -1, np.int64)
        self._sorted_pos[self._sorted_ids] = np.arange(len(order))
        self._lengths = np.asarray([len(w) for w in words], np.int64)
        ranges = {}  # prefix -> (lo, hi)
        per_word = []
        for w in words:
            spans = []
            for j in range(len(w)):
                prefix = w[:j]
                span = ranges.get(prefix)
                if span is None:
                    # Truncating every string to j characters keeps the sorted order, so
                    # the candidates starting with `prefix` are one contiguous range.
                    key = (lambda s, j=j: s[:j])
                    span = (bisect.bisect_left(words, prefix, key=key),
                            bisect.bisect_right(words, prefix, key=key))
                    ranges[prefix] = span
                spans.append(span)
                if span[1] - span[0] <= self.k:
                    break  # the range fits in the strip: w is shown at this j at the latest
            per_word.append(spans)
        width = max([len(s) for s in per_word], default=0) or 1
        self._depth = np.asarray([len(s) for s in per_word], np.int64)
        self._lo = np.zeros((len(words), width), np.int64)
        self._hi = np.zeros((len(words), width), np.int64)
        for row, spans in enumerate(per_word):
            if spans:
                self._lo[row, :len(spans)], self._hi[row, :len(spans)] = zip(*spans)

    def update(self, probs, targets):
        """Add ``n`` positions.

        Args:
            probs: float array ``(n, vocab_size)``, the model's next-token distribution at
                each position (rows should sum to 1; they are not renormalised).
            targets: int array ``(n,)``, the true next id at each position.

        Raises:
            ValueError: ``probs`` is not 2-D with ``vocab_size`` columns; ``targets`` is
                not a 1-D integer array of ``n`` ids in ``[0, vocab_size)``; ``probs`` has
                negative or non-finite values. Nothing is accumulated then.
        """
        probs = np.asarray(probs)
        targets = np.asarray(targets)
        if probs.ndim != 2 or probs.shape[1] != self.vocab_size:
            raise ValueError(f"probs must have shape (n, {self.vocab_size}) (one distribution "
                             f"over the vocabulary per position), got {probs.shape}.")
        if targets.ndim != 1 or targets.shape[0] != probs.shape[0]:
            raise ValueError(f"targets must have shape ({probs.shape[0]},) (one id per row of "
                             f"probs), got {targets.shape}.")
        if targets.size and not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"targets must be integer ids, got dtype {targets.dtype}.")
        if targets.size == 0:
            return
        if targets.min() < 0 or targets.max() >= self.vocab_size:
            bad = targets[(targets < 0) | (targets >= self.vocab_size)][0]
            raise ValueError(f"Target id {bad} is outside the vocabulary's ids "
                             f"[0, {self.vocab_size}).")
        if not np.issubdtype(probs.dtype, np.floating):
            probs = probs.astype(np.float64)
        if not np.isfinite(probs).all() or (probs < 0).any():
            raise ValueError("probs has negative, NaN or infinite values; pass probabilities "
                             "(a softmax), not logits.")
        targets = targets.astype(np.int64)
        step = max(1, _SLICE_ELEMENTS // self.vocab_size)
        for start in range(0, targets.size, step):
            self._update_slice(probs[start:start + step], targets[start:start + step])

    def _update_slice(self, probs, targets):
        n = targets.size
        p_target = probs[np.arange(n), targets]
        self._nats += float(-np.log(np.maximum(p_target.astype(np.float64), PROB_FLOOR)).sum())
        self._tokens += n
        # beats[r, i]: id i ranks before the target of row r (higher p, or equal p, lower id).
        ids = np.arange(self.vocab_size)
        beats = probs > p_target[:, None]
        beats |= (probs == p_target[:, None]) & (ids[None, :] < targets[:, None])
        rank = beats.sum(axis=1)
        self._top1 += int((rank == 0).sum())
        self._topk += int((rank < self.k).sum())
        if not self.keystrokes:
            return
        typed = ~self._special[targets]
        if not typed.any():
            return
        pos = self._sorted_pos[targets[typed]]  # the typed words' places in sorted order
        # counts[r, c]: candidates among the first c in sorted order that beat row r's word.
        ranked = beats[typed][:, self._sorted_ids]
        counts = np.zeros((ranked.shape[0], ranked.shape[1] + 1), np.int32)
        np.cumsum(ranked, axis=1, out=counts[:, 1:])
        lo, hi = self._lo[pos], self._hi[pos]  # (m, depth): prefix ranges, j = 0, 1, ...
        in_strip = (np.take_along_axis(counts, hi, axis=1)
                    - np.take_along_axis(counts, lo, axis=1)) < self.k
        in_strip &= np.arange(lo.shape[1])[None, :] < self._depth[pos][:, None]
        length = self._lengths[pos]
        first = np.where(in_strip.any(axis=1), in_strip.argmax(axis=1), length)
        self._typed += int(pos.size)
        self._without += int((length + 1).sum())
        self._next_word += int(np.where(in_strip[:, 0], 1, length + 1).sum())
        self._prefix += int((first + 1).sum())

    def result(self):
        """The metrics so far.

        Returns:
            dict with ``perplexity`` (exp of the mean nats per token), ``top1_accuracy``,
            ``top{k}_accuracy`` (``top3_accuracy`` for ``k=3``), ``ksr_next_word``,
            ``ksr_prefix`` (fractions in [0, 1]), ``tokens`` (positions), ``typed_words``,
            ``keystrokes_without``, ``keystrokes_next_word``, ``keystrokes_prefix``. The
            keystroke fields are None with ``keystrokes=False``, and the two KSR fields are
            None when no typed word was seen.

        Raises:
            ValueError: nothing was accumulated (no position passed to :meth:`update`).
        """
        if self._tokens == 0:
            raise ValueError("KeyboardMetrics.result(): nothing accumulated yet; call "
                             "update() with at least one position first.")
        out = {
            "perplexity": math.exp(self._nats / self._tokens),
            "top1_accuracy": self._top1 / self._tokens,
            f"top{self.k}_accuracy": self._topk / self._tokens,
            "ksr_next_word": None,
            "ksr_prefix": None,
            "tokens": self._tokens,
            "typed_words": None,
            "keystrokes_without": None,
            "keystrokes_next_word": None,
            "keystrokes_prefix": None,
        }
        if self.keystrokes:
            out.update(typed_words=self._typed, keystrokes_without=self._without,
                       keystrokes_next_word=self._next_word, keystrokes_prefix=self._prefix)
            if self._without:
                out["ksr_next_word"] = 1.0 - self._next_word / self._without
                out["ksr_prefix"] = 1.0 - self._prefix / self._without
        return out
