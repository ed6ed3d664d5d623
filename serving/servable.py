"""Loaded model versions and the models a server holds.

A *servable* is one SavedModel version directory (``<base_path>/<version>/``). A SavedModel
written by TensorFlow 2 (``tf.saved_model.save``: it has an object graph) is loaded with
``tf.saved_model.load``; one written the TensorFlow 1 way (``SavedModelBuilder``, no object
graph; reference variables such as ``float_ref``, ``ParseExample``-based signatures) is loaded
the way TF Serving's ``SavedModelBundle`` loads every model: its MetaGraph imported into a graph
of its own and restored in a ``tf.compat.v1.Session`` (``tf.compat.v1.saved_model.loader.load``),
signatures run by feeding and fetching their tensor names. Versions are discovered the way
TF Serving discovers them: a child of the base path is a version iff its name is a non-
negative integer, so hidden or temporary export folders (``.tmp-7-123``) are never picked
up.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading

import numpy as np
from google.protobuf import json_format

from serving.errors import ServingError, invalid
from serving.limits import parse_version

log = logging.getLogger(__name__)

# The signature a request without signature_name gets, and the one nwp-export writes:
# TensorFlow's tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY, spelled out so that this
# module imports without TensorFlow (a test checks they are equal).
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


def check_poll_seconds(seconds, flag="file_system_poll_wait_seconds"):
    """Return ``seconds`` as a float if it is a usable poll interval: finite, 0 (load once)
    .. :data:`MAX_POLL_SECONDS` (a day). ``flag`` names it in the error.

    Raises:
        ValueError: NaN, infinite, negative or larger values, saying what is allowed.
    """
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"--{flag} must be a number, got {seconds!r}.") from None
    if not (math.isfinite(value) and 0 <= value <= MAX_POLL_SECONDS):
        raise ValueError(f"--{flag} must be between 0 (load once) and "
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
        prefer_tflite: answer ``serving_default`` with the LiteRT bundle (``model.tflite``,
            ``nwp-export --litert``) when the folder has one (``--prefer_tflite_model``;
            :class:`LiteRTDefault`); the other signatures run in the SavedModel.

    Raises:
        OSError / ValueError from TensorFlow: the directory is not a loadable SavedModel.
        serving.litert.BundleError: ``prefer_tflite`` and a ``model.tflite`` that is not a
            usable bundle.
        serving.op_libraries.MissingOpsError: the model uses ops (tensorflow-text's) that
            this process cannot load.
    """

    tokens_per_run = 4096
    tf1 = False
    _session_run = None  # TF1 exports: _session_runner's function
    litert = None  # a LiteRTDefault answering serving_default (--prefer_tflite_model)

    def __init__(self, name, version, path, prefer_tflite=False):
        import tensorflow as tf

        from serving.op_libraries import check_model_ops, read_meta_graph

        self.name, self.version, self.path = name, version, path
        meta_graph = read_meta_graph(path)
        # tensorflow-text ops (subword front ends) are registered by importing it first
        check_model_ops(meta_graph, f"Model {name!r} version {version} ({path})")
        self.signature_defs = dict(meta_graph.signature_def)
        self.tf1 = is_tf1_export(meta_graph)
        self._tf = tf
        if self.tf1:
            self._session_run = _session_runner(path, meta_graph)
        else:
            self._loaded = tf.saved_model.load(path)
        from serving.litert import TFLITE_FILE

        if prefer_tflite and os.path.exists(os.path.join(path, TFLITE_FILE)):
            self.litert = LiteRTDefault(path, self.signature_defs.get(DEFAULT_SIGNATURE))
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
        tf = self._tf
        dtypes = self._input_dtypes[key]
        try:
            if self.litert is not None and key == DEFAULT_SIGNATURE:
                return self.litert(inputs)
            if self._session_run is not None:
                return self._session_run(key, inputs, dtypes)
            feeds = {alias: tf.constant(value, dtype=dtypes[alias])
                     for alias, value in inputs.items()}
            outputs = self._loaded.signatures[key](**feeds)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as err:
            raise invalid(_graph_error_message(err)) from None
        return {alias: tensor.numpy() for alias, tensor in outputs.items()}

    def signature_def_map(self):
        """Every SignatureDef as a ``tensorflow.serving.SignatureDefMap`` proto: the
        ``signature_def`` metadata of ``GetModelMetadata`` (gRPC) and ``GET .../metadata``."""
        from tensorflow_serving.apis import get_model_metadata_pb2

        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for key, sig in self.signature_defs.items():
            sig_map.signature_def[key].CopyFrom(sig)
        return sig_map

    def metadata(self):
        """The ``GET .../metadata`` body: model_spec plus every SignatureDef, as TF Serving."""
        return {
            "model_spec": {"name": self.name, "signature_name": "",
                           "version": str(self.version)},
            "metadata": {"signature_def": json_format.MessageToDict(
                self.signature_def_map(), preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True)},
        }


