"""Choosing next tokens from logits, and generation with a model's one-step call.

Samplers take logits ``(batch, vocab_size)`` and return int32 ids ``(batch,)``. Random ones
use TensorFlow's *stateless* random ops keyed by ``(seed, step)``, so the same seed gives the
same text on every run and machine.

* greedy: ``argmax``;
* temperature: sample from ``softmax(logits / T)``;
* top-k (Fan et al. 2018): sample among the ``k`` most likely tokens;
* top-p / nucleus (Holtzman et al. 2020): sample among the smallest set of most likely
  tokens whose probability reaches ``p``;
* beam search: keep the ``beam_width`` most likely continuations by summed log-probability.

The eager sampler (:func:`sample`, :func:`filter_logits`, :func:`generate`) and the in-graph
one (:func:`sample_in_graph`, which the exported ``generate`` signature runs) share one set
of conventions and one implementation, so the same seed gives the same tokens in both:
``temperature <= 0`` is greedy; ``top_k <= 0`` (or None) and ``top_p >= 1`` (or None) keep
every token; ``top_p <= 0`` keeps only the most likely token; top-k and top-p choose the
kept tokens from the model's own distribution (``softmax(logits)``) and the temperature then
reshapes the draw among them; a token left out gets the logit :data:`NEG`.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

NEG = -1e30
"""The logit of a token that must not be drawn, in every sampler here. Finite, so a row whose
tokens are all filtered still gives a distribution (no NaN), and far below any kept logit
divided by the smallest temperature (1e-6)."""

_MIN_TEMPERATURE = 1e-6


def greedy(logits):
    """The most likely id of each row: int32 ``(batch,)``."""
    return tf.argmax(logits, axis=-1, output_type=tf.int32)


def nucleus_mask(logits, top_p):
    """bool ``(batch, vocab_size)``: the top-p nucleus of each row (Holtzman et al. 2020),
    the most likely tokens before whose cumulative probability reaches ``top_p``, plus the
    most likely token always (so ``top_p <= 0`` keeps exactly that one)."""
    order = tf.argsort(logits, axis=-1, direction="DESCENDING")
    probs = tf.nn.softmax(tf.gather(logits, order, batch_dims=1))
    cumulative = tf.cumsum(probs, axis=-1, exclusive=True)
    first = tf.range(tf.shape(logits)[-1])[None, :] == 0
    keep_sorted = tf.logical_or(cumulative < top_p, first)
    return tf.gather(keep_sorted, tf.argsort(order, axis=-1), batch_dims=1)


def kept_tokens(logits, top_k, top_p):
    """bool ``(batch, vocab_size)``: the tokens a sampler may draw, by the conventions of
    this module (those of the exported ``generate`` signature).

    Args:
        logits: float32 ``(batch, vocab_size)``.
        top_k: int scalar (tensor or Python); the ``k`` largest logits are kept, and tokens
            tied with the k-th; ``<= 0`` keeps every token.
        top_p: float scalar; the top-p nucleus of the model's distribution (``softmax(logits)``,
            before any temperature) is kept; ``>= 1`` keeps every token; the most likely token
            is always kept, so ``top_p <= 0`` (or NaN) keeps only it.

    Returns:
        The tokens in both the top-k set and the nucleus.
    """
    vocab = tf.shape(logits)[-1]
    top_k = tf.cast(top_k, tf.int32)
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
    kth = tf.math.top_k(logits, k=k).values[:, -1:]
    top_p = tf.cast(top_p, tf.float32)
    return tf.logical_and(logits >= kth,
                          tf.logical_or(top_p >= 1.0, nucleus_mask(logits, top_p)))


def _check_filters(logits, top_k, top_p):
    """Eager arguments as tensors; ``None`` means "no filter". Raises ``ValueError``."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    if logits.shape.rank != 2:
        raise ValueError(f"logits must be (batch, vocab_size), got shape {logits.shape}.")
    if top_k is None:
        top_k = 0
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise ValueError(f"top_k must be an int (<= 0 or None: keep every token), got "
                         f"{top_k!r}.")
    if top_p is None:
        top_p = 1.0
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.number)):
        raise ValueError(f"top_p must be a number (>= 1 or None: keep every token), got "
                         f"{top_p!r}.")
    return logits, int(top_k), float(top_p)


def filter_logits(logits, top_k=None, top_p=None):
    """Set logits outside the top-k set and the top-p nucleus to :data:`NEG`.

    Args:
        logits: float ``(batch, vocab_size)``.
        top_k: int; ``<= 0`` or None keeps every token (see :func:`kept_tokens`).
        top_p: float; ``>= 1`` or None keeps every token, ``<= 0`` only the most likely.

    Returns:
        float32 ``(batch, vocab_size)``.

    Raises:
        ValueError: logits not rank 2; ``top_k`` not an int; ``top_p`` not a number.
    """
    logits, top_k, top_p = _check_filters(logits, top_k, top_p)
    return tf.where(kept_tokens(logits, top_k, top_p), logits, NEG)


