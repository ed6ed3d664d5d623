"""Classify, Regress and MultiInference: TF Serving's ``tf.Example`` APIs.

A classification or regression signature takes serialized ``tf.Example`` protos (one string
input, ``inputs``) and answers ``classes`` (string ``[batch, num_classes]``) and/or ``scores``
(float32 ``[batch, num_classes]``), or ``outputs`` (float32 ``[batch]`` or ``[batch, 1]``).
The rules, messages and answer shapes follow TF Serving
(github.com/tensorflow/serving, ``tensorflow_serving/servables/tensorflow/classifier.cc``,
``regressor.cc``, ``multi_inference.cc``; REST: ``g3doc/api_rest.md``):

* REST ``:classify`` / ``:regress`` take ``{"signature_name": ..., "context": {feature:
  value}, "examples": [{feature: value}, ...]}`` and answer ``{"results": [[[label, score],
  ...], ...]}`` (classify) or ``{"results": [value, ...]}`` (regress);
* gRPC ``Classify`` / ``Regress`` / ``MultiInference`` take an ``Input`` (``example_list`` or
  ``example_list_with_context``) and answer ``ClassificationResult`` / ``RegressionResult``.

A JSON feature value is a number, a string, ``{"b64": ...}`` or a list of one kind of them:
integers only make an ``int64_list``, numbers with any non-integer a ``float_list``, strings
and ``b64`` objects a ``bytes_list``. The ``context`` features are added to every example (an
example's own feature of the same name wins, as when TF Serving concatenates the serialized
context and example). An example that does not parse, or a feature of the wrong type for the
model, is INVALID_ARGUMENT (HTTP 400), never a server error.

Signatures are recognised by their inputs and outputs, not their ``method_name`` (TF Serving's
default), so TF2 SavedModels, whose signatures all say ``tensorflow/serving/predict``,
classify and regress too; with ``--enable_signature_method_name_check`` the ``method_name``
must be ``tensorflow/serving/classify`` / ``regress`` as well, as in TF Serving.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses

import numpy as np

from serving.errors import invalid
from serving.servable import DEFAULT_SIGNATURE

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"
INPUTS, CLASSES, SCORES, OUTPUTS = "inputs", "classes", "scores", "outputs"
_INT64 = (-2 ** 63, 2 ** 63 - 1)


def _feature(name, value):
    """A ``tf.train.Feature`` from one JSON feature value (see the module docstring).

    Raises:
        ServingError: INVALID_ARGUMENT for a value that is not a number, string, ``b64``
            object or flat list of one kind of them.
    """
    import tensorflow as tf

    values = value if isinstance(value, list) else [value]
    feature = tf.train.Feature()
    kinds = set()
    for v in values:
        if isinstance(v, bool) or v is None or isinstance(v, list):
            raise invalid(f"Feature {name!r}: {v!r} is not a number, a string or a "
                          '{"b64": ...} object (lists may not nest).')
        if isinstance(v, dict):
            if set(v) != {"b64"} or not isinstance(v["b64"], str):
                raise invalid(f'Feature {name!r}: an object value must be {{"b64": "<base64>"}},'
                              f" got {v!r}.")
            kinds.add("bytes")
        elif isinstance(v, str):
            kinds.add("bytes")
        elif isinstance(v, int):
            kinds.add("int")
        elif isinstance(v, float):
            kinds.add("float")
    if "bytes" in kinds and len(kinds) > 1:
        raise invalid(f"Feature {name!r} mixes strings and numbers; a feature holds one kind.")
    if kinds == {"bytes"}:
        out = []
        for v in values:
            if isinstance(v, dict):
                try:
                    out.append(base64.b64decode(v["b64"], validate=True))
                except (binascii.Error, ValueError):
                    raise invalid(f"Feature {name!r}: the b64 value is not valid base64."
                                  ) from None
            else:
                out.append(v.encode("utf-8"))
        feature.bytes_list.value.extend(out)
    elif kinds == {"int"}:
        if any(not _INT64[0] <= v <= _INT64[1] for v in values):
            raise invalid(f"Feature {name!r}: an integer is out of the int64 range.")
        feature.int64_list.value.extend(values)
    elif kinds:
        feature.float_list.value.extend(float(v) for v in values)
    return feature


def _example(obj, where):
    """A ``tf.train.Example`` from a JSON object ``{feature: value}``."""
    import tensorflow as tf

    if not isinstance(obj, dict):
        raise invalid(f"{where} must be a JSON object of features, got "
                      f"{type(obj).__name__}.")
    example = tf.train.Example()
    for name, value in obj.items():
        example.features.feature[name].CopyFrom(_feature(name, value))
    return example


def _merge(context, examples):
    """Serialized examples, each with ``context``'s features added (the example's win)."""
    if context is None:
        return [e.SerializeToString() for e in examples]
    out = []
    for example in examples:
        merged = type(example)()
        merged.CopyFrom(context)
        for name, feature in example.features.feature.items():
            merged.features.feature[name].CopyFrom(feature)
        out.append(merged.SerializeToString())
    return out


def examples_from_json(body):
    """Serialized ``tf.Example``\\ s of a REST ``:classify``/``:regress`` body (``examples``
    already checked to be a non-empty list; ``context`` optional).

    Raises:
        ServingError: INVALID_ARGUMENT naming the example or feature that is wrong.
    """
    context = body.get("context")
    if context is not None:
        context = _example(context, "'context'")
    return _merge(context, [_example(e, f"examples[{i}]")
                            for i, e in enumerate(body["examples"])])


def examples_from_input(input_proto):
    """Serialized ``tf.Example``\\ s of a gRPC ``tensorflow.serving.Input``.

    Raises:
        ServingError: INVALID_ARGUMENT if it holds no example.
    """
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        serialized = _merge(None, input_proto.example_list.examples)
    elif kind == "example_list_with_context":
        both = input_proto.example_list_with_context
        serialized = _merge(both.context, both.examples)
    else:
        serialized = []
    if not serialized:
        raise invalid("Input is empty: give at least one tf.Example in input.example_list "
                      "(or example_list_with_context).")
    return serialized


@dataclasses.dataclass(frozen=True)
class Signature:
    """A classification or regression signature, checked as TF Serving checks it.

    Attributes:
        key: its name in the SignatureDef map.
        input_alias: the alias of its one (serialized ``tf.Example``) input.
        classes: alias of the ``classes`` output, or None (regression: None).
        scores: alias of the ``scores`` output (regression: of ``outputs``), or None.
    """

    key: str
    input_alias: str
    classes: str | None
    scores: str | None


def _lookup(servable, signature_name):
    key = signature_name or DEFAULT_SIGNATURE
    if key not in servable.signature_defs:
        raise invalid(f"No signature was found with the name: {key}")
    return key, servable.signature_defs[key]


def _check_method(sig, kind, method, check):
    if check and sig.method_name != method:  # --enable_signature_method_name_check
        raise invalid(f"Expected {kind} signature method_name to be {method}. Was: "
                      f"{sig.method_name}")


def classification_signature(servable, signature_name, check_method=False):
    """The :class:`Signature` ``signature_name`` (``""``: ``serving_default``) of
    ``servable`` as a classification signature. ``check_method``: also require its
    ``method_name`` to be ``tensorflow/serving/classify``
    (``--enable_signature_method_name_check``).

    Raises:
        ServingError: INVALID_ARGUMENT for an unknown signature or one that is not a
            classification signature (TF Serving's messages; a language model's predict
            signature gets "No classification inputs found in SignatureDef").
    """
    key, sig = _lookup(servable, signature_name)
    _check_method(sig, "classification", CLASSIFY_METHOD, check_method)
    if INPUTS not in sig.inputs:
        raise invalid(f"No classification inputs found in SignatureDef: {sig}".strip())
    if len(sig.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if len(sig.outputs) not in (1, 2):
        raise invalid(f"Expected one or two output Tensors, found {len(sig.outputs)}")
    if CLASSES not in sig.outputs and SCORES not in sig.outputs:
        raise invalid('Expected classification signature outputs to contain at least one of '
                      f'"{CLASSES}" or "{SCORES}". Signature was: {sig}'.strip())
    return Signature(key, INPUTS, CLASSES if CLASSES in sig.outputs else None,
                     SCORES if SCORES in sig.outputs else None)


def regression_signature(servable, signature_name, check_method=False):
    """The :class:`Signature` ``signature_name`` of ``servable`` as a regression signature
    (``scores`` holds the alias ``outputs``); ``check_method``: its ``method_name`` must be
    ``tensorflow/serving/regress``.

    Raises:
        ServingError: INVALID_ARGUMENT as :func:`classification_signature`.
    """
    key, sig = _lookup(servable, signature_name)
    _check_method(sig, "regression", REGRESS_METHOD, check_method)
    if len(sig.outputs) != 1:
        raise invalid("Expected one output Tensor.")
    if INPUTS not in sig.inputs:
        raise invalid(f"No regression inputs found in SignatureDef: {sig}".strip())
    if len(sig.inputs) != 1:
        raise invalid("Expected one input Tensor.")
    if OUTPUTS not in sig.outputs:
        raise invalid(f"No regression outputs found in SignatureDef: {sig}".strip())
    return Signature(key, INPUTS, None, OUTPUTS)


def _run(servable, signature, serialized):
    return servable.predict(signature.key,
                            {signature.input_alias: np.array(serialized, dtype=object)})


def classify(servable, signature, serialized):
    """Run classification ``signature`` on ``serialized`` examples.

    Returns:
        ``(classes, scores)``: ``classes`` an object array ``[n, num_classes]`` of bytes or
        None, ``scores`` float32 ``[n, num_classes]`` or None (the signature's outputs).

    Raises:
        ServingError: INVALID_ARGUMENT for examples the graph cannot parse, or outputs of the
            wrong rank, dtype or batch size (TF Serving's ``PostProcessClassificationResult``).
    """
    outputs = _run(servable, signature, serialized)
    n = len(serialized)
    classes = outputs.get(signature.classes) if signature.classes else None
    scores = outputs.get(signature.scores) if signature.scores else None
    for name, array, kind in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if array is None:
            continue
        if array.ndim != 2:
            raise invalid(f"Expected Tensor shape: [batch_size num_classes] but got "
                          f"{list(array.shape)}")
        if (kind == "DT_STRING") != (array.dtype == object) or (
                kind == "DT_FLOAT" and array.dtype != np.float32):
            raise invalid(f"Expected {name} Tensor of {kind}. Got: {array.dtype}")
        if array.shape[0] != n:
            raise invalid(f"Expected {name} output batch size of {n}. Got: {array.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid(f"Tensors class and score should match in dim_size(1). Got "
                      f"{classes.shape[1]} vs. {scores.shape[1]}")
    return classes, scores


def regress(servable, signature, serialized):
    """Run regression ``signature`` on ``serialized`` examples; float32 ``[n]``.

    Raises:
        ServingError: INVALID_ARGUMENT for examples the graph cannot parse, or an output
            that is not float32 ``[n]`` / ``[n, 1]`` (TF Serving's
            ``PostProcessRegressionResult``).
    """
    values = _run(servable, signature, serialized)[signature.scores]
    n = len(serialized)
    if values.dtype != np.float32:
        raise invalid(f"Expected output Tensor of DT_FLOAT. Got: {values.dtype}")
    if not (values.ndim == 1 or (values.ndim == 2 and values.shape[1] == 1)):
        raise invalid("Expected output Tensor shape to be either [batch_size] or "
                      f"[batch_size, 1] but got {list(values.shape)}")
    if values.shape[0] != n:
        raise invalid(f"Input batch size did not match output batch size: {n} vs. "
                      f"{values.shape[0]}")
    return values.reshape(n)


def _rows(classes, scores):
    """``[(label bytes, score float), ...]`` per example (``b""`` / 0.0 for a missing one)."""
    first = classes if classes is not None else scores
    rows = []
    for i in range(first.shape[0]):
        rows.append([(classes[i, c] if classes is not None else b"",
                      float(scores[i, c]) if scores is not None else 0.0)
                     for c in range(first.shape[1])])
    return rows


def classification_json(classes, scores):
    """REST ``results`` of a classification: ``[[[label, score], ...], ...]`` (labels as
    UTF-8 text, invalid bytes replaced)."""
    return [[[label.decode("utf-8", "replace"), score] for label, score in row]
            for row in _rows(classes, scores)]


def fill_classification(result, classes, scores):
    """Fill a ``ClassificationResult`` proto ``result``."""
    for row in _rows(classes, scores):
        classifications = result.classifications.add()
        for label, score in row:
            cls = classifications.classes.add()
            cls.label, cls.score = label.decode("utf-8", "replace"), score


def fill_regression(result, values):
    """Fill a ``RegressionResult`` proto ``result``."""
    for value in values:
        result.regressions.add().value = float(value)


def check_multi_inference(request):
    """Check a ``MultiInferenceRequest`` as TF Serving's ``multi_inference.cc`` does: at
    least one task, one model (name and version) for all, each signature once, each task's
    ``method_name`` classify or regress.

    Returns:
        the tasks' ``model_spec`` of the first task (the model to run).

    Raises:
        ServingError: INVALID_ARGUMENT saying which rule is broken.
    """
    if not request.tasks:
        raise invalid("MultiInferenceRequest must specify at least one task.")
    first = request.tasks[0].model_spec
    seen = set()
    for task in request.tasks:
        spec = task.model_spec
        if spec.name != first.name:
            raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same "
                          "model name.")
        if spec.WhichOneof("version_choice") != first.WhichOneof("version_choice") or (
                spec.version.value != first.version.value) or (
                spec.version_label != first.version_label):
            raise invalid("All ModelSpecs in a MultiInferenceRequest must access the same "
                          "model version.")
        if spec.signature_name in seen:
            raise invalid(f"Duplicate evaluation of signature: {spec.signature_name}")
        seen.add(spec.signature_name)
        if task.method_name not in (CLASSIFY_METHOD, REGRESS_METHOD):
            raise invalid(f"Unsupported signature method_name: {task.method_name}")
    return first

