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
