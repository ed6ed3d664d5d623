"""How models leave: SavedModel export, a TF-Serving-compatible REST server and a client. Depends on zoo, never on training.

``from serving import export_saved_model, LiteRTPredictor`` works; each name's module is
imported on first use (PEP 562 module ``__getattr__``), so ``import serving.litert`` still
runs without TensorFlow.
"""

import importlib

_EXPORTS = {
    "export_saved_model": "serving.export",
    "LiteRTPredictor": "serving.litert",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import ``name``'s module on first access; ``AttributeError`` for unknown names."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'serving' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
