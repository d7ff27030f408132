"""Learnable masks and sigmoid gates train under mixed precision (float16 and bfloat16)."""

import keras
import numpy as np
import pytest
from conftest import dtype_policy

import keras_prune as kp


def _model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(4, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("mask", ["learnable", "sigmoid"])
def test_masks_train_under_mixed_precision(policy, mask):
    keras.utils.set_random_seed(0)
    with dtype_policy(policy):
        model = _model()
        pruned = kp.prune(
            model, schedule=kp.ConstantSparsity(0.5, begin_step=0, frequency=1), mask=mask
        )
    assert pruned.get_layer("hidden").dtype_policy.name == policy
    rng = np.random.default_rng(0)
    x = rng.random((64, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 4, 64)
    pruned.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = pruned.fit(x, y, batch_size=16, epochs=2, callbacks=[kp.PruningCallback()], verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # The logged sparsity is the true zero fraction, and stripping keeps it exactly.
    assert history.history["sparsity"][-1] == pytest.approx(0.5, abs=0.02)
    plain = kp.strip(pruned)
    kernel = keras.ops.convert_to_numpy(plain.get_layer("hidden").kernel)
    assert np.mean(kernel == 0) == pytest.approx(0.5, abs=0.02)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(plain(x[:8])),
        keras.ops.convert_to_numpy(pruned(x[:8])),
        atol=2e-2,
        rtol=2e-2,
    )