def sample(logits, seed, step=0, temperature=1.0, top_k=None, top_p=None):
    """Draw one id per row, reproducibly: eagerly, with Python arguments, the same draw as
    :func:`sample_in_graph` (what the exported ``generate`` signature runs) for the same
    arguments.

    Args:
        logits: float ``(batch, vocab_size)``.
        seed: int; with ``step``, the key of TensorFlow's stateless random generator.
        step: int, the generation step (a different draw each step).
        temperature: float; 1 samples the model's distribution, lower is greedier, ``<= 0``
            is greedy (argmax).
        top_k, top_p: see :func:`filter_logits`.

    Returns:
        int32 ``(batch,)``.

    Raises:
        ValueError: as :func:`filter_logits`; ``temperature`` not a number.
    """
    logits, top_k, top_p = _check_filters(logits, top_k, top_p)
    if isinstance(temperature, bool) or not isinstance(temperature,
                                                       (int, float, np.number)):
        raise ValueError(f"temperature must be a number (<= 0: greedy), got {temperature!r}.")
    return sample_in_graph(logits, tf.constant(int(seed), tf.int64),
                           tf.constant(int(step), tf.int64), tf.constant(float(temperature)),
                           tf.constant(top_k), tf.constant(top_p))


def generate(model, prompt_ids, max_new_tokens, sampler="greedy", seed=0, temperature=1.0,
             top_k=None, top_p=None):
    """Continue prompts with a model's one-step call.

    Args:
        model: a :class:`zoo.models.LanguageModel` with ``initial_state`` and ``step``.
        prompt_ids: int ``(batch, time)``, ``time >= 1`` (no padding).
        max_new_tokens: number of ids to add, >= 0.
        sampler: ``"greedy"`` or ``"sample"`` (with ``temperature``, ``top_k``, ``top_p``).
        seed: int seed for ``"sample"``.

    Returns:
        int32 ``np.ndarray`` ``(batch, max_new_tokens)``, the new ids.

    Raises:
        ValueError: unknown sampler; ``max_new_tokens < 0``; a prompt that is not
            ``(batch, time)`` with ``time >= 1``; the model's own limits (e.g. a Transformer's
            ``max_length``).
    """
    if sampler not in ("greedy", "sample"):
        raise ValueError(f"sampler must be 'greedy' or 'sample', got {sampler!r}.")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
    prompt_ids = _check_prompt(prompt_ids)
    states = model.initial_state(prompt_ids.shape[0])
    for t in range(prompt_ids.shape[1]):
        logits, states = model.step(tf.constant(prompt_ids[:, t]), states)
    out = []
    for i in range(max_new_tokens):
        if sampler == "greedy":
            ids = greedy(logits)
        else:
            ids = sample(logits, seed, i, temperature, top_k, top_p)
        out.append(ids.numpy())
        if i + 1 < max_new_tokens:  # no step after the last token
            logits, states = model.step(ids, states)
    return np.stack(out, axis=1) if out else np.zeros((prompt_ids.shape[0], 0), np.int32)


def _check_prompt(prompt_ids):
    prompt_ids = np.asarray(prompt_ids, dtype=np.int32)
    if prompt_ids.ndim != 2 or prompt_ids.shape[1] < 1:
        raise ValueError(f"prompt_ids must be (batch, time) with time >= 1, got shape "
                         f"{prompt_ids.shape}.")
    return prompt_ids