class LiteRTDefault:
    """``serving_default`` (``text`` -> ``words``, ``probabilities``) computed with the LiteRT
    bundle of a version folder (:class:`serving.litert.LiteRTPredictor`), for
    ``--prefer_tflite_model``.

    TF Serving's flag serves the ``.tflite`` file's own signatures; an ``nwp-export --litert``
    bundle holds only the one-step ``step`` signature (token id and state in, logits and state
    out), so here the flag means: the words and probabilities of ``serving_default``, read
    token by token through ``step`` by the bundle's runner (the prompt as the start of a line,
    its last ``max_prompt_tokens`` tokens, padding and ``[UNK]`` never suggested), the
    answer the SavedModel gives to within float32 rounding. One interpreter per version;
    calls take turns (a lock), prompt by prompt.

    Args:
        path: the version folder.
        signature_def: the SavedModel's ``serving_default`` SignatureDef: its ``words``
            width is the number of words answered (else the bundle's ``top_k``).

    Raises:
        serving.litert.BundleError: not a usable bundle.
        ValueError: ``serving_default`` is not the ``text`` -> ``words``/``probabilities``
            signature of an nwp export.
    """

    def __init__(self, path, signature_def):
        from serving.litert import LiteRTPredictor

        if signature_def is None or set(signature_def.inputs) != {"text"} or \
                set(signature_def.outputs) != {"words", "probabilities"}:
            raise ValueError(f"{path}: --prefer_tflite_model serves the serving_default of "
                             "nwp-export models (text -> words, probabilities); this "
                             "SavedModel's differs.")
        self.predictor = LiteRTPredictor.load(path)
        dims = signature_def.outputs["words"].tensor_shape.dim
        self.k = (dims[1].size if len(dims) == 2 and dims[1].size > 0
                  else int(self.predictor.manifest.get("top_k", 5)))
        self._lock = threading.Lock()

    def __call__(self, inputs):
        """``{"text": object array [n] of bytes}`` -> ``{"words": object [n, k] bytes,
        "probabilities": float32 [n, k]}``.

        Raises:
            ServingError: INVALID_ARGUMENT for ``text`` that is not a vector.
        """
        texts = np.asarray(inputs["text"], dtype=object)
        if texts.ndim != 1:
            raise invalid(f"input must be a vector, got shape: {list(texts.shape)}")
        words = np.full((len(texts), self.k), b"", dtype=object)
        probabilities = np.zeros((len(texts), self.k), np.float32)
        with self._lock:
            for row, text in enumerate(texts):
                if isinstance(text, bytes):
                    text = text.decode("utf-8", "replace")
                for col, (word, p) in enumerate(self.predictor.suggest(str(text), self.k)):
                    words[row, col], probabilities[row, col] = word.encode("utf-8"), p
        return {"words": words, "probabilities": probabilities}


def is_tf1_export(meta_graph):
    """True if MetaGraphDef ``meta_graph`` was written the TensorFlow 1 way
    (``SavedModelBuilder``, ``tf.estimator``): it has no object graph, which
    ``tf.saved_model.save`` always writes."""
    return not meta_graph.object_graph_def.nodes


