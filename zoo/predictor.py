"""The next-word predictor: text front end + language model + top-k choice.

This is the "task" of the keras-hub split (preprocessor + backbone + sampler). It is what a
training run saves and what the serving export wraps into one SavedModel.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

import zoo.presets  # noqa: F401  (registers every model class for load_model)
from zoo.text import OOV_ID, PAD_ID, WordVectorizer

MODEL_FILE = "model.keras"


class NextWordPredictor:
    """Raw strings in, the ``k`` most likely next words and their probabilities out.

    Args:
        vectorizer: a :class:`zoo.text.WordVectorizer`.
        model: a :class:`zoo.models.LanguageModel` whose ``vocab_size`` equals the
            vectoriser's.

    Raises:
        ValueError: the two vocabulary sizes differ.
    """

    def __init__(self, vectorizer, model):
        if model.vocab_size != vectorizer.vocab_size:
            raise ValueError(
                f"The model predicts over {model.vocab_size} ids but the vocabulary has "
                f"{vectorizer.vocab_size}: the model and vocabulary come from different runs."
            )
        if getattr(model, "stateful", False):
            model = model.stateless_copy()  # prompts come in batches of any size
        self.vectorizer = vectorizer
        self.model = model
        self._vocab = tf.constant(vectorizer.vocabulary)
        # Padding and the OOV id are never proposed as a next word. (A corpus's own
        # "<unk>" token, as in PTB, is a word of its vocabulary and can be.)
        self._not_word = tf.constant([PAD_ID, OOV_ID], tf.int32)

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
        """The ``k`` most likely next words.

        Args:
            text: ``tf.string`` ``(batch,)``.
            k: int, 1 <= k <= vocab_size - 2.
            max_prompt_tokens: see :meth:`next_word_distribution`.

        Returns:
            dict with ``words`` ``tf.string (batch, k)`` and ``probabilities`` float32
            ``(batch, k)``, most likely first. Probabilities are the model's (not
            renormalised after leaving out padding and ``[UNK]``).
        """
        probs = self.next_word_distribution(text, max_prompt_tokens)
        drop = tf.scatter_nd(self._not_word[:, None],
                             tf.ones_like(self._not_word, tf.float32),
                             [self.vectorizer.vocab_size])
        values, indices = tf.math.top_k(probs - 2.0 * drop, k=k)
        return {"words": tf.gather(self._vocab, indices),
                "probabilities": tf.maximum(values, 0.0)}

    def save(self, directory):
        """Write ``model.keras``, ``vocab.txt`` and ``text.json`` into ``directory``."""
        os.makedirs(directory, exist_ok=True)
        self.vectorizer.save(directory)
        self.model.save(os.path.join(directory, MODEL_FILE))

    @classmethod
    def load(cls, directory):
        """Load what :meth:`save` wrote (``safe_mode=True``).

        Raises:
            FileNotFoundError: ``directory`` lacks one of the three files.
        """
        path = os.path.join(directory, MODEL_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{path} is missing: {directory} is not a training run folder "
                "(nwp-train --output writes one)."
            )
        vectorizer = WordVectorizer.load(directory)
        model = keras.saving.load_model(path, safe_mode=True)
        return cls(vectorizer, model)
