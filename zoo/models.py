"""The language-model base class, which owns the BPTT training step.

:class:`LanguageModel` computes one cross-entropy loss per time step, combines them, clips
the whole gradient by its global norm (Pascanu, Mikolov & Bengio 2013, Algorithm 1) and
applies it. Concrete models (``zoo.recurrent_lm``, ``zoo.transformer_lm``) define ``call``:
``token ids (batch, time) -> logits (batch, time, vocab_size)``, and the one-step call
``step(token_ids (batch,), states) -> (logits (batch, vocab_size), new_states)``.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from zoo._keras_compat import SkipSymbolicBuildWhenBuilt
from zoo.text import PAD_ID

LOSS_REDUCTIONS = ("sum_over_time", "mean")


@keras.saving.register_keras_serializable(package="zoo")
class Perplexity(keras.metrics.Mean):
    """Perplexity = exp(token-weighted mean cross-entropy in nats).

    ``update_state(token_losses, sample_weight=mask)`` takes per-token losses ``(batch,
    time)`` in nats and a 0/1 mask of the same shape, so padding never counts and the
    result over an epoch is exp(total nats / total tokens), not a mean of batch values.
    """

    def __init__(self, name="perplexity", **kwargs):
        super().__init__(name=name, **kwargs)

    def result(self):
        return ops.exp(super().result())


@tf.function(jit_compile=True)
def _fused_cross_entropy(labels, logits):
    """``tf.nn.sparse_softmax_cross_entropy_with_logits`` on ``(rows, vocab)`` compiled by XLA,
    which fuses the softmax, the loss and its gradient into one pass over the logits."""
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def _token_cross_entropy(targets, logits):
    """Cross-entropy in nats of int ``targets (batch, time)`` under float32 ``logits (batch,
    time, vocab)``: one fused sparse softmax cross-entropy over ``(batch * time, vocab)``."""
    vocab = ops.shape(logits)[-1]
    losses = _fused_cross_entropy(tf.reshape(tf.cast(targets, "int32"), [-1]),
                                  tf.reshape(logits, [-1, vocab]))
    return tf.reshape(losses, tf.shape(targets))


def sequence_cross_entropy(targets, logits, sample_weight=None):
    """Per-step cross-entropy and the mask of steps that count.

    Args:
        targets: int ``(batch, time)`` next-token ids; id 0 is padding.
        logits: float ``(batch, time, vocab_size)``.
        sample_weight: optional float ``(batch, time)`` or ``(batch,)`` weights.

    Returns:
        ``(token_losses, mask)``, both float32 ``(batch, time)``; losses in nats, already
        multiplied by the mask (0 on padding).
    """
    losses = _token_cross_entropy(targets, ops.cast(logits, "float32"))
    mask = ops.cast(ops.not_equal(targets, PAD_ID), "float32")
    if sample_weight is not None:
        sample_weight = ops.cast(sample_weight, "float32")
        if len(sample_weight.shape) == 1:
            sample_weight = sample_weight[:, None]
        mask = mask * sample_weight
    return losses * mask, mask


def _multi_worker():
    """True inside a MultiWorkerMirroredStrategy (a collective all-reduce across hosts)."""
    return isinstance(tf.distribute.get_strategy(),
                      tf.distribute.experimental.MultiWorkerMirroredStrategy)


def _logs(values):
    """Step logs for Keras. Keras 3.15 reduces them across workers with ``axis=0`` under
    MultiWorkerMirroredStrategy, which fails on scalars (keras-team/keras#20585), so there
    they are given as shape ``(1,)``."""
    if _multi_worker():
        return {k: tf.reshape(v, [1]) for k, v in values.items()}
    return values


def token_embedding(vocab_size, dim, embeddings_initializer="uniform"):
    """The token embedding of every model: a ``keras.layers.ReversibleEmbedding`` named
    ``embedding``, ``(batch, time)`` int ids -> ``(batch, time, dim)``; its reverse call
    (``reverse=True``, in float32) is the tied output layer (:meth:`LanguageModel.output_logits`).
    Its weight is the same ``embeddings (vocab_size, dim)`` as a ``keras.layers.Embedding``'s,
    so weights saved with one load into the other."""
    return keras.layers.ReversibleEmbedding(vocab_size, dim, reverse_dtype="float32",
                                            embeddings_initializer=embeddings_initializer,
                                            name="embedding")


def build_once(layer, *shapes):
    """``layer.build(*shapes)`` unless it is built (``step()`` may have built it first)."""
    if not layer.built:
        layer.build(*shapes)


def _scale(grad, factor):
    """``grad * factor`` for a dense tensor or a ``tf.IndexedSlices``."""
    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(grad.values * tf.cast(factor, grad.values.dtype), grad.indices,
                                grad.dense_shape)
    return grad * tf.cast(factor, grad.dtype)


def _merge_duplicate_slices(grad):
    """Sum the rows of a ``tf.IndexedSlices`` that share an index; dense tensors pass."""
    if not isinstance(grad, tf.IndexedSlices):
        return grad
    indices, positions = tf.unique(grad.indices)
    values = tf.math.unsorted_segment_sum(grad.values, positions, tf.shape(indices)[0])
    return tf.IndexedSlices(values, indices, grad.dense_shape)


@keras.saving.register_keras_serializable(package="zoo")
class LanguageModel(SkipSymbolicBuildWhenBuilt, keras.Model):
    """Base next-token language model with a BPTT ``train_step`` and explicit clipping.

    Subclasses implement ``features(token_ids, training=False)`` (token ids int ``(batch,
    time)`` -> features ``(batch, time, width)``) and ``logits_from_features`` (what runs
    before the one output head, :meth:`output_logits`); ``call`` and
    :meth:`next_token_logits` are theirs composed: logits float32 ``(batch, time,
    vocab_size)``.

    The training objective, per batch of ``B`` windows of ``T`` steps with per-step losses
    ``l_{b,t} = -log p(y_{b,t} | y_{b,<t})`` (nats) and padding mask ``m_{b,t}``:

    * ``loss_reduction="sum_over_time"`` (default; Zaremba et al. 2014): ``L = (1/B)
      sum_b sum_t m_{b,t} l_{b,t}``, the sum over time of the batch-mean loss. Gradients are
      about ``T`` times those of the mean, so learning rates and clip thresholds from
      papers that sum (SGD lr 1, clip 5) apply unchanged.
    * ``loss_reduction="mean"``: ``L = sum m l / sum m``, the mean per token (Keras's
      default reduction; PyTorch's ``word_language_model``, lr 20 and clip 0.25).

    The gradient of ``L`` is clipped with ``tf.clip_by_global_norm(grads, clipnorm)`` in
    ``train_step`` (not by the optimizer), then applied. ``fit`` reports ``loss`` (``L``,
    epoch mean), ``perplexity`` (exp of the token-weighted mean loss per token),
    ``gradient_norm`` (the global norm *before* clipping, epoch mean) and
    ``clipped_fraction`` (the fraction of steps that clipping changed). ``evaluate`` reports
    ``loss`` and ``perplexity``.

    Args:
        vocab_size: number of token ids (logits' last axis), >= 2.
        clipnorm: global-norm threshold (> 0), or None for no clipping. Default 5.0.
        clipvalue: element-wise threshold (> 0) instead of ``clipnorm`` (give one, or
            neither for no clipping).
        loss_reduction: ``"sum_over_time"`` or ``"mean"``.
        **kwargs: passed to ``keras.Model``.

    Raises:
        ValueError: a bad ``vocab_size``, ``clipnorm`` or ``loss_reduction``; ``compile``
            with an optimizer that clips too (``clipnorm``, ``global_clipnorm`` or
            ``clipvalue`` set), which would clip twice.
    """

    def __init__(self, vocab_size, clipnorm=5.0, loss_reduction="sum_over_time",
                 clipvalue=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(vocab_size, int) or vocab_size < 2:
            raise ValueError(f"vocab_size must be an int >= 2, got {vocab_size!r}.")
        if clipnorm is not None and not clipnorm > 0:
            raise ValueError(f"clipnorm must be > 0 or None (no clipping), got {clipnorm!r}.")
        if clipvalue is not None and not clipvalue > 0:
            raise ValueError(f"clipvalue must be > 0 or None, got {clipvalue!r}.")
        if clipnorm is not None and clipvalue is not None:
            raise ValueError("Give clipnorm (global norm) or clipvalue (element-wise), not both.")
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(
                f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}."
            )
        self.vocab_size = vocab_size
        self.clipnorm = None if clipnorm is None else float(clipnorm)
        self.clipvalue = None if clipvalue is None else float(clipvalue)
        self.loss_reduction = loss_reduction
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.perplexity_tracker = Perplexity(name="perplexity")
        self.gradient_norm_tracker = keras.metrics.Mean(name="gradient_norm")
        self.clipped_tracker = keras.metrics.Mean(name="clipped_fraction")

    @property
    def metrics(self):
        return [self.loss_tracker, self.perplexity_tracker, self.gradient_norm_tracker,
                self.clipped_tracker]

    def compile(self, optimizer="adam", **kwargs):
        """``keras.Model.compile``; no loss is needed (the train_step computes it).

        Raises:
            ValueError: the optimizer (or the one a ``LossScaleOptimizer`` wraps) clips
                gradients itself, which would clip twice.
        """
        super().compile(optimizer=optimizer, **kwargs)
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)  # loss scaling
        clips = {k: getattr(inner, k, None)
                 for k in ("clipnorm", "global_clipnorm", "clipvalue")}
        if any(v is not None for v in clips.values()):
            raise ValueError(
                f"The optimizer clips gradients itself ({clips}); LanguageModel clips in its "
                "train_step (clipnorm=...). Remove clipping from the optimizer."
            )

    def compile_from_config(self, config):
        """Re-compile after ``keras.saving.load_model`` (restores the optimizer's state)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def _check_ids(self, token_ids, rank):
        """Raise ``ValueError`` unless ``token_ids`` has rank 2 ``(batch, time)`` or 1."""
        if len(token_ids.shape) != rank:
            shape = "(batch, time)" if rank == 2 else "(batch,)"
            raise ValueError(f"{type(self).__name__} expects token ids of shape {shape}, got "
                             f"shape {tuple(token_ids.shape)}.")

    def initial_state(self, batch_size):
        """The states before the first token, for :meth:`step`. Subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} has no one-step call.")

    def step(self, token_ids, states):
        """One token per row: ``(token_ids (batch,), states) -> (logits (batch, vocab_size),
        new_states)``. Iterated from :meth:`initial_state`, it equals ``call`` on the whole
        sequence. Subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} has no one-step call.")

    def fixed_state_spec(self, batch_size=1, window=256):
        """The states of :meth:`fixed_step`, as ``[(name, shape, dtype), ...]``: every shape
        is static, so a phone runtime (LiteRT) never resizes a tensor. Subclasses define it.

        Args:
            batch_size: rows per step (1 on a keyboard).
            window: past positions an attention state keeps (ignored without attention).
        """
        raise NotImplementedError(f"{type(self).__name__} has no fixed-state step.")

    def fixed_step(self, token_ids, states):
        """:meth:`step` with fixed-shape states (from :meth:`fixed_state_spec`, all zero at
        the start): ``(token_ids (batch,), states) -> (logits (batch, vocab_size),
        new_states)``. Subclasses define it."""
        raise NotImplementedError(f"{type(self).__name__} has no fixed-state step.")

    @property
    def has_attention(self):
        """True if :meth:`attention_weights` has weights to give (the export then adds an
        ``attention`` signature). False here; models with attention layers override it."""
        return False

    def attention_weights(self, token_ids, lengths):
        """The attention weights of each row's last token (``lengths - 1``) over the row's
        positions, from the attention layers' own ``return_attention_scores=True``.

        Args:
            token_ids: int ``(batch, time)``, right-padded.
            lengths: int ``(batch,)``, >= 1.

        Returns:
            float32 ``(batch, layers, heads, time)``: rows sum to 1 over positions
            ``0..lengths - 1`` and are 0 after them. Subclasses with attention define it.
        """
        raise NotImplementedError(f"{type(self).__name__} has no attention layer.")

    def features(self, token_ids, training=False):
        """The top features ``(batch, time, width)`` the output layer reads. Subclasses
        define it."""
        raise NotImplementedError(f"{type(self).__name__} defines no features.")

    def logits_from_features(self, features, training=False):
        """The model's output layer on features ``(..., width)``: float32 logits ``(...,
        vocab_size)``. Subclasses define what comes before :meth:`output_logits` (a final
        normalisation, dropout, a projection)."""
        raise NotImplementedError(f"{type(self).__name__} defines no output layer.")

    def call(self, token_ids, training=False):
        """Logits float32 ``(batch, time, vocab_size)`` for token ids int ``(batch, time)``."""
        return self.logits_from_features(self.features(token_ids, training), training)

    def next_token_logits(self, token_ids, lengths):
        """Logits float32 ``(batch, vocab_size)`` after token ``lengths[b] - 1`` of each row;
        the output layer runs only there (memory ``(batch, vocab_size)``, not ``(batch,
        time, vocab_size)``).

        Args:
            token_ids: int ``(batch, time)``, right-padded.
            lengths: int ``(batch,)``, >= 1.
        """
        last = tf.gather(self.features(token_ids), lengths - 1, batch_dims=1)
        return self.logits_from_features(last)

    # -- the output head, one for every model -----------------------------------------------
    def _add_output_head(self, tie_embeddings, **dense_kwargs):
        """Create the output layer: tied (the token embedding ``self.embedding``, a
        :func:`token_embedding`, read in reverse, plus a bias ``output_bias (vocab_size,)``;
        Press & Wolf 2017, Inan et al. 2017) or a ``Dense(vocab_size)`` ``head`` in float32
        (``dense_kwargs`` go to it)."""
        self.tie_embeddings = bool(tie_embeddings)
        if self.tie_embeddings:
            self.output_bias = self.add_weight(shape=(self.vocab_size,), initializer="zeros",
                                               name="output_bias")
        else:
            self.head = keras.layers.Dense(self.vocab_size, dtype="float32", name="logits",
                                           **dense_kwargs)

    def _build_output_head(self, shape):
        """Build the untied ``head`` for features of ``shape`` (the tied head has no layer)."""
        if not self.tie_embeddings:
            build_once(self.head, shape)

    def output_logits(self, h):
        """The output head: features ``h (..., embedding width)`` -> float32 logits ``(...,
        vocab_size)``. Tied: ``h E^T + b`` with ``E`` the token embedding (its reverse call,
        computed in float32 also under mixed precision); untied: ``h W + b``."""
        if self.tie_embeddings:
            return self.embedding(h, reverse=True) + ops.cast(self.output_bias, "float32")
        return self.head(h)

    def output_bias_variable(self):
        """The output layer's bias ``(vocab_size,)``: the ``output_bias`` weight of a tied
        model, else the ``head`` Dense layer's bias. Raises ``ValueError`` if the model has
        neither (or is not built yet)."""
        bias = getattr(self, "output_bias", None)
        if bias is None:
            bias = getattr(getattr(self, "head", None), "bias", None)
        if bias is None:
            raise ValueError(f"{type(self).__name__} has no output bias to set (build the "
                             "model first).")
        return bias

    def init_output_bias(self, token_ids, pseudo_count=0.5):
        """Start the output bias at the log unigram distribution of a training stream.

        ``b_v = log((n_v + a) / sum_u (n_u + a))`` with ``n_v`` the count of id ``v`` among
        the *targets* ``token_ids[1:]`` and ``a = pseudo_count`` for ids never seen, so at
        initialisation (features near zero) the model already predicts the unigram
        distribution ("initialise the final layer's bias to the data prior", Karpathy 2019,
        "A Recipe for Training Neural Networks"). Without it an adaptive optimizer learns the
        unigram through the shortest route it has: with a tied embedding (logits
        ``h E^T + b``) every one of the ``vocab_size`` rows of ``E`` moves a full learning
        rate per step towards ``-mean(h)`` for rare words and ``+mean(h)`` for frequent ones
        (Adam normalises each element's tiny but one-signed gradient), so the input
        embeddings collapse onto one direction, the inputs carry no word identity and the
        model stays at the unigram entropy (the "representation degeneration" of tied
        softmax layers, Gao et al. 2019, arXiv:1907.12009).

        Args:
            token_ids: int array ``(tokens,)``, the training stream (ids in
                ``[0, vocab_size)``; padding id 0 counts like any id).
            pseudo_count: added to every count, > 0 (keeps unseen ids finite).

        Returns:
            The bias written, float32 ``(vocab_size,)``, in nats (log-probabilities).

        Raises:
            ValueError: an empty stream, ids outside ``[0, vocab_size)``, ``pseudo_count <=
                0``, or a model without an output bias.
        """
        ids = np.asarray(token_ids).reshape(-1)[1:]
        if ids.size == 0:
            raise ValueError("init_output_bias needs a stream of at least 2 token ids.")
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"Token ids must be in [0, {self.vocab_size}); got ids from "
                             f"{ids.min()} to {ids.max()}: was the stream encoded with this "
                             "model's vocabulary?")
        if not pseudo_count > 0:
            raise ValueError(f"pseudo_count must be > 0, got {pseudo_count!r}.")
        counts = np.bincount(ids, minlength=self.vocab_size) + float(pseudo_count)
        log_prior = (np.log(counts) - np.log(counts.sum())).astype("float32")
        self.output_bias_variable().assign(log_prior)
        return log_prior

    def combine_losses(self, token_losses, mask):
        """Combine per-step losses ``(batch, time)`` into the scalar objective ``L``."""
        total = ops.sum(token_losses)
        if self.loss_reduction == "mean":
            return total / ops.maximum(ops.sum(mask), 1.0)
        return total / ops.cast(ops.shape(token_losses)[0], "float32")

    def clip_gradients(self, grads):
        """Return ``(clipped_grads, global_norm_before_clipping, clipped)``.

        ``clipnorm``: ``tf.clip_by_global_norm`` (Pascanu et al. 2013); ``clipvalue``: every
        element into ``[-clipvalue, clipvalue]`` (char-rnn's rule); neither: unchanged.
        ``clipped`` is 1.0 if clipping changed the gradient, else 0.0.

        Sparse gradients (``tf.IndexedSlices``, from the embedding) are first summed over
        repeated token ids: ``tf.clip_by_global_norm`` would otherwise take the norm of the
        un-merged slices, which is not the norm of the gradient when a token occurs twice in
        a batch.
        """
        grads = [_merge_duplicate_slices(g) for g in grads]
        norm = tf.linalg.global_norm(grads)
        if self.clipnorm is not None:
            clipped, _ = tf.clip_by_global_norm(grads, self.clipnorm, use_norm=norm)
            return clipped, norm, tf.cast(norm > self.clipnorm, tf.float32)
        if self.clipvalue is not None:
            v = self.clipvalue
            clipped = [tf.IndexedSlices(tf.clip_by_value(g.values, -v, v), g.indices,
                                        g.dense_shape) if isinstance(g, tf.IndexedSlices)
                       else tf.clip_by_value(g, -v, v) for g in grads]
            peak = tf.reduce_max([tf.reduce_max(tf.abs(g.values if isinstance(
                g, tf.IndexedSlices) else g)) for g in grads])
            return clipped, norm, tf.cast(peak > v, tf.float32)
        return grads, norm, tf.constant(0.0)

    def _update_metrics(self, loss, token_losses, mask):
        self.loss_tracker.update_state(loss)
        self.perplexity_tracker.update_state(token_losses, sample_weight=mask)

    def _loss_scale(self):
        """The factor the optimizer divides gradients by: the dynamic loss scale of a
        ``LossScaleOptimizer`` (``mixed_float16``), else ``loss_scale_factor`` or 1."""
        opt = self.optimizer
        if isinstance(opt, keras.optimizers.LossScaleOptimizer):  # as opt.scale_loss does
            return tf.cast(opt.dynamic_scale if opt.built else opt.initial_scale, tf.float32)
        return tf.constant(float(getattr(self.optimizer, "loss_scale_factor", None) or 1.0))

    def train_step(self, data):
        """One BPTT step: per-step losses, their combination, clipping, the update.

        Under loss scaling (``mixed_float16``) the scaled loss is differentiated, the
        gradients are unscaled, *then* measured and clipped in real units, and the optimizer
        gets them re-scaled (it divides by the scale and skips the step if they overflowed).
        Under a ``tf.distribute`` strategy with ``n`` replicas, each replica's gradient (of
        its own batch's loss) is all-reduced to the global batch's gradient *before* it is
        measured and clipped, then handed to the optimizer divided by ``n`` (the optimizer
        sums replicas), so the update equals one single-device step on the global batch.
        """
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            logits = self(x, training=True)
            token_losses, mask = sequence_cross_entropy(y, logits, sample_weight)
            loss = self.combine_losses(token_losses, mask)
            scaled_loss = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        scale = self._loss_scale()
        grads = [_scale(g, 1.0 / scale) for g in tape.gradient(scaled_loss, variables)]
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            context = tf.distribute.get_replica_context()
            grads = [tf.convert_to_tensor(g) for g in grads]  # dense for the all-reduce
            grads = context.all_reduce(tf.distribute.ReduceOp.MEAN, grads)
        clipped, norm, was_clipped = self.clip_gradients(grads)
        self.optimizer.apply([_scale(g, scale / replicas) for g in clipped], variables)
        self._update_metrics(loss, token_losses, mask)
        # An overflowed fp16 step (skipped by the optimizer) must not poison the epoch mean.
        finite = tf.cast(tf.math.is_finite(norm), tf.float32)
        self.gradient_norm_tracker.update_state(norm, sample_weight=finite)
        self.clipped_tracker.update_state(was_clipped)
        return _logs({m.name: m.result() for m in self.metrics})

    def test_step(self, data):
        """Per-step losses without an update; reports ``loss`` (the objective ``L``) and
        ``perplexity`` (token-weighted over everything evaluated)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        logits = self(x, training=False)
        token_losses, mask = sequence_cross_entropy(y, logits, sample_weight)
        self._update_metrics(self.combine_losses(token_losses, mask), token_losses, mask)
        return _logs({"loss": self.loss_tracker.result(),
                      "perplexity": self.perplexity_tracker.result()})

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "vocab_size": self.vocab_size,
            "clipnorm": self.clipnorm,
            "clipvalue": self.clipvalue,
            "loss_reduction": self.loss_reduction,
        }
