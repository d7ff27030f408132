"""The core runs on other Keras backends: train with binary and learnable masks, then strip.

Each backend runs in a subprocess (Keras picks its backend once per process). Backends that are
not installed are skipped with the reason; TensorFlow is covered by every other test file.
"""

import importlib.util
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import numpy as np, keras, keras_prune as kp
assert keras.backend.backend() == BACKEND, keras.backend.backend()
rng = np.random.default_rng(0)
x = rng.random((96, 8, 8, 1), dtype=np.float32); y = rng.integers(0, 10, 96)
model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.Flatten(), keras.layers.Dense(32, activation="relu", name="d"),
                          keras.layers.Dense(10)])
for mask in ["binary", "learnable"]:
    pruned = kp.prune(model, schedule=kp.PolynomialDecay(0.0, 0.75, 0, 8, frequency=2), mask=mask)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = pruned.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[kp.PruningCallback()])
    assert abs(history.history["sparsity"][-1] - 0.75) < 0.01, history.history["sparsity"]
    wrapper = pruned.get_layer("d")
    if mask == "binary":
        kernel = keras.ops.convert_to_numpy(wrapper.layer.kernel)
        assert not kernel[keras.ops.convert_to_numpy(wrapper.masks[0]) == 0].any()
    plain = kp.strip(pruned)
    difference = np.abs(plain.predict(x, verbose=0) - pruned.predict(x, verbose=0)).max()
    assert difference < 1e-5, difference
print("OK")
"""


JAX_SCRIPT = r"""
import numpy as np, keras, keras_prune as kp
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
pruned = kp.prune(model)
pruned.compile("adam", "mse")
try:
    pruned.fit(np.ones((8, 4)), np.ones((8, 3)), verbose=0, callbacks=[kp.PruningCallback()])
except NotImplementedError as error:
    assert "KERAS_BACKEND=tensorflow or torch" in str(error)
    print("OK")
"""


def run_on_backend(backend, module, script):
    if importlib.util.find_spec(module) is None:
        pytest.skip(
            f"{module} is not installed (pip install {module}) to test the {backend} backend"
        )
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", f"BACKEND = {backend!r}\n" + script],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_core_on_torch():
    run_on_backend("torch", "torch", SCRIPT)


def test_jax_training_is_refused_with_a_clear_message():
    # JAX's fit keeps state outside the variables mid-epoch; see callbacks.JAX_MESSAGE.
    run_on_backend("jax", "jax", JAX_SCRIPT)
