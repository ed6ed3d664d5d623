"""Loaded model versions and the models a server holds.

A *servable* is one SavedModel version directory (``<base_path>/<version>/``) loaded with
``tf.saved_model.load``. Versions are discovered the way TF Serving discovers them: a
child of the base path is a version iff its name is a non-negative integer, so hidden or
temporary export folders (``.tmp-7-123``) are never picked up.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading

from google.protobuf import json_format

from serving.errors import ServingError, invalid
from serving.limits import parse_version

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"


def list_versions(base_path):
    """``{version: path}`` for the children of ``base_path`` named by a version number
    (ASCII digits, 1 .. 2**63 - 1: :func:`serving.limits.parse_version`); other names
    (``.tmp-3-99``, ``²``, ``0``, ``01x``) are ignored."""
    versions = {}
    try:
        names = os.listdir(base_path)
    except OSError:
        return versions
    for name in names:
        path = os.path.join(base_path, name)
        version = parse_version(name)
        if version is not None and os.path.isdir(path):
            versions.setdefault(version, path)
    return versions


MAX_POLL_SECONDS = 86400.0


def check_poll_seconds(seconds):
    """Return ``seconds`` as a float if it is a usable poll interval: finite, 0 (load once)
    .. :data:`MAX_POLL_SECONDS` (a day).

    Raises:
        ValueError: NaN, infinite, negative or larger values, saying what is allowed.
    """
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"--file_system_poll_wait_seconds must be a number, got "
                         f"{seconds!r}.") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_POLL_SECONDS):
        raise ValueError(f"--file_system_poll_wait_seconds must be between 0 (load once) and "
                         f"{MAX_POLL_SECONDS:g} seconds, got {seconds!r}.")
    return value


def _graph_error_message(err):
    """The useful line of a TensorFlow error (``input must be a vector, ...``), no stack."""
    text = getattr(err, "message", None) or str(err)
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[", "\t")
    lines = [line.strip() for line in text.split("\n")
             if line.strip() and not line.lstrip(" ").startswith(skip)]
    return "; ".join(lines) or text.strip()


class Servable:
    """One loaded SavedModel version.

    A signature whose outputs vary in width past dimension 0 (``score``, whose memory
    grows with rows x tokens x vocabulary) runs in chunks of rows holding at most
    :attr:`tokens_per_run` estimated tokens each (:func:`serving.limits.estimate_tokens`),
    and the chunks' outputs are zero-padded to the widest and concatenated: the answer is
    the one a single run gives, in bounded memory.

    Args:
        name: model name.
        version: int version.
        path: the version directory.

    Raises:
        OSError / ValueError from TensorFlow: the directory is not a loadable SavedModel.
        serving.op_libraries.MissingOpsError: the model uses ops (tensorflow-text's) that
            this process cannot load.
    """

    tokens_per_run = 4096

    def __init__(self, name, version, path):
        import tensorflow as tf

        from serving.op_libraries import check_model_ops, read_meta_graph

        self.name, self.version, self.path = name, version, path
        meta_graph = read_meta_graph(path)
        # tensorflow-text ops (subword front ends) are registered by importing it first
        check_model_ops(meta_graph, f"Model {name!r} version {version} ({path})")
        self.signature_defs = dict(meta_graph.signature_def)
        self._loaded = tf.saved_model.load(path)
        self._tf = tf
        # Per-signature facts asked for on every request, worked out once.
        self._batchable = {key: _fixed_output_shapes(sig)
                           for key, sig in self.signature_defs.items()}
        self._input_dtypes = {
            key: {alias: tf.dtypes.as_dtype(info.dtype) for alias, info in sig.inputs.items()}
            for key, sig in self.signature_defs.items()}

    def signature(self, signature_name):
        """Return ``(key, SignatureDef)``; ``""`` means ``serving_default``.

        Raises:
            ServingError: INVALID_ARGUMENT for an unknown signature (TF Serving's REST text).
        """
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs:
            raise invalid(f'Serving signature name: "{key}" not found in signature def')
        return key, self.signature_defs[key]

    def batchable(self, signature_name):
        """True if every output of the signature has a fixed shape past dimension 0, so
        rows of several requests can be concatenated and split back unchanged."""
        return self._batchable.get(signature_name or DEFAULT_SIGNATURE, False)

    def refuse_classify_regress(self, verb, signature_name):
        """Raise TF Serving's error for ``:classify``/``:regress`` on this servable's
        signature: every signature here is a predict signature (reference section 1.10).

        Raises:
            ServingError: always (INVALID_ARGUMENT).
        """
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs:
            raise invalid(f"No signature was found with the name: {key}")
        sig = self.signature_defs[key]
        if verb == "classify":
            raise invalid(f"No classification inputs found in SignatureDef: {sig}".strip())
        if len(sig.outputs) != 1:
            raise invalid("Expected one output Tensor.")
        raise invalid(f"No regression inputs found in SignatureDef: {sig}".strip())

    def input_dtypes(self, signature_name):
        """``{alias: tf.DType}`` of a signature's inputs.

        Raises:
            ServingError: unknown signature, or a signature with no inputs.
        """
        key, sig = self.signature(signature_name)
        if not sig.inputs:
            label = "DEFAULT" if key == DEFAULT_SIGNATURE else key
            raise invalid(f"Failed to get input map for signature: {label}")
        return dict(self._input_dtypes[key])

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
        if self.batchable(key):
            return self._run(key, inputs)
        return _run_in_chunks(lambda chunk: self._run(key, chunk), inputs,
                              self.tokens_per_run)

    def _run(self, key, inputs):
        fn = self._loaded.signatures[key]
        tf = self._tf
        try:
            dtypes = self._input_dtypes[key]
            feeds = {alias: tf.constant(value, dtype=dtypes[alias])
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


def _run_in_chunks(run, inputs, tokens_per_run):
    """``run`` over consecutive row chunks of ``inputs`` (each chunk at most
    ``tokens_per_run`` estimated tokens, at least one row), outputs zero-padded (b"" for
    strings) past dimension 0 to the widest chunk and concatenated along dimension 0."""
    import numpy as np

    from serving.limits import estimate_tokens

    rows = {a.shape[0] if getattr(a, "ndim", 0) else None for a in inputs.values()}
    if len(rows) != 1 or None in rows or next(iter(rows)) <= 1:
        return run(inputs)  # scalars or mismatched rows: the graph decides
    n = next(iter(rows))
    bounds, start, used = [], 0, 0
    for i in range(n):
        cost = estimate_tokens("", {a: v[i:i + 1] for a, v in inputs.items()})
        if i > start and used + cost > tokens_per_run:
            bounds.append((start, i))
            start, used = i, 0
        used += cost
    bounds.append((start, n))
    if len(bounds) == 1:
        return run(inputs)
    parts = [run({a: v[lo:hi] for a, v in inputs.items()}) for lo, hi in bounds]
    merged = {}
    for alias in parts[0]:
        arrays = [p[alias] for p in parts]
        if arrays[0].ndim <= 1:
            merged[alias] = np.concatenate(arrays)
            continue
        width = [max(a.shape[d] for a in arrays) for d in range(1, arrays[0].ndim)]
        fill = b"" if arrays[0].dtype == object else 0
        padded = []
        for a in arrays:
            pad = [(0, 0)] + [(0, w - a.shape[d + 1]) for d, w in enumerate(width)]
            padded.append(np.pad(a, pad, constant_values=fill) if any(p[1] for p in pad)
                          else a)
        merged[alias] = np.concatenate(padded)
    return merged


def _fixed_output_shapes(sig):
    """True if every output of SignatureDef ``sig`` has a known shape past dimension 0."""
    for info in sig.outputs.values():
        dims = [d.size for d in info.tensor_shape.dim]
        if info.tensor_shape.unknown_rank or not dims or any(d < 0 for d in dims[1:]):
            return False
    return True


def check_rows(shapes, limit):
    """Refuse (INVALID_ARGUMENT) inputs with more than ``limit`` rows in dimension 0.

    Args:
        shapes: ``{alias: shape}`` (a tuple or list of ints; ``()`` for a scalar).
        limit: the most rows one request may have (``--max_batch_size_per_request``).

    Raises:
        ServingError: INVALID_ARGUMENT naming the input and the limit.
    """
    for alias, shape in shapes.items():
        if len(shape) and shape[0] > limit:
            raise invalid(f"Input {alias} has {shape[0]} rows; this server takes at most "
                          f"{limit} per request (--max_batch_size_per_request). Split the "
                          "request.")


@dataclasses.dataclass
class ModelConfig:
    """One served model: where its versions are and which to serve.

    Attributes:
        base_path: folder of numbered version folders.
        policy: ``"latest"`` (the ``num_versions`` highest), ``"all"`` or ``"specific"``
            (``versions``), as TF Serving's ``model_version_policy``.
        num_versions: for ``"latest"``, >= 1.
        versions: for ``"specific"``.
        labels: ``{label: version}`` (``/labels/<label>`` in requests).
    """

    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple = ()
    labels: dict = dataclasses.field(default_factory=dict)

    def aspired(self, on_disk):
        """The versions to serve, from the versions found on disk."""
        if self.policy == "all":
            return set(on_disk)
        if self.policy == "specific":
            return set(self.versions) & set(on_disk)
        return set(sorted(on_disk)[-self.num_versions:])


def read_model_config_file(path):
    """``{name: ModelConfig}`` from a ModelServerConfig text proto (``--model_config_file``).

    Raises:
        ValueError: unreadable or invalid text proto, a model without name or base_path.
    """
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    try:
        with open(path, encoding="utf-8") as f:
            config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    except (OSError, text_format.ParseError) as err:
        raise ValueError(f"Cannot read the model config file {path}: {err}") from None
    models = {}
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise ValueError(f"{path}: every model needs a name and a base_path.")
        policy = model.model_version_policy.WhichOneof("policy_choice") or "latest"
        models[model.name] = ModelConfig(
            base_path=model.base_path, policy=policy,
            num_versions=model.model_version_policy.latest.num_versions or 1,
            versions=tuple(model.model_version_policy.specific.versions),
            labels=dict(model.version_labels))
    if not models:
        raise ValueError(f"{path} configures no model (model_config_list is empty).")
    return models


class ModelManager:
    """The models a server serves, kept in step with the file system.

    Args:
        models: ``{name: ModelConfig}`` (or ``{name: base_path}`` for the default policy,
            the highest version).
        loader: ``(name, version, path) -> Servable``; tests pass a fake.

    :meth:`poll` (and the background thread of :meth:`start_polling`) loads every aspired
    version that is not loaded yet and only then unloads the versions no longer aspired, so a
    model never has no version while a good one exists (TF Serving's
    ``AvailabilityPreservingPolicy``). A version that fails to load (a half-written folder, a
    broken SavedModel) is reported as ``END`` with its error, never replaces a loaded one,
    and drops out of the policy until its folder changes, when it is tried again. (TF
    Serving keeps aspiring a failed highest version, so a good lower version dropped in
    after it is not served; here it is.) Lookups are thread-safe.
    """

    def __init__(self, models, loader=None):
        self.configs = {name: c if isinstance(c, ModelConfig) else ModelConfig(c)
                        for name, c in models.items()}
        self.base_paths = {name: c.base_path for name, c in self.configs.items()}
        self._loader = loader or Servable
        self._servables = {name: {} for name in self.configs}
        self._states = {name: {} for name in self.configs}  # version -> (state, code, msg)
        self._failed = {name: {} for name in self.configs}  # version -> folder mtime
        self._poll_errors = {}  # name -> message of the last failed poll
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def load(self):
        """First load; raises ``RuntimeError`` if a model then has no available version
        (``tensorflow_model_server`` would wait for one forever; we say what is missing) or
        a version label points at a version that is not available."""
        self.poll()
        for name, config in self.configs.items():
            for label, version in config.labels.items():
                if version not in self._servables[name]:
                    raise RuntimeError(
                        f"Version label {label!r} of model {name!r} points at version "
                        f"{version}, which is not available (TF Serving refuses such labels).")
            if not self._servables[name]:
                errors = [m for st, code, m in self._states[name].values() if code != "OK"]
                if name in self._poll_errors:
                    errors.append(self._poll_errors[name])
                raise RuntimeError(
                    f"No loadable version of model {name!r} under {config.base_path}: expected "
                    "a folder named by an integer (e.g. 1/) holding a SavedModel (nwp-export "
                    "writes one)." + (f" Load errors: {'; '.join(errors)}" if errors else ""))

    def poll(self):
        """One pass over every model's base path (see the class docstring).

        An exception while polling one model (an unreadable folder, a loader bug) is logged
        and reported in that model's status (``poll_error``); the other models are polled
        and the versions being served keep serving. It is cleared by the next clean pass.
        """
        for name, config in self.configs.items():
            try:
                self._poll_model(name, config)
            except Exception as err:  # noqa: BLE001  the poller must outlive any surprise
                log.exception("polling model %r under %s failed", name, config.base_path)
                with self._lock:
                    self._poll_errors[name] = (f"Polling {config.base_path} failed: "
                                               f"{type(err).__name__}: {err}")
            else:
                with self._lock:
                    self._poll_errors.pop(name, None)

    def _poll_model(self, name, config):
        """One pass over one model's base path (see :meth:`poll`)."""
        on_disk = list_versions(config.base_path)
        loaded = dict(self._servables[name])
        while True:  # a version that fails drops out, and the next best is aspired
            mtimes = {v: _mtime(p) for v, p in on_disk.items()}
            aspired = config.aspired(
                {v: p for v, p in on_disk.items() if self._failed[name].get(v) != mtimes[v]})
            failed_now = False
            for version in sorted(aspired - set(loaded), reverse=True):
                self._set_state(name, version, "LOADING", "OK", "")
                try:
                    loaded[version] = self._loader(name, version, on_disk[version])
                except Exception as err:  # noqa: BLE001  a broken version: report, go on
                    self._failed[name][version] = mtimes[version]
                    self._set_state(name, version, "END", "UNKNOWN",  # as TF Serving
                                    f"Failed to load {on_disk[version]}: "
                                    f"{type(err).__name__}: {err}")
                    failed_now = True
                    continue
                self._failed[name].pop(version, None)
                self._set_state(name, version, "AVAILABLE", "OK", "")
            if not failed_now:
                break
        if any(v in aspired for v in loaded):  # never drop the last good version
            for version in [v for v in loaded if v not in aspired]:
                del loaded[version]
                self._set_state(name, version, "END", "OK", "")
        with self._lock:
            self._servables[name] = loaded

    def start_polling(self, seconds):
        """Poll every ``seconds`` in a daemon thread (TF Serving's
        ``--file_system_poll_wait_seconds``); ``0`` does nothing.

        Raises:
            ValueError: ``seconds`` is not a finite number in 0 .. one day
                (:func:`check_poll_seconds`).
        """
        seconds = check_poll_seconds(seconds)
        if seconds == 0 or self._thread is not None:
            return

        def loop():
            while not self._stop.wait(seconds):
                try:
                    self.poll()
                except BaseException:  # noqa: BLE001  poll() catches per model; belt and braces
                    log.exception("version poll failed; polling goes on")

        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop_polling(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _set_state(self, name, version, state, code, message):
        with self._lock:
            self._states[name][version] = (state, code, message)

    def known(self, name):
        """True if ``name`` is a configured model."""
        return name in self.configs

    def status(self, name, version=None):
        """The ``GetModelStatusResponse`` body: every version seen, newest first."""
        with self._lock:
            states = dict(self._states.get(name) or {})
            poll_error = self._poll_errors.get(name)
        if not states:
            raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise ServingError("NOT_FOUND", f"Could not find version {version} of model "
                                                f"{name}")
            states = {version: states[version]}
        answer = {"model_version_status": [
            {"version": str(v), "state": states[v][0],
             "status": {"error_code": states[v][1], "error_message": states[v][2]}}
            for v in sorted(states, reverse=True)]}
        if poll_error:  # not in TF Serving's answer; gRPC leaves it out
            answer["poll_error"] = poll_error
        return answer

    def get(self, name, version=None, label=None):
        """The servable for a request: a labelled or specific version, or the latest.

        Raises:
            ServingError: NOT_FOUND for an unknown model or version (HTTP 404);
            INVALID_ARGUMENT for an unknown label.
        """
        with self._lock:
            versions = dict(self._servables.get(name) or {})
        if label is not None:
            labels = self.configs[name].labels if name in self.configs else {}
            if label not in labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if version is None:
            if not versions:
                raise ServingError("NOT_FOUND",
                                   f"Servable not found for request: Latest({name})")
            return versions[max(versions)]
        if version not in versions:
            raise ServingError("NOT_FOUND",
                               f"Servable not found for request: Specific({name}, {version})")
        return versions[version]


def _mtime(path):
    """Newest modification time (and total size) of anything in a version folder: changes
    when a copy in progress completes a file in place."""
    try:
        newest, size = os.stat(path).st_mtime_ns, 0
        for folder, _, files in os.walk(path):
            for name in files:
                st = os.stat(os.path.join(folder, name))
                newest, size = max(newest, st.st_mtime_ns), size + st.st_size
        return newest, size
    except OSError:
        return None
