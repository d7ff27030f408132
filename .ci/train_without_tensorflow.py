"""CI check: keras_prune installs without TensorFlow and trains a pruned model on JAX.

Run by `.ci/run` in a virtual environment holding only `pip install -e . jax jaxlib`: the
package's own requirements (Keras, NumPy) and a Keras backend. It fails if TensorFlow is
importable, or if keras_prune imports it on the way.
"""

import os
import sys

os.environ["KERAS_BACKEND"] = "jax"

try:
    import tensorflow  # noqa: F401
except ModuleNotFoundError:
    print("import tensorflow: ModuleNotFoundError (as intended)")
else:
    sys.exit("TensorFlow is installed in this environment; this check needs one without it.")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_prune as kp  # noqa: E402

assert keras.backend.backend() == "jax", keras.backend.backend()

keras.utils.set_random_seed(0)
model = keras.Sequential(
    [
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, activation="relu", name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu", name="hidden"),
        keras.layers.Dense(10, name="logits"),
    ]
)
rng = np.random.default_rng(0)
x = rng.random((64, 8, 8, 1), dtype=np.float32)
y = rng.integers(0, 10, 64)

pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.75, begin_step=0, frequency=1))
pruned.compile(
    optimizer="adam",
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
)
history = pruned.fit(x, y, batch_size=16, epochs=2, callbacks=[kp.PruningCallback()], verbose=0)
logged = history.history["sparsity"][-1]
print(
    f"trained 8 steps on {keras.backend.backend()}: loss {history.history['loss'][-1]:.3f}, "
    f"logged sparsity {logged:.3f}"
)
assert abs(logged - 0.75) < 0.01, logged

plain = kp.strip(pruned)
assert not kp.layers.find_wrappers(plain), "strip left wrappers in the model"
# kp.prune's default allocation ranks all kernels together: 75% overall, none emptied.
total = zeros = 0
for name in ("conv", "hidden", "logits"):
    kernel = keras.ops.convert_to_numpy(plain.get_layer(name).kernel)
    print(f"stripped {name}: {float(np.mean(kernel == 0)):.3f} of the kernel is zero")
    assert np.count_nonzero(kernel), (name, "emptied")
    total, zeros = total + kernel.size, zeros + int(np.sum(kernel == 0))
assert abs(zeros / total - 0.75) < 0.01, zeros / total
np.testing.assert_allclose(
    keras.ops.convert_to_numpy(plain(x)), keras.ops.convert_to_numpy(pruned(x)), atol=1e-5
)

loaded_tensorflow = sorted(name for name in sys.modules if name.split(".")[0] == "tensorflow")
assert not loaded_tensorflow, loaded_tensorflow
print("OK: pruned, trained and stripped on JAX without TensorFlow")
