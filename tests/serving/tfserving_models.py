"""Fixture SavedModels shaped like TF Serving's own test models (``half_plus_two``), built by
the tests themselves.

``y = a * x + b`` with ``a = 0.5`` and ``b`` given (2 for half_plus_two, 3 for
half_plus_three), ``y2 = a * x + 3``. Each model has:

* ``serving_default`` (``tensorflow/serving/predict``): ``x`` float32 of any shape ->
  ``y`` of the same shape;
* ``classify_x_to_y`` (``tensorflow/serving/classify``): serialized ``tf.Example``\\ s
  (``inputs``, string ``[batch]``, parsed with ``tf.io.parse_example``, feature ``x``: one
  float) -> ``scores`` ``[batch, 1]`` = y;
* ``classify_x_to_labels`` (classify): ``classes`` ``[batch, 2]`` = ``[b"low", b"high"]``
  and ``scores`` = ``[1 - sigmoid(x), sigmoid(x)]``;
* ``regress_x_to_y`` and ``regress_x_to_y2`` (``tensorflow/serving/regress``): examples ->
  ``outputs`` ``[batch, 1]``.

:func:`start_tf1_models` writes it the TF1 way (graph mode, a reference variable of dtype
``float_ref``, ``SavedModelBuilder``): what ``tf.saved_model.load`` cannot load and TF
Serving loads with its session-based ``SavedModelBundle``. :func:`write_tf2_model` writes
the same signatures with ``tf.Module`` and ``tf.saved_model.save``.
"""

import os
import subprocess
import sys

A = 0.5
C = 3.0

_TF1_SCRIPT = r'''
import sys
import tensorflow as tf

a, c = float(sys.argv[1]), float(sys.argv[2])
v1 = tf.compat.v1
sigs = v1.saved_model.signature_def_utils
for path, b in zip(sys.argv[3::2], map(float, sys.argv[4::2])):
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as sess:
        var_a = v1.Variable(a, name="a", use_resource=False)
        var_b = v1.Variable(b, name="b", use_resource=False)
        var_c = v1.Variable(c, name="c", use_resource=False)
        assert var_a.dtype == tf.float32._as_ref, var_a.dtype  # float_ref: a reference variable
        x = v1.placeholder(tf.float32, None, name="x")
        y = tf.add(var_a * x, var_b, name="y")
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        parsed = tf.io.parse_example(
            serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        ex_x = parsed["x"]
        ex_y = tf.add(var_a * ex_x, var_b, name="ex_y")
        ex_y2 = tf.add(var_a * ex_x, var_c, name="ex_y2")
        p = tf.sigmoid(ex_x)
        scores = tf.concat([1.0 - p, p], axis=1)
        classes = tf.tile(tf.constant([[b"low", b"high"]]), [tf.shape(ex_x)[0], 1])
        sess.run(v1.global_variables_initializer())
        builder = v1.saved_model.Builder(path)
        builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={
            "serving_default": sigs.predict_signature_def({"x": x}, {"y": y}),
            "classify_x_to_y": sigs.classification_signature_def(serialized, None, ex_y),
            "classify_x_to_labels": sigs.classification_signature_def(serialized, classes, scores),
            "regress_x_to_y": sigs.regression_signature_def(serialized, ex_y),
            "regress_x_to_y2": sigs.regression_signature_def(serialized, ex_y2),
        })
        builder.save()
'''


def start_tf1_models(models):
    """Start writing the TF1-style model (see the module docstring) to each new folder of
    ``models`` (``{path: b}``) in a subprocess (graph mode never touches the test process);
    returns a function that waits for it and raises ``AssertionError`` if it failed."""
    args = [str(v) for path, b in models.items() for v in (path, float(b))]
    proc = subprocess.Popen([sys.executable, "-c", _TF1_SCRIPT, str(A), str(C), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})

    def wait():
        _, err = proc.communicate(timeout=300)
        if proc.returncode:
            raise AssertionError(f"building the TF1 models failed:\n{err[-3000:]}")

    return wait


def write_tf2_model(path, b=2.0):
    """Write the same signatures as :func:`start_tf1_models` with ``tf.saved_model.save``
    (resource variables, ``tf.function`` signatures)."""
    import tensorflow as tf

    module = tf.Module()
    module.a, module.b, module.c = (tf.Variable(A), tf.Variable(float(b)), tf.Variable(C))

    def parse(serialized):
        return tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]

    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32)])
    def predict(x):
        return {"y": module.a * x + module.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(inputs):
        return {"scores": module.a * parse(inputs) + module.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify_labels(inputs):
        p = tf.sigmoid(parse(inputs))
        classes = tf.tile(tf.constant([[b"low", b"high"]]), [tf.shape(p)[0], 1])
        return {"classes": classes, "scores": tf.concat([1.0 - p, p], axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def regress(inputs):
        return {"outputs": module.a * parse(inputs) + module.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def regress2(inputs):
        return {"outputs": module.a * parse(inputs) + module.c}

    tf.saved_model.save(module, str(path), signatures={
        "serving_default": predict, "classify_x_to_y": classify,
        "classify_x_to_labels": classify_labels, "regress_x_to_y": regress,
        "regress_x_to_y2": regress2})
    return path
