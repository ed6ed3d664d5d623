"""How models learn: corpora, tf.data pipelines and the training command. Depends on zoo.

The names a script needs are importable from the package itself::

    from training import load_corpus, window_dataset, stream_dataset, adding_problem

They are loaded on first use (PEP 562 module ``__getattr__``), so ``import training`` and
``nwp-train --help`` do not import TensorFlow.
"""

import importlib

_EXPORTS = {
    "CORPORA": "training.corpora",
    "Corpus": "training.corpora",
    "CorpusError": "training.corpora",
    "embedded_default": "training.corpora",
    "load_corpus": "training.corpora",
    "make_streams": "training.data",
    "make_windows": "training.data",
    "stream_dataset": "training.data",
    "window_dataset": "training.data",
    "adding_problem": "training.synthetic",
    "copy_task": "training.synthetic",
    "GradientFlow": "training.diagnostics",
    "hidden_state_gradient_norms": "training.diagnostics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import ``name``'s module on first access; ``AttributeError`` for unknown names."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
