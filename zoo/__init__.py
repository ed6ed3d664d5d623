"""The model zoo: recurrent cells, language models and the text front end.

Keras layers and models only; imports keras and tensorflow, never ``training`` or
``serving``.
"""

from zoo.attention import AdditiveAttention, DotProductAttention, MultiHeadAttention
from zoo.cells import GRUCell, LSTMCell, RNNCell
from zoo.models import LanguageModel, LSTMLanguageModel, Perplexity, get_model
from zoo.predictor import NextWordPredictor
from zoo.text import WordVectorizer

__all__ = [
    "AdditiveAttention",
    "DotProductAttention",
    "MultiHeadAttention",
    "GRUCell",
    "LSTMCell",
    "RNNCell",
    "LanguageModel",
    "LSTMLanguageModel",
    "NextWordPredictor",
    "Perplexity",
    "WordVectorizer",
    "get_model",
]
