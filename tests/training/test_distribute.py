"""One MirroredStrategy step on 2 devices equals one single-device step on the global batch,
with the clip applied to the aggregated gradient."""

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

SCRIPT = textwrap.dedent("""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import keras, numpy as np, zoo

    def make():
        model = zoo.get_model("lstm", 13, units=6, embedding_dim=5, num_layers=1,
                              clipnorm=CLIP)
        model.compile(optimizer=keras.optimizers.SGD(1.0))
        model.build((None, 5))
        return model

    rng = np.random.default_rng(0)
    x = rng.integers(1, 13, size=(4, 5)).astype("int32")
    y = rng.integers(1, 13, size=(4, 5)).astype("int32")
    keras.utils.set_random_seed(0)
    single = make()
    start = [w.numpy().copy() for w in single.weights]
    logs_1 = single.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
        multi = make()
    multi.set_weights(start)
    logs_2 = multi.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    for a, b, s in zip(single.weights, multi.weights, start):
        assert not np.allclose(a.numpy(), s), "the step changed nothing"
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-6)
    np.testing.assert_allclose(logs_1["gradient_norm"], logs_2["gradient_norm"], rtol=1e-5)
    np.testing.assert_allclose(logs_1["loss"], logs_2["loss"], rtol=1e-5)
    print("clipped", logs_1["clipped_fraction"][0], "norm", logs_1["gradient_norm"][0])
""")


def _run(clip):
    proc = subprocess.run([sys.executable, "-c", SCRIPT.replace("CLIP", clip)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_mirrored_step_with_clipping_equals_the_single_device_step():
    out = _run("0.05")
    assert "clipped 1.0" in out  # the clip was active, on the aggregated norm


def test_mirrored_step_without_clipping_equals_the_single_device_step():
    assert "clipped 0.0" in _run("None")
