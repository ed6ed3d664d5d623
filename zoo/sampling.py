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
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

NEG = -1e9


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


def filter_logits(logits, top_k=None, top_p=None):
    """Set logits outside the top-k and/or the top-p nucleus to a large negative number.

    Args:
        logits: float ``(batch, vocab_size)``.
        top_k: keep the ``k`` largest (1 <= k); None: all. Tokens tied with the k-th are
            kept too.
        top_p: keep the smallest most-likely set with cumulative probability >= p
            (0 < p <= 1); the most likely token is always kept.

    Raises:
        ValueError: logits not rank 2; ``top_k`` not an int >= 1; ``top_p`` outside (0, 1].
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    if logits.shape.rank != 2:
        raise ValueError(f"logits must be (batch, vocab_size), got shape {logits.shape}.")
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be an int >= 1, got {top_k!r}.")
        k = min(int(top_k), logits.shape[-1])
        kth = tf.math.top_k(logits, k=k).values[:, -1:]
        logits = tf.where(logits < kth, NEG, logits)
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}.")
    if top_p is not None and top_p < 1.0:  # p = 1 keeps every token
        keep = nucleus_mask(logits, top_p)
        logits = tf.where(keep, logits, NEG)
    return logits


def sample(logits, seed, step=0, temperature=1.0, top_k=None, top_p=None):
    """Draw one id per row, reproducibly.

    Args:
        logits: float ``(batch, vocab_size)``.
        seed: int; with ``step``, the key of TensorFlow's stateless random generator.
        step: int, the generation step (a different draw each step).
        temperature: > 0; 1 samples the model's distribution, lower is greedier.
        top_k, top_p: see :func:`filter_logits`.

    Returns:
        int32 ``(batch,)``.

    Raises:
        ValueError: ``temperature <= 0``; as :func:`filter_logits`.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy for argmax), got {temperature}.")
    logits = filter_logits(tf.convert_to_tensor(logits, tf.float32) / temperature, top_k,
                           top_p)
    return tf.cast(tf.random.stateless_categorical(logits, 1, seed=[int(seed), int(step)])[:, 0],
                   tf.int32)


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


def sample_in_graph(logits, seed, step, temperature, top_k, top_p, banned=None):
    """Graph-friendly sampler with tensor parameters (for exported signatures).

    Args:
        logits: float ``(batch, vocab_size)``.
        seed: int64 scalar; with ``step`` (int scalar), the stateless random key.
        temperature: float scalar; ``<= 0`` means greedy (argmax).
        top_k: int scalar; ``<= 0`` keeps every token.
        top_p: float scalar; ``>= 1`` keeps every token; the most likely token is always
            kept, so ``top_p <= 0`` (or NaN) is greedy.
        banned: optional bool ``(1 or batch, vocab_size)``: ids never returned, whatever the
            temperature.

    Returns:
        int32 ``(batch,)``.
    """
    logits = tf.cast(logits, tf.float32)
    if banned is not None:
        logits = tf.where(banned, NEG, logits)
    vocab = tf.shape(logits)[-1]
    k = tf.where(top_k > 0, tf.minimum(tf.cast(top_k, tf.int32), vocab), vocab)
    kth = tf.math.top_k(logits, k=k).values[:, -1:]
    keep = logits >= kth
    keep = tf.logical_and(keep, tf.logical_or(top_p >= 1.0, nucleus_mask(logits, top_p)))
    if banned is not None:
        keep = tf.logical_and(keep, tf.logical_not(banned))
    greedy_ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
    safe_t = tf.maximum(tf.cast(temperature, tf.float32), 1e-6)
    scaled = tf.where(keep, logits / safe_t, -1e30)  # filtered ids stay out at any temperature
    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
    drawn = tf.cast(tf.random.stateless_categorical(scaled, 1, seed=key)[:, 0], tf.int32)
    return tf.where(temperature > 0, drawn, greedy_ids)
