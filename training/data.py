"""``tf.data`` pipelines that cut a contiguous token stream into BPTT windows."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from zoo.text import PAD_ID


def make_windows(ids, bptt):
    """Cut a stream into non-overlapping windows of inputs and next-token targets.

    Window ``j`` has inputs ``ids[j*bptt : (j+1)*bptt]`` and targets shifted by one token,
    ``ids[j*bptt + 1 : (j+1)*bptt + 1]``. Every token after the first is a target exactly
    once. The last window is right-padded with id 0, which the loss masks out.

    Args:
        ids: int array ``(tokens,)``, at least 2 tokens.
        bptt: window length in time steps, >= 1.

    Returns:
        ``(inputs, targets)``, int32 arrays ``(windows, bptt)``.

    Raises:
        ValueError: ``bptt < 1``, or fewer than ``bptt + 1`` tokens.
    """
    ids = np.asarray(ids, dtype=np.int32)
    if bptt < 1:
        raise ValueError(f"bptt must be >= 1, got {bptt}.")
    if ids.ndim != 1 or ids.size < 2:
        raise ValueError(
            f"Need a 1-D stream of at least 2 tokens to make (input, target) pairs, got "
            f"shape {ids.shape}."
        )
    if ids.size - 1 < bptt:
        raise ValueError(
            f"The text has {ids.size} tokens, shorter than one window of bptt={bptt} steps "
            "plus one target; use a longer text or a smaller --bptt.")
    inputs, targets = ids[:-1], ids[1:]
    windows = -(-inputs.size // bptt)
    pad = windows * bptt - inputs.size
    inputs = np.pad(inputs, (0, pad), constant_values=PAD_ID).reshape(windows, bptt)
    targets = np.pad(targets, (0, pad), constant_values=PAD_ID).reshape(windows, bptt)
    return inputs, targets


def window_dataset(ids, bptt, batch_size, shuffle=False, seed=None):
    """A ``tf.data.Dataset`` of ``(inputs, targets)`` batches, each int32 ``(batch, bptt)``.

    Args:
        ids: int array ``(tokens,)``.
        bptt: window length.
        batch_size: windows per batch (the last batch may be smaller).
        shuffle: reshuffle the windows every epoch (training).
        seed: shuffle seed.

    Raises:
        ValueError: as :func:`make_windows`, or ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    inputs, targets = make_windows(ids, bptt)
    ds = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle:
        ds = ds.shuffle(len(inputs), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def make_streams(ids, batch_size, bptt):
    """Lay a stream out as ``batch_size`` contiguous streams cut into windows, for truncated
    BPTT with carried state (Zaremba et al. 2014; PyTorch ``word_language_model``).

    The inputs ``ids[:-1]`` are cut into ``batch_size`` consecutive pieces of equal length
    ``L = ceil((tokens - 1) / batch_size)`` (row ``i`` reads ``ids[i*L : (i+1)*L]``), and the
    rows are cut into windows of ``bptt`` steps, so row ``i`` of window ``j + 1`` continues
    row ``i`` of window ``j``. Targets are the inputs shifted by one token. Padding (id 0) at
    the end is masked out of the loss, so every token after the first is a target exactly
    once and evaluation is token-weighted over the whole text.

    Args:
        ids: int array ``(tokens,)``.
        batch_size: number of streams, >= 1.
        bptt: window length, >= 1.

    Returns:
        ``(inputs, targets)``, int32 ``(windows, batch_size, bptt)``.

    Raises:
        ValueError: ``batch_size`` or ``bptt`` < 1; fewer than ``bptt + 1`` tokens.
    """
    ids = np.asarray(ids, dtype=np.int32)
    if batch_size < 1 or bptt < 1:
        raise ValueError(f"batch_size and bptt must be >= 1, got {batch_size} and {bptt}.")
    if ids.ndim != 1 or ids.size - 1 < bptt:
        raise ValueError(
            f"The text has {ids.size} tokens, shorter than one window of bptt={bptt} steps "
            "plus one target; use a longer text or a smaller --bptt.")
    out = []
    for stream in (ids[:-1], ids[1:]):
        length = -(-stream.size // batch_size)
        windows = -(-length // bptt)
        padded = np.zeros(batch_size * length, np.int32)
        padded[:stream.size] = stream
        rows = np.zeros((batch_size, windows * bptt), np.int32)
        rows[:, :length] = padded.reshape(batch_size, length)
        out.append(rows.reshape(batch_size, windows, bptt).transpose(1, 0, 2))
    return out[0], out[1]


def stream_dataset(ids, batch_size, bptt):
    """A ``tf.data.Dataset`` of :func:`make_streams` windows in order: ``(inputs, targets)``,
    int32 ``(batch_size, bptt)``, every batch full (as a stateful model needs)."""
    inputs, targets = make_streams(ids, batch_size, bptt)
    return tf.data.Dataset.from_tensor_slices((inputs, targets)).prefetch(tf.data.AUTOTUNE)
