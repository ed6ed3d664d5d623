"""Loaded model versions and the models a server holds.

A *servable* is one SavedModel version directory (``<base_path>/<version>/``) loaded with
``tf.saved_model.load``. Versions are discovered the way TF Serving discovers them: a
child of the base path is a version iff its name is a non-negative integer, so hidden or
temporary export folders (``.tmp-7-123``) are never picked up.
"""

from __future__ import annotations

import os
import threading

from google.protobuf import json_format

from serving.errors import ServingError, invalid

DEFAULT_SIGNATURE = "serving_default"


def list_versions(base_path):
    """``{version: path}`` for the children of ``base_path`` named by an integer."""
    versions = {}
    try:
        names = os.listdir(base_path)
    except OSError:
        return versions
    for name in names:
        path = os.path.join(base_path, name)
        if name.isdigit() and os.path.isdir(path):
            versions.setdefault(int(name), path)
    return versions


def _graph_error_message(err):
    """The useful line of a TensorFlow error (``input must be a vector, ...``), no stack."""
    text = getattr(err, "message", None) or str(err)
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[", "\t")
    lines = [line.strip() for line in text.split("\n")
             if line.strip() and not line.lstrip(" ").startswith(skip)]
    return "; ".join(lines) or text.strip()


class Servable:
    """One loaded SavedModel version.

    Args:
        name: model name.
        version: int version.
        path: the version directory.

    Raises:
        OSError / ValueError from TensorFlow: the directory is not a loadable SavedModel.
    """

    def __init__(self, name, version, path):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.name, self.version, self.path = name, version, path
        proto = saved_model_pb2.SavedModel()
        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            proto.ParseFromString(f.read())
        meta_graph = next(m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags)
        self.signature_defs = dict(meta_graph.signature_def)
        self._loaded = tf.saved_model.load(path)
        self._tf = tf

    def signature(self, signature_name):
        """Return ``(key, SignatureDef)``; ``""`` means ``serving_default``.

        Raises:
            ServingError: INVALID_ARGUMENT for an unknown signature (TF Serving's REST text).
        """
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs:
            raise invalid(f'Serving signature name: "{key}" not found in signature def')
        return key, self.signature_defs[key]

    def input_dtypes(self, signature_name):
        """``{alias: tf.DType}`` of a signature's inputs.

        Raises:
            ServingError: unknown signature, or a signature with no inputs.
        """
        key, sig = self.signature(signature_name)
        if not sig.inputs:
            label = "DEFAULT" if key == DEFAULT_SIGNATURE else key
            raise invalid(f"Failed to get input map for signature: {label}")
        return {alias: self._tf.dtypes.as_dtype(info.dtype) for alias, info in sig.inputs.items()}

    def predict(self, signature_name, inputs):
        """Run a signature on NumPy inputs; returns ``{alias: np.ndarray}``.

        Raises:
            ServingError: INVALID_ARGUMENT for inputs that do not match the signature or
            that the graph rejects (TF Serving answers these with 400 too).
        """
        key, sig = self.signature(signature_name)
        if set(inputs) != set(sig.inputs):
            raise invalid(f"input size does not match signature: {len(inputs)}!="
                          f"{len(sig.inputs)} len({{{','.join(sorted(inputs))}}}) != "
                          f"len({{{','.join(sorted(sig.inputs))}}})")
        fn = self._loaded.signatures[key]
        tf = self._tf
        try:
            feeds = {alias: tf.constant(value, dtype=tf.dtypes.as_dtype(sig.inputs[alias].dtype))
                     for alias, value in inputs.items()}
            outputs = fn(**feeds)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
            raise invalid(_graph_error_message(err)) from None
        return {alias: tensor.numpy() for alias, tensor in outputs.items()}

    def metadata(self):
        """The ``GET .../metadata`` body: model_spec plus every SignatureDef, as TF Serving."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in self.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
        return {
            "model_spec": {"name": self.name, "signature_name": "",
                           "version": str(self.version)},
            "metadata": {"signature_def": json_format.MessageToDict(
                sig_map, preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True)},
        }


class ModelManager:
    """The models a server serves: ``name -> {version: Servable}``, thread-safe lookups.

    Args:
        models: ``{name: base_path}``.

    ``load()`` loads the highest version of every model (TF Serving's default version
    policy, ``latest { num_versions: 1 }``) and raises ``RuntimeError`` if a model has no
    loadable version, as ``tensorflow_model_server`` refuses to start then.
    """

    def __init__(self, models):
        self.base_paths = dict(models)
        self._servables = {name: {} for name in self.base_paths}
        self._lock = threading.Lock()

    def load(self):
        for name, base in self.base_paths.items():
            versions = list_versions(base)
            if not versions:
                raise RuntimeError(
                    f"No version of model {name!r} under {base}: expected a folder named by "
                    "an integer (e.g. 1/) holding a SavedModel. Export one with nwp-export.")
            version = max(versions)
            servable = Servable(name, version, versions[version])
            with self._lock:
                self._servables[name] = {version: servable}

    def status(self, name, version=None):
        """The ``GetModelStatusResponse`` body for a model (all versions, newest first)."""
        with self._lock:
            versions = self._servables.get(name)
        if not versions:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        if version is not None:
            if version not in versions:
                raise ServingError("NOT_FOUND", f"Could not find version {version} of model "
                                                f"{name}")
            chosen = [version]
        else:
            chosen = sorted(versions, reverse=True)
        return {"model_version_status": [
            {"version": str(v), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}} for v in chosen]}

    def get(self, name, version=None, label=None):
        """The servable for a request: a specific version, or the latest.

        Raises:
            ServingError: NOT_FOUND for an unknown model or version (HTTP 404);
            INVALID_ARGUMENT for a version label, which this server does not define yet.
        """
        if label is not None:
            raise invalid(f"Unrecognized servable version label: {label}")
        with self._lock:
            versions = self._servables.get(name) or {}
        if version is None:
            if not versions:
                raise ServingError("NOT_FOUND",
                                   f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        if version not in versions:
            raise ServingError("NOT_FOUND",
                               f"Servable not found for request: Specific({name}, {version})")
        return versions[version]
