"""The model zoo: recurrent cells, attention, language models, samplers, text front ends,
the word search over subword pieces.

Keras layers and models only; imports keras and tensorflow, never ``training`` or
``serving``.
"""

from zoo.attention import AdditiveAttention, DotProductAttention, MultiHeadAttention
from zoo.cells import CIFGCell, GRUCell, LSTMCell, RNNCell
from zoo.front_ends import KINDS, FrontEnd, FrontEndError, fit_front_end, load_front_end
from zoo.models import LanguageModel, Perplexity
from zoo.predictor import NextWordPredictor
from zoo.presets import PRESETS, get_model
from zoo.recurrent_lm import LSTMLanguageModel, RecurrentLanguageModel
from zoo.text import WordVectorizer
from zoo.transformer_lm import TransformerDecoderBlock, TransformerLanguageModel
from zoo.word_search import WordBeamSearch, word_search_for

__all__ = [
    "AdditiveAttention",
    "CIFGCell",
    "DotProductAttention",
    "FrontEnd",
    "FrontEndError",
    "GRUCell",
    "KINDS",
    "LSTMCell",
    "LSTMLanguageModel",
    "LanguageModel",
    "MultiHeadAttention",
    "NextWordPredictor",
    "PRESETS",
    "Perplexity",
    "RNNCell",
    "RecurrentLanguageModel",
    "TransformerDecoderBlock",
    "TransformerLanguageModel",
    "WordBeamSearch",
    "WordVectorizer",
    "fit_front_end",
    "get_model",
    "load_front_end",
    "word_search_for",
]
