"""Named, tested configurations of the zoo's language models ("presets").

``zoo.get_model(name, vocab_size, **overrides)`` builds one; :data:`PRESETS` lists them.
"""

from __future__ import annotations

import inspect

from zoo.recurrent_lm import RecurrentLanguageModel
from zoo.transformer_lm import TransformerLanguageModel

_RNN = dict(embedding_dim=200, units=200, num_layers=2)

PRESETS = {
    # Elman RNN with tanh: h_t = tanh(W_hh h_{t-1} + W_xh x_t) (Elman 1990).
    "rnn": (RecurrentLanguageModel, dict(cell="rnn", **_RNN)),
    # IRNN: ReLU, identity W_hh, zero bias (Le, Jaitly & Hinton 2015).
    "irnn": (RecurrentLanguageModel, dict(cell="rnn", activation="relu",
                                          recurrent_initializer="identity", **_RNN)),
    "lstm": (RecurrentLanguageModel, dict(cell="lstm", **_RNN)),
    "gru": (RecurrentLanguageModel, dict(cell="gru", **_RNN)),
    # One-hot input vectors: the first LSTM kernel is the embedding.
    "lstm-one-hot": (RecurrentLanguageModel, dict(cell="lstm", embedding="one_hot", units=200,
                                                  num_layers=1)),
    "lstm-tied": (RecurrentLanguageModel, dict(cell="lstm", tie_embeddings=True, dropout=0.5,
                                               **_RNN)),
    # LSTM whose output attends over its own past outputs (causal), Luong-style.
    "lstm-attention": (RecurrentLanguageModel, dict(cell="lstm", attention="scaled_dot",
                                                    **_RNN)),
    # Gboard's keyboard shape (Hard et al. 2018): one CIFG layer, 96-wide embedding tied to
    # the output through a projection; 1.40M parameters at a 10k vocabulary.
    "keyboard": (RecurrentLanguageModel, dict(cell="cifg", num_layers=1, embedding_dim=96,
                                              units=320, tie_embeddings=True, dropout=0.25)),
    "transformer": (TransformerLanguageModel, dict(model_dim=128, num_layers=2, num_heads=4,
                                                   ffn_dim=512, max_length=256)),
}


def get_model(name, vocab_size, **overrides):
    """Build a language model from a preset.

    Args:
        name: a key of :data:`PRESETS`.
        vocab_size: number of token ids.
        **overrides: constructor arguments that replace the preset's.

    Returns:
        An uncompiled :class:`zoo.models.LanguageModel`.

    Raises:
        ValueError: unknown preset (the message lists them); an override the model does not
            take (the message lists those it does); invalid values (from the model).
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown model or preset {name!r}; known: {', '.join(PRESETS)}.")
    cls, defaults = PRESETS[name]
    accepted = (set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
                | {"name", "dtype", "trainable"})  # passed on to keras.Model
    unknown = set(overrides) - accepted
    if unknown:
        raise ValueError(f"Preset {name!r} ({cls.__name__}) does not take {sorted(unknown)}; "
                         f"it takes {sorted(accepted - {'vocab_size'})}.")
    return cls(vocab_size=vocab_size, **{**defaults, **overrides})