def beam_search(model, prompt_ids, max_new_tokens, beam_width=4):
    """The most likely continuations by beam search (summed log-probabilities, nats), as in
    statistical machine translation (Koehn 2004) and Sutskever et al. 2014. A beam that
    would need more candidates than ``vocab ** max_new_tokens`` keeps ``-inf`` scores.

    Args:
        model: as :func:`generate`.
        prompt_ids: int ``(batch, time)``.
        max_new_tokens: >= 1.
        beam_width: >= 1 beams per row.

    Returns:
        ``(ids, scores)``: int32 ``(batch, beam_width, max_new_tokens)`` best first, and
        float ``(batch, beam_width)`` their log-probabilities.

    Raises:
        ValueError: ``beam_width < 1`` or ``max_new_tokens < 1``; a prompt that is not
            ``(batch, time)``; the model's own limits.
    """
    if beam_width < 1 or max_new_tokens < 1:
        raise ValueError("beam_width and max_new_tokens must be >= 1.")
    prompt_ids = _check_prompt(prompt_ids)
    batch = prompt_ids.shape[0]
    tiled = np.repeat(prompt_ids, beam_width, axis=0)  # (batch * beams, time)
    states = model.initial_state(tiled.shape[0])
    for t in range(tiled.shape[1]):
        logits, states = model.step(tf.constant(tiled[:, t]), states)
    scores = np.full((batch, beam_width), -np.inf)
    scores[:, 0] = 0.0  # all beams start identical: only the first one expands at step 0
    sequences = np.zeros((batch, beam_width, 0), np.int32)
    for _ in range(max_new_tokens):
        logp = tf.nn.log_softmax(tf.cast(logits, tf.float32)).numpy()
        vocab = logp.shape[-1]
        total = (scores[..., None] + logp.reshape(batch, beam_width, vocab)).reshape(batch, -1)
        best = np.argsort(-total, axis=1, kind="stable")[:, :beam_width]
        parents, tokens = best // vocab, (best % vocab).astype(np.int32)
        scores = np.take_along_axis(total, best, axis=1)
        sequences = np.concatenate(
            [np.take_along_axis(sequences, parents[..., None], axis=1), tokens[..., None]],
            axis=2)
        if sequences.shape[2] == max_new_tokens:
            break  # no step after the last token
        flat_parents = (parents + np.arange(batch)[:, None] * beam_width).reshape(-1)
        states = [tf.gather(s, flat_parents) for s in states]
        logits, states = model.step(tf.constant(tokens.reshape(-1)), states)
    return sequences, scores


def read_prompt_in_graph(model, row, length, reserve=0):
    """Feed one prompt to a model's one-step call, in graph mode (one row, batch 1).

    Args:
        model: a :class:`zoo.models.LanguageModel` with ``initial_state`` and ``step``.
        row: int32 ``(time,)``, the prompt's ids, right-padded.
        length: int32 scalar, the real ids in ``row`` (>= 1).
        reserve: int scalar, positions to keep free after the prompt: a model with
            ``max_length`` positions (the Transformer) reads only the last
            ``max(1, max_length - reserve)`` ids.

    Returns:
        ``(logits, states, shapes, length)``: float32 ``(1, vocab_size)``, the logits after
        the last id read; the model's states after it; their ``tf.TensorShape`` invariants for
        a ``tf.while_loop`` that goes on stepping (attention memories and key/value caches
        grow on their next-to-last axis); the int32 number of ids read.
    """
    positions = getattr(model, "max_length", None)
    if positions is not None:
        keep = tf.minimum(length, tf.maximum(1, positions - reserve))
        row = tf.roll(row, -(length - keep), axis=0)  # the last `keep` ids first
        length = keep
    states = model.initial_state(1)
    shapes = [tf.TensorShape([None if axis == len(st.shape) - 2 else size
                              for axis, size in enumerate(st.shape)])
              if len(st.shape) >= 3 else st.shape for st in states]
    vocab = model.vocab_size

    def feed(t, logits, states):
        logits, states = model.step(tf.reshape(row[t], [1]), states)
        return t + 1, tf.cast(logits, tf.float32), states

    _, logits, states = tf.while_loop(
        lambda t, *_: t < length, feed, (tf.constant(0), tf.zeros([1, vocab]), states),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([1, vocab]), shapes))
    return logits, states, shapes, length


def sample_in_graph(logits, seed, step, temperature, top_k, top_p, banned=None):
    """Graph-friendly sampler with tensor parameters (for exported signatures).

    Args:
        logits: float ``(batch, vocab_size)``.
        seed: int64 scalar; with ``step`` (int scalar), the stateless random key
            ``[seed, step]``.
        temperature: float scalar; ``<= 0`` means greedy (argmax).
        top_k, top_p: scalars, see :func:`kept_tokens` (``top_k <= 0`` and ``top_p >= 1``
            keep every token; ``top_p <= 0`` or NaN is greedy).
        banned: optional bool ``(1 or batch, vocab_size)``: ids never returned, whatever the
            temperature.

    Returns:
        int32 ``(batch,)``: argmax when ``temperature <= 0``, else a draw from
        ``softmax(logits / temperature)`` restricted to the kept tokens.
    """
    logits = tf.cast(logits, tf.float32)
    if banned is not None:
        logits = tf.where(banned, NEG, logits)
    keep = kept_tokens(logits, top_k, top_p)
    if banned is not None:
        keep = tf.logical_and(keep, tf.logical_not(banned))
    greedy_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
    safe_t = tf.maximum(tf.cast(temperature, tf.float32), _MIN_TEMPERATURE)
    scaled = tf.where(keep, logits / safe_t, NEG)  # filtered ids stay out at any temperature
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    drawn = tf.cast(tf.random.stateless_categorical(scaled, 1, seed=key)[:, 0], tf.int32)
    return tf.where(tf.cast(temperature, tf.float32) > 0, drawn, greedy_ids)