def _session_runner(path, meta_graph):
    """Load the TF1-style SavedModel at ``path`` as TF Serving's ``SavedModelBundle`` does
    (``tensorflow_serving/servables/tensorflow/saved_model_bundle_factory.cc`` via
    ``LoadSessionBundleOrSavedModelBundle``): the MetaGraph tagged ``serve`` imported into its
    own ``tf.Graph``, variables restored and the init op run in its own ``tf.compat.v1.Session``
    (thread pools as ``--tensorflow_intra_op_parallelism``/``--tensorflow_inter_op_parallelism``
    set them). Returns ``run(key, inputs, dtypes) -> {alias: np.ndarray}`` (``inputs``:
    ``{alias: np.ndarray}``, cast to ``dtypes``, ``{alias: tf.DType}``), which feeds each
    input's tensor and fetches each output's (``Session.run`` is thread-safe).

    Raises:
        OSError / ValueError / tf.errors.OpError: the SavedModel cannot be restored.
    """
    import tensorflow as tf

    v1 = tf.compat.v1
    config = v1.ConfigProto(
        intra_op_parallelism_threads=tf.config.threading.get_intra_op_parallelism_threads(),
        inter_op_parallelism_threads=tf.config.threading.get_inter_op_parallelism_threads())
    graph = tf.Graph()
    session = v1.Session(graph=graph, config=config)
    # The loader logs that it is deprecated in favour of tf.saved_model.load, which is the
    # wrong advice for a server loading a TF1 export; the notice is kept out of the log.
    tf_log = logging.getLogger("tensorflow")
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        v1.saved_model.loader.load(session, list(meta_graph.meta_info_def.tags), path)
    finally:
        tf_log.setLevel(level)
    fetches = {key: {alias: graph.get_tensor_by_name(info.name)
                     for alias, info in sig.outputs.items()}
               for key, sig in meta_graph.signature_def.items()}
    feeds = {key: {alias: graph.get_tensor_by_name(info.name)
                   for alias, info in sig.inputs.items()}
             for key, sig in meta_graph.signature_def.items()}

    def run(key, inputs, dtypes):
        feed = {feeds[key][alias]: np.asarray(value, dtype=dtypes[alias].as_numpy_dtype)
                for alias, value in inputs.items()}
        return session.run(fetches[key], feed_dict=feed)

    run.session = session  # keeps the session alive as long as the servable
    return run


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
        self._config_error = None  # message of the last failed config file reload
        self._lock = threading.Lock()  # guards the dicts read by requests
        self._work = threading.RLock()  # one poll or reconfiguration at a time
        self._stop = threading.Event()
        self._threads = []

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
        with self._work:
            for name, config in self.configs.items():
                self._poll_one(name, config)

    def _poll_one(self, name, config, fresh=False):
        """:meth:`_poll_model`, its exception logged and kept as the model's poll error."""
        try:
            self._poll_model(name, config, fresh)
        except Exception as err:  # noqa: BLE001  the poller must outlive any surprise
            log.exception("polling model %r under %s failed", name, config.base_path)
            with self._lock:
                self._poll_errors[name] = (f"Polling {config.base_path} failed: "
                                           f"{type(err).__name__}: {err}")
        else:
            with self._lock:
                self._poll_errors.pop(name, None)

    def _poll_model(self, name, config, fresh=False):
        """One pass over one model's base path (see :meth:`poll`). ``fresh``: the base path
        changed, so no loaded version counts as loaded (the old ones serve until a new one
        is available, then are unloaded)."""
        on_disk = list_versions(config.base_path)
        previous = dict(self._servables[name])
        loaded = {} if fresh else dict(previous)
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
        if fresh and not loaded:
            return  # nothing of the new base path loads: the old versions keep serving
        if any(v in aspired for v in loaded):  # never drop the last good version
            for version in [v for v in loaded if v not in aspired]:
                del loaded[version]
                self._set_state(name, version, "END", "OK", "")
        if fresh:  # the old base path's versions that the new one does not replace
            for version in set(previous) - set(loaded):
                self._set_state(name, version, "END", "OK", "")
        with self._lock:
            self._servables[name] = loaded

    def reconfigure(self, models):
        """Serve ``models`` (``{name: ModelConfig}``, from a reloaded ``--model_config_file``)
        instead of the current configuration, preserving availability as for versions: new
        and changed models are loaded first, and only then are removed models unloaded (their
        versions reported as ``END``) and a changed model's old versions dropped.

        Raises:
            ValueError: a version label of the new configuration points at a version that is
                not available; the previous configuration keeps serving, and any model only
                the new one named is unloaded again.
        """
        with self._work:
            old = self.configs
            for name in models:
                if name not in old:
                    with self._lock:
                        self._servables.setdefault(name, {})
                        self._states.setdefault(name, {})
                        self._failed.setdefault(name, {})
            for name, config in models.items():
                fresh = name in old and config.base_path != old[name].base_path
                if fresh:
                    self._failed[name].clear()
                if name not in old or config != old[name]:
                    self._poll_one(name, config, fresh)
            for name, config in models.items():
                for label, version in config.labels.items():
                    if version not in self._servables[name]:
                        for new_name in set(models) - set(old):
                            self._unload(new_name)
                        raise ValueError(
                            f"Version label {label!r} of model {name!r} points at version "
                            f"{version}, which is not available; the previous configuration "
                            "keeps serving.")
            with self._lock:
                self.configs = dict(models)
                self.base_paths = {name: c.base_path for name, c in models.items()}
            for name in set(old) - set(models):
                self._unload(name)

    def _unload(self, name):
        """Drop every version of model ``name`` (states ``END``: TF Serving's status of a
        model removed from its configuration)."""
        with self._lock:
            versions = self._servables.get(name, {})
            self._servables[name] = {}
            self._poll_errors.pop(name, None)
        for version in versions:
            self._set_state(name, version, "END", "OK", "")

    def start_polling(self, seconds):
        """Poll every ``seconds`` in a daemon thread (TF Serving's
        ``--file_system_poll_wait_seconds``); ``0`` does nothing.

        Raises:
            ValueError: ``seconds`` is not a finite number in 0 .. one day
                (:func:`check_poll_seconds`).
        """
        seconds = check_poll_seconds(seconds)
        if seconds:
            self._every(seconds, self.poll, "model-poller")

    def start_config_polling(self, path, seconds):
        """Read the ``--model_config_file`` ``path`` again every ``seconds`` (TF Serving's
        ``--model_config_file_poll_wait_seconds``; ``0`` does nothing) and
        :meth:`reconfigure` when it changed. A file that cannot be read or is invalid (or
        whose labels point at unavailable versions) keeps the current configuration serving;
        the error is logged and shown in every model's status as ``config_error`` until a
        good file is read.

        Raises:
            ValueError: ``seconds`` is not a finite number in 0 .. one day.
        """
        seconds = check_poll_seconds(seconds, "model_config_file_poll_wait_seconds")

        def reload():
            try:
                models = read_model_config_file(path)
                if models != self.configs:
                    self.reconfigure(models)
                    log.info("model config file %s reloaded: serving %s", path,
                             ", ".join(sorted(models)))
            except ValueError as err:
                if self._config_error != str(err):
                    log.error("model config file reload failed, the previous configuration "
                              "keeps serving: %s", err)
                with self._lock:
                    self._config_error = str(err)
            else:
                with self._lock:
                    self._config_error = None

        if seconds:
            self._every(seconds, reload, "config-poller")

    def _every(self, seconds, work, name):
        """Run ``work()`` every ``seconds`` in a daemon thread until :meth:`stop_polling`."""
        def loop():
            while not self._stop.wait(seconds):
                try:
                    work()
                except BaseException:  # noqa: BLE001  work catches its own; belt and braces
                    log.exception("%s: a pass failed; polling goes on", name)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop_polling(self):
        """Stop the polling threads (waits up to 30 s for a pass in progress)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

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
            config_error = self._config_error
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
        if config_error:  # the same
            answer["config_error"] = config_error
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
            config = self.configs.get(name)
            labels = config.labels if config is not None else {}
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
