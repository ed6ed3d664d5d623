"""nwp-train --mixed-precision: the Keras policy it sets, a bfloat16 training step, and the
note on CPUs without native half-precision matmuls."""

import keras
import numpy as np
import pytest

from training.cli import build_parser, set_mixed_precision
from zoo import get_model
from zoo.models import sequence_cross_entropy


@pytest.fixture(autouse=True)
def float32_after():
    yield
    keras.config.set_dtype_policy("float32")


def test_a_bfloat16_model_trains_a_step_with_a_float32_finite_loss():
    set_mixed_precision("bfloat16", cpu_flags={"avx512_bf16"}, has_gpu=False)
    assert keras.config.dtype_policy().name == "mixed_bfloat16"
    keras.utils.set_random_seed(0)
    model = get_model("lstm", 50, embedding_dim=8, units=8, num_layers=2)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    model.build((None, 6))
    rng = np.random.default_rng(0)
    x = rng.integers(1, 50, (4, 6)).astype("int32")
    y = rng.integers(1, 50, (4, 6)).astype("int32")
    # The recurrent layers compute in bfloat16, the logits and the loss in float32.
    assert keras.backend.standardize_dtype(model.features(x).dtype) == "bfloat16"
    logits = model(x, training=True)
    token_losses, mask = sequence_cross_entropy(y, logits)
    loss = model.combine_losses(token_losses, mask)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"
    before = [v.numpy().copy() for v in model.trainable_variables]
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    # About ln(50) nats per token times 6 steps at the start (sum over time).
    assert logs["loss"] == pytest.approx(6 * np.log(50), rel=0.1)
    assert all(v.dtype == "float32" for v in model.trainable_variables)
    assert any(np.abs(b - v.numpy()).max() > 0 for b, v in zip(before,
                                                                model.trainable_variables))


@pytest.mark.parametrize("mode, flags, has_gpu, says", [
    ("bfloat16", {"avx2", "avx512f"}, False, "avx512_bf16, amx_bf16"),
    ("bfloat16", {"avx512_bf16"}, False, None),
    ("bfloat16", {"amx_bf16"}, False, None),
    ("bfloat16", set(), True, None),
    ("float16", {"avx512_bf16"}, False, "avx512_fp16, amx_fp16"),
    ("float16", {"amx_fp16"}, False, None),
    ("float32", set(), False, None),
])
def test_the_note_names_the_missing_cpu_support(mode, flags, has_gpu, says):
    note = set_mixed_precision(mode, cpu_flags=flags, has_gpu=has_gpu)
    assert keras.config.dtype_policy().name == {"float32": "float32",
                                                "bfloat16": "mixed_bfloat16",
                                                "float16": "mixed_float16"}[mode]
    if says is None:
        assert note is None
    else:
        assert says in note and "slower than float32" in note and "train_speed.py" in note
        assert ("1.2x the float32 step time" in note) == (mode == "float16")


def test_the_flag_takes_the_three_modes_and_refuses_others(capsys):
    parser = build_parser()
    assert parser.parse_args([]).mixed_precision == "float32"
    assert parser.parse_args(["--mixed-precision", "bfloat16"]).mixed_precision == "bfloat16"
    with pytest.raises(SystemExit):
        parser.parse_args(["--mixed-precision", "int8"])
    assert "float16" in capsys.readouterr().err
