"""The next-word predictor: text front end + language model + top-k choice.

This is the "task" of the keras-hub split (preprocessor + backbone + sampler). It is what a
training run saves and what the serving export wraps into one SavedModel.
"""

from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

import zoo.presets  # noqa: F401  (registers every model class for load_model)
from zoo.front_ends import as_front_end, load_front_end
from zoo.sampling import NEG, read_prompt_in_graph, sample_in_graph
from zoo.text import OOV_ID, PAD_ID
from zoo.word_search import (DEFAULT_BEAM_WIDTH, DEFAULT_MAX_PIECES, check_not_empty,
                             split_unfinished_word, standardize_prompt, starts_with,
                             word_search_for)

MODEL_FILE = "model.keras"


class NextWordPredictor:
    """Raw strings in, the ``k`` most likely next words and their probabilities out.

    Args:
        vectorizer: the text front end, a :class:`zoo.front_ends.FrontEnd` of any kind (a
            :class:`zoo.text.WordVectorizer` is wrapped as the ``word`` kind); kept as
            ``self.vectorizer`` and ``self.front_end``.
        model: a :class:`zoo.models.LanguageModel` whose ``vocab_size`` equals the
            front end's.
        beam_width, max_pieces: for a subword front end, the word search's
            (:class:`zoo.word_search.WordBeamSearch`); unused for words.

    Raises:
        ValueError: the two vocabulary sizes differ.

    A subword front end (``kind`` other than ``"word"``) makes :meth:`top_k` and
    :meth:`complete` answer whole words through :func:`zoo.word_search.word_search_for`
    (``self.word_search``); with a word vectoriser ``self.word_search`` is None.
    """

    def __init__(self, vectorizer, model, beam_width=DEFAULT_BEAM_WIDTH,
                 max_pieces=DEFAULT_MAX_PIECES):
        vectorizer = as_front_end(vectorizer)
        if model.vocab_size != vectorizer.vocab_size:
            raise ValueError(
                f"The model predicts over {model.vocab_size} ids but the vocabulary has "
                f"{vectorizer.vocab_size}: the model and vocabulary come from different runs."
            )
        if getattr(model, "stateful", False):
            model = model.stateless_copy()  # prompts come in batches of any size
        self.vectorizer = self.front_end = vectorizer
        self.model = model
        self._vocab = tf.constant(vectorizer.vocabulary)
        self._surface = tf.constant(vectorizer.surface_table())
        self._names = tf.constant(vectorizer.piece_names())
        # Padding and the OOV id are never proposed as a next word. (A corpus's own
        # "<unk>" token, as in PTB, is a word of its vocabulary and can be.)
        self._not_word = tf.constant([PAD_ID, OOV_ID], tf.int32)
        # A completion of a typed word is a word: never padding, [UNK], <eos> or <unk>.
        not_completion = np.zeros(vectorizer.vocab_size, bool)
        not_completion[[PAD_ID, OOV_ID, vectorizer.eos_id, vectorizer.unk_id]] = True
        self._completion = tf.constant(~not_completion)
        self.word_search = word_search_for(vectorizer, self.model, beam_width, max_pieces)

    def next_word_distribution(self, text, max_prompt_tokens=None):
        """Probabilities of the next token after the last token of each prompt.

        Args:
            text: ``tf.string`` ``(batch,)``.
            max_prompt_tokens: read only the last this many tokens of each prompt.

        Returns:
            float32 ``(batch, vocab_size)``, rows summing to 1 over the model's full softmax.
            Only the logits at each row's last real token are used, so right padding added
            for a longer prompt in the same batch cannot change a row's answer.
        """
        ids, lengths = self.vectorizer.prompt_ids(text, max_prompt_tokens)
        last = self.model.next_token_logits(ids, lengths)
        return tf.nn.softmax(tf.cast(last, tf.float32), axis=-1)

    def top_k(self, text, k=5, max_prompt_tokens=None):
        """The ``k`` most likely next words (for a subword front end, whole
        words from :class:`zoo.word_search.WordBeamSearch`).

        Args:
            text: ``tf.string`` ``(batch,)``.
            k: int, 1 <= k <= vocab_size - 2.
            max_prompt_tokens: see :meth:`next_word_distribution`.

        Returns:
            dict with ``words`` ``tf.string (batch, k)`` and ``probabilities`` float32
            ``(batch, k)``, most likely first. Probabilities are the model's (not
            renormalised after leaving out padding and ``[UNK]``). With a subword front
            end, whole words by :meth:`zoo.word_search.WordBeamSearch.top_k`.
        """
        if self.word_search is not None:
            return self.word_search.top_k(text, k, max_prompt_tokens)
        return self.top_k_tokens(text, k, max_prompt_tokens)

    def top_k_tokens(self, text, k=5, max_prompt_tokens=None):
        """The ``k`` most likely next tokens (words, or pieces' surface text without their
        ``"##"``/U+2581 marker), arguments and result as :meth:`top_k`."""
        probs = self.next_word_distribution(text, max_prompt_tokens)
        drop = tf.scatter_nd(self._not_word[:, None],
                             tf.ones_like(self._not_word, tf.float32),
                             [self.vectorizer.vocab_size])
        values, indices = tf.math.top_k(probs - 2.0 * drop, k=k)
        if self.front_end.kind == "word":
            words = tf.gather(self._vocab, indices)
        else:  # a piece's text without its marker; the end of line reads as "<eos>"
            words = tf.gather(self._names, indices)
        return {"words": words, "probabilities": tf.maximum(values, 0.0)}

    def complete(self, text, k=5, max_prompt_tokens=None):
        """The ``k`` most likely completions of each prompt's unfinished last word.

        The prompt is standardised as the vocabulary was (e.g. lower case), then cut at its
        last white space (:func:`zoo.word_search.split_unfinished_word`): the text after it
        is the typed ``prefix`` (``""`` when the prompt ends in white space: every word is
        a completion), the text before it the context. The model's next-word distribution
        after the context is restricted to the vocabulary words that start with the prefix
        and renormalised over them: ``P(w | context) / sum of P(v | context)`` over those
        words ``v``. Padding, ``[UNK]``, ``<eos>`` and ``<unk>`` are never completions.
        With a subword front end: :meth:`zoo.word_search.WordBeamSearch.complete`.

        Args:
            text: ``tf.string (batch,)``, non-empty prompts.
            k: int, 1 <= k <= vocab_size - 2.
            max_prompt_tokens: see :meth:`next_word_distribution`.

        Returns:
            dict: ``words`` ``tf.string (batch, k)``, most likely first; ``probabilities``
            float32 ``(batch, k)``, renormalised over the completions; ``prefix``
            ``tf.string (batch,)``, the (standardised) word that was completed. A prefix
            that no vocabulary word starts with gets ``""`` and 0 in every slot (the
            documented "no completion" answer).

        Raises:
            tf.errors.InvalidArgumentError: an empty prompt (nothing to complete).
            NotImplementedError: a character-level vectoriser (its tokens are characters,
                not words).
        """
        if self.word_search is not None:
            return self.word_search.complete(text, k, max_prompt_tokens)
        if self.vectorizer.split == "character":
            raise NotImplementedError("complete needs word tokens; this vectoriser splits "
                                      "into characters.")
        text = check_not_empty(text)
        context, prefix = split_unfinished_word(standardize_prompt(self.vectorizer, text))
        ids, lengths = self.vectorizer.prompt_ids(context, max_prompt_tokens)
        logits = tf.cast(self.model.next_token_logits(ids, lengths), tf.float32)
        keep = tf.logical_and(self._completion[None], starts_with(self._vocab, prefix))
        # The softmax over the kept words only is the renormalised distribution (computed
        # from the logits, so it cannot underflow to 0 for a prefix the model finds unlikely).
        probs = tf.where(keep, tf.nn.softmax(tf.where(keep, logits, NEG)), 0.0)
        values, indices = tf.math.top_k(probs, k=k)
        return {"words": tf.where(values > 0, tf.gather(self._vocab, indices), ""),
                "probabilities": values, "prefix": prefix}

    def score(self, text, max_prompt_tokens=None):
        """Log-probabilities of each text's tokens, each given the ones before it (the first
        given ``<eos>``, the start of a line), and the text's perplexity.

        Args:
            text: ``tf.string`` ``(batch,)``.
            max_prompt_tokens: score only the last this many tokens (``<eos>`` included).

        Returns:
            dict: ``token_log_probs`` float32 ``(batch, time)`` in nats, 0 after each text's
            end; ``num_tokens`` int32 ``(batch,)``; ``perplexity`` float32 ``(batch,)`` =
            ``exp(-mean log p)`` over the text's tokens (1.0 for a text with no tokens).
        """
        ids, lengths = self.vectorizer.prompt_ids(text, max_prompt_tokens)
        log_probs = tf.nn.log_softmax(tf.cast(self.model(ids, training=False), tf.float32))
        targets = ids[:, 1:]
        picked = tf.gather(log_probs[:, :-1], targets, batch_dims=2)
        mask = tf.cast(targets != PAD_ID, tf.float32)
        picked = tf.where(mask > 0, picked, 0.0)
        count = tf.reduce_sum(mask, axis=1)
        mean = tf.math.divide_no_nan(tf.reduce_sum(picked, axis=1), count)
        return {"token_log_probs": picked, "num_tokens": lengths - 1,
                "perplexity": tf.exp(-mean)}

    def attention(self, text, max_prompt_tokens=None):
        """What the model attends to when it predicts the word after each prompt.

        Args:
            text: ``tf.string`` ``(batch,)``.
            max_prompt_tokens: read only the last this many tokens (``<eos>`` included).

        Returns:
            dict: ``tokens`` ``tf.string (batch, time)``, the tokens the model reads
            (``<eos>`` first, unknown words as the unknown token), ``""`` after each
            prompt's end; ``num_tokens`` int32 ``(batch,)``, how many of them (``<eos>``
            included); ``weights`` float32 ``(batch, layers, heads, time)``, the attention
            weights of each prompt's last token over its tokens, per layer and head
            (:meth:`zoo.models.LanguageModel.attention_weights`), 0 after its end.

        Raises:
            NotImplementedError: the model has no attention (``model.has_attention`` False).
        """
        ids, lengths = self.vectorizer.prompt_ids(text, max_prompt_tokens)
        weights = self.model.attention_weights(ids, lengths)
        tokens = tf.where(ids == PAD_ID, tf.constant(""), tf.gather(self._vocab, ids))
        return {"tokens": tokens, "num_tokens": lengths,
                "weights": tf.cast(weights, tf.float32)}

    def generate(self, text, max_new_tokens, temperature, top_k, top_p, seed,
                 max_prompt_tokens=None, limit=256):
        """Continue each prompt, row by row, with the model's one-step call (graph mode).

        Args:
            text: ``tf.string`` ``(batch,)``.
            max_new_tokens: int32 ``(batch,)``, clipped to ``[0, limit]``.
            temperature: float32 ``(batch,)``; ``<= 0`` is greedy.
            top_k: int32 ``(batch,)``; ``<= 0`` keeps all tokens.
            top_p: float32 ``(batch,)``; ``>= 1`` keeps all tokens.
            seed: int64 ``(batch,)``: the same seed gives the same continuation.
            max_prompt_tokens: read only the last this many prompt tokens.
            limit: the most tokens one request may generate per row.

        Returns:
            dict: ``continuation`` ``tf.string (batch,)`` (tokens joined by a space, or
            nothing for characters); ``num_tokens`` int32 ``(batch,)``. Padding and
            ``[UNK]`` are never generated. Subword pieces are joined into words
            (:meth:`zoo.front_ends.FrontEnd.surface_table`). A model with ``max_length`` positions (the
            Transformer) reads only the last ``max_length - max_new_tokens`` prompt tokens
            (at least 1) and generates at most ``max_length - 1`` tokens.
        """
        ids, lengths = self.vectorizer.prompt_ids(text, max_prompt_tokens)
        banned = tf.scatter_nd(self._not_word[:, None], tf.ones_like(self._not_word, tf.bool),
                               [self.vectorizer.vocab_size])
        separator = "" if self.vectorizer.split == "character" else " "
        subword = self.front_end.kind != "word"

        positions = getattr(self.model, "max_length", None)  # a Transformer's window

        def one_row(args):
            row, length, n, temp, k, p, s = args
            n = tf.clip_by_value(n, 0, limit)
            logits, states, grow, length = read_prompt_in_graph(self.model, row, length, n)
            if positions is not None:  # prompt + new tokens must fit in max_length positions
                n = tf.minimum(n, positions - length)
            vocab = self.vectorizer.vocab_size

            def draw(i, logits, states, out):
                token = tf.reshape(sample_in_graph(logits, s, i, temp, k, p, banned[None]), [1])
                logits, states = self.model.step(token, states)
                return i + 1, tf.cast(logits, tf.float32), states, out.write(i, token[0])

            *_, out = tf.while_loop(
                lambda i, *_: i < n, draw,
                (tf.constant(0), logits, states, tf.TensorArray(tf.int32, size=n)),
                shape_invariants=(tf.TensorShape([]), tf.TensorShape([1, vocab]), grow,
                                  tf.TensorShape(None)))
            if subword:  # pieces carry their own spaces
                words = tf.gather(self._surface, out.stack())
                return tf.strings.strip(tf.strings.reduce_join(words)), n
            words = tf.gather(self._vocab, out.stack())
            return tf.strings.reduce_join(words, separator=separator), n

        continuation, count = tf.map_fn(
            one_row, (ids, lengths, tf.cast(max_new_tokens, tf.int32),
                      tf.cast(temperature, tf.float32), tf.cast(top_k, tf.int32),
                      tf.cast(top_p, tf.float32), tf.cast(seed, tf.int64)),
            fn_output_signature=(tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32)))
        return {"continuation": continuation, "num_tokens": count}

    def save(self, directory):
        """Write ``model.keras`` and the front end (``front_end.json`` and its files; the
        ``word`` kind also ``vocab.txt`` and ``text.json``) into ``directory``."""
        os.makedirs(directory, exist_ok=True)
        self.vectorizer.save(directory)
        self.model.save(os.path.join(directory, MODEL_FILE))

    @classmethod
    def load(cls, directory):
        """Load what :meth:`save` wrote (``safe_mode=True``).

        Raises:
            FileNotFoundError: ``directory`` lacks the model or the front end's files.
        """
        path = os.path.join(directory, MODEL_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} is missing: {directory} is not a training run folder "
                "(nwp-train --output writes one)."
            )
        vectorizer = load_front_end(directory)
        model = keras.saving.load_model(path, safe_mode=True)
        return cls(vectorizer, model)
