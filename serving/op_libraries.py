"""Op libraries a SavedModel needs beyond core TensorFlow, loaded before the model.

A SavedModel with a subword front end (``zoo.front_ends``: WordPiece, SentencePiece,
characters) holds tensorflow-text ops (``FastWordpieceTokenizeWithOffsets``,
``TFText>FastSentencepieceTokenize``, ...). They are registered with TensorFlow only when
``tensorflow_text`` is imported; without it ``tf.saved_model.load`` fails deep inside with
"Op type not registered". ``tensorflow_model_server`` links tensorflow-text's op library
itself (``SUPPORTED_TENSORFLOW_OPS`` in tensorflow_serving/model_servers/BUILD), so these
SavedModels load there unchanged; ``nwp-serve`` imports ``tensorflow_text`` instead
(:func:`load_op_libraries`) and checks every op of a model before loading it
(:func:`check_model_ops`), so a missing library is one clear message, not a stack trace.
"""

from __future__ import annotations

import os

_IMPORT_ERROR = None
_TRIED = False


def load_op_libraries():
    """Import ``tensorflow_text`` once (registering its ops); returns None, or the import
    error's text if it could not be imported (the check then names the ops it lacks)."""
    global _IMPORT_ERROR, _TRIED
    if not _TRIED:
        _TRIED = True
        try:
            import tensorflow_text  # noqa: F401  registers the TF.Text ops
        except Exception as err:  # noqa: BLE001  ImportError, or a mismatched binary
            _IMPORT_ERROR = f"{type(err).__name__}: {err}"
    return _IMPORT_ERROR


def graph_ops(meta_graph):
    """The op names a MetaGraphDef uses: its graph's nodes and every library function's.

    Args:
        meta_graph: a ``tensorflow.core.protobuf.meta_graph_pb2.MetaGraphDef``.

    Returns:
        ``set`` of ``str``.
    """
    graph = meta_graph.graph_def
    ops = {node.op for node in graph.node}
    functions = {f.signature.name for f in graph.library.function}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    return ops - functions  # a call of a library function is not an op


def read_meta_graph(path, tag="serve"):
    """The MetaGraphDef with ``tag`` of the SavedModel in folder ``path``.

    Raises:
        OSError: no ``saved_model.pb``; ValueError: no MetaGraph with that tag.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        if tag in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"{path} has no MetaGraph tagged {tag!r}.")


class MissingOpsError(RuntimeError):
    """A model uses ops that no library loaded in this process registers."""


def check_model_ops(meta_graph, where="this model"):
    """Load the op libraries, then raise :class:`MissingOpsError` if ``meta_graph`` still
    uses an op TensorFlow does not know, naming the ops and what to install.

    Args:
        meta_graph: a MetaGraphDef.
        where: how to name the model in the message (its path).
    """
    from tensorflow.python.framework import op_def_registry

    import_error = load_op_libraries()
    missing = sorted(op for op in graph_ops(meta_graph) if op_def_registry.get(op) is None)
    if missing:
        import tensorflow as tf

        reason = (f"importing tensorflow_text failed ({import_error})" if import_error
                  else "tensorflow_text is loaded but does not register them")
        raise MissingOpsError(
            f"{where} needs TensorFlow ops this server cannot load: {', '.join(missing)}; "
            f"{reason}. Subword front ends use tensorflow-text ops: install the "
            f"tensorflow-text release that matches TensorFlow {tf.__version__} (pip install "
            "tensorflow-text), or serve the model with tensorflow_model_server, which links "
            "them.")
