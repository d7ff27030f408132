"""The core runs on other Keras backends: train with binary and learnable masks, then strip.

Each backend runs in a subprocess (Keras picks its backend once per process). Backends that are
not installed are skipped with the reason; TensorFlow is covered by every other test file.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
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


# Trains from fixed weights with plain SGD and no shuffling, so every backend takes the same
# steps; mask updates fall mid-epoch (steps 3 and 9 of 6-step epochs) as well as at epoch starts.
SAME_RUN = r"""
import numpy as np, keras, keras_prune as kp


def same_run(checkpoint_path, optimizer="sgd", mask="binary"):
    mask = {"learnable_step": kp.mask_types.LearnableMask(reselect="step")}.get(mask, mask)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 12)).astype("float32")
    y = (x[:, :4] @ rng.normal(size=(4, 3))).astype("float32")
    model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, activation="tanh", name="h"),
                              keras.layers.Dense(3, name="out")])
    model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.3 for w in model.weights])
    pruned = kp.prune(model, schedule=kp.PolynomialDecay(0.0, 0.8, 0, 12, frequency=3), mask=mask)
    pruned.compile(keras.optimizers.SGD(0.05) if optimizer == "sgd" else optimizer, "mse")
    history = pruned.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0, callbacks=[
        kp.PruningCallback(), keras.callbacks.ModelCheckpoint(checkpoint_path)])
    masks = {w.name: keras.ops.convert_to_numpy(w.effective_weights()[0][1] != 0)
             for w in kp.layers.find_wrappers(pruned)}
    kernels = {w.name: keras.ops.convert_to_numpy(w.layer.kernel) for w in kp.layers.find_wrappers(pruned)}
    return pruned, x, history.history, masks, kernels
"""

JAX_SCRIPT = (
    SAME_RUN
    + r"""
import sys
# Adam's momentum moves masked weights between mask updates on JAX (the forward pass applies the
# masks there); they are zeroed again at each update and epoch end, so checkpoints are sparse.
_, _, history, adam_masks, adam_kernels = same_run(sys.argv[1] + "/adam.keras", "adam")
assert abs(history["sparsity"][-1] - 0.8) < 0.01, history["sparsity"]
for name in adam_masks:
    assert not adam_kernels[name][adam_masks[name] == 0].any(), name
saved = keras.saving.load_model(sys.argv[1] + "/adam.keras")
for wrapper in kp.layers.find_wrappers(saved):
    kernel = keras.ops.convert_to_numpy(wrapper.layer.kernel)
    assert not kernel[keras.ops.convert_to_numpy(wrapper.masks[0]) == 0].any(), wrapper.name

results = {}
for mask in ["binary", "learnable", "learnable_step"]:
    pruned, x, history, masks, kernels = same_run(sys.argv[1] + f"/{mask}.keras", mask=mask)
    plain = kp.strip(pruned)
    assert np.abs(plain.predict(x, verbose=0) - pruned.predict(x, verbose=0)).max() < 1e-5
    results.update({f"{mask}_mask_{k}": v for k, v in masks.items()})
    results.update({f"{mask}_kernel_{k}": v for k, v in kernels.items()})
np.savez(sys.argv[1] + "/jax.npz", **results)

# The methods' callbacks change masks and weights mid-epoch too.
rng = np.random.default_rng(1)
x = rng.normal(size=(96, 12)).astype("float32")
y = x[:, :3]
for callback in [kp.methods.SET(0.8, frequency=4),
                 kp.methods.LotteryTicket([0.5, 0.8], frequency=6, rewind_step=2)]:
    model = kp.prune(keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, name="h"),
                                       keras.layers.Dense(3, name="out")]))
    model.compile("adam", "mse")
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[callback])
    masks = [keras.ops.convert_to_numpy(w.masks[0]) for w in kp.layers.find_wrappers(model)]
    kernels = [keras.ops.convert_to_numpy(w.layer.kernel) for w in kp.layers.find_wrappers(model)]
    zeros = sum(int((m == 0).sum()) for m in masks) / sum(m.size for m in masks)
    assert abs(zeros - 0.8) < 0.01, (callback, zeros)
    assert not any(k[m == 0].any() for k, m in zip(kernels, masks, strict=True)), callback
assert callback.rounds_done == 2

# Channel masks train on JAX too: BatchNormalization is wrapped at channel granularity, so its
# scales are masked in the forward pass like the kernels, and kp.shrink removes the channels.
inputs = keras.Input((6, 6, 2))
h = keras.layers.Conv2D(8, 3, padding="same", name="c")(inputs)
h = keras.layers.BatchNormalization(name="bn")(h)
h = keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(h))
model = kp.prune(keras.Model(inputs, keras.layers.Dense(3, name="out")(h)),
                 schedule=kp.ConstantSparsity(0.5, 0, frequency=2), granularity="channel")
model.compile("adam", "mse")
data = np.random.default_rng(2).normal(size=(32, 6, 6, 2)).astype("float32")
model.fit(data, np.ones((32, 3)), epochs=2, batch_size=8, verbose=0,
          callbacks=[kp.PruningCallback()])
kernel = keras.ops.convert_to_numpy(model.get_layer("c").layer.kernel)
assert (~kernel.reshape(-1, 8).any(0)).sum() == 4, kernel.reshape(-1, 8).any(0)
small = kp.shrink(model)
assert small.get_layer("c").filters == 4
assert np.abs(small.predict(data, verbose=0) - model.predict(data, verbose=0)).max() < 1e-4
print("OK")
"""
)


def run_on_backend(backend, module, script, *arguments):
    if importlib.util.find_spec(module) is None:
        pytest.skip(
            f"{module} is not installed (pip install {module}) to test the {backend} backend"
        )
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    result = subprocess.run(
        [sys.executable, "-c", f"BACKEND = {backend!r}\n" + script, *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def on_backend_and_here(backend, module, source, function, tmp_path):
    """Run `function` (defined in `source`, returning a dict of arrays) on `backend` in a
    subprocess and on TensorFlow in this process; returns `(found there, expected here)`."""
    saved = tmp_path / f"{function}.npz"
    script = source + f"\nimport sys\nnp.savez(sys.argv[1], **{function}())\nprint('OK')\n"
    run_on_backend(backend, module, script, str(saved))
    namespace = {}
    exec(source, namespace)
    return np.load(saved), namespace[function]()


def test_core_on_torch():
    run_on_backend("torch", "torch", SCRIPT)


# What running the suite under torch found (session 11): each line failed there before its fix.
TORCH_FOUND = r"""
import numpy as np, keras, tensorflow as tf, keras_prune as kp
from keras_prune.core import criteria
from keras_prune.posttraining.replay import GraphRun
rng = np.random.default_rng(0)
# N:M masks of a weight variable padded with a tensor fill value, which torch's pad refused.
scores = keras.Variable(rng.random((3, 6)).astype("float32"))
mask = keras.ops.convert_to_numpy(kp.masks.n_of_m_mask(keras.ops.abs(scores), 2, 4))
assert (mask.reshape(3, -1).sum(1) == 4).all(), mask
# Taylor scores of a NumPy weight: `*` of an array and a torch tensor raised.
statistics = criteria.GradientStatistics()
weight = rng.normal(size=(4, 3)).astype("float32")
statistics.record(weight, [rng.normal(size=(4, 3)).astype("float32")])
scores = keras.ops.convert_to_numpy(criteria.get("taylor")(weight, statistics))
np.testing.assert_allclose(scores, np.abs(weight * keras.ops.convert_to_numpy(statistics.mean_gradient)))
# kp.summary of learnable masks read effective weights that require grad.
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, name="h"), keras.layers.Dense(3)])
learnable = kp.prune(model, schedule=kp.ConstantSparsity(0.5, 0), mask="learnable")
kp.pruning.update_masks(learnable, 0)
kp.summary(learnable)
# Calibration batches from a tf.data.Dataset, as fit takes on every backend.
x = rng.normal(size=(32, 8)).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices((x, np.zeros(32))).batch(8)
kp.posttraining.prune_posttraining(model, dataset, sparsity=0.5)
# The graph replay holds its activations without autograd history.
inputs = keras.Input((8,))
h = keras.layers.Dense(8, name="a")(inputs)
functional = keras.Model(inputs, keras.layers.Dense(2, name="b")(h + inputs))
run = GraphRun(kp.graph.trace(functional), [[x]])
for call in run.graph.calls:
    run.advance(call)
(output,) = run.outputs()[0]
assert not output.requires_grad
np.testing.assert_allclose(np.asarray(output), functional.predict(x, verbose=0), atol=1e-5)
print("OK")
"""


def test_what_the_torch_suite_run_found_stays_fixed():
    run_on_backend("torch", "torch", TORCH_FOUND)


# Evaluating a Distiller with metrics called the teacher inside JAX's evaluation step, where only
# the metrics' variables are mapped: it failed on the teacher's first layer (session 11).
JAX_DISTILLER = r"""
import numpy as np, keras, keras_prune as kp
rng = np.random.default_rng(0)
x = rng.normal(size=(64, 8)).astype("float32"); y = rng.integers(0, 3, 64)
def mlp(width):
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(3)])
trainer = kp.distill.Distiller(mlp(8), mlp(16), alpha=0.5)
trainer.compile(optimizer="adam", metrics=["accuracy"])
history = trainer.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0).history
assert "val_teacher_accuracy" in history and "val_distillation_loss" in history, sorted(history)
print("OK")
"""


def test_a_distiller_with_metrics_evaluates_on_jax():
    run_on_backend("jax", "jax", JAX_DISTILLER)


def test_masks_train_on_jax_as_on_tensorflow(tmp_path):
    # Mask updates mid-epoch must reach JAX's training state (kept outside the variables):
    # the same run gives the same masks and weights as on TensorFlow.
    run_on_backend("jax", "jax", JAX_SCRIPT, str(tmp_path))
    namespace = {}
    exec(SAME_RUN, namespace)
    on_jax = np.load(tmp_path / "jax.npz")
    for mask in ["binary", "learnable", "learnable_step"]:
        _, _, _, masks, kernels = namespace["same_run"](
            str(tmp_path / f"tf_{mask}.keras"), mask=mask
        )
        for name in masks:
            np.testing.assert_array_equal(on_jax[f"{mask}_mask_{name}"], masks[name])
            np.testing.assert_allclose(on_jax[f"{mask}_kernel_{name}"], kernels[name], atol=1e-4)


GRADIENTS = r"""
import numpy as np, keras, keras_prune as kp


def gradient_statistics():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, 10)).astype("float32")
    y = rng.integers(0, 4, 40)
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(16, activation="tanh", name="h"),
                              keras.layers.Dense(4, name="out")])
    model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5 for w in model.weights])
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5, 0))
    pruned.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    kp.pruning.update_masks(pruned, 0)  # half of each kernel masked: those weights get gradients too
    kp.engine.collect_gradients(pruned, (x, y), batch_size=16)
    return {f"{w.name}_{kind}": keras.ops.convert_to_numpy(getattr(w.gradient_statistics[0], kind))
            for w in kp.layers.find_wrappers(pruned) for kind in ("mean_gradient", "mean_squared_gradient")}
"""


@pytest.mark.parametrize("backend, module", [("jax", "jax"), ("torch", "torch")])
def test_gradient_statistics_agree_across_backends(backend, module, tmp_path):
    found, expected = on_backend_and_here(
        backend, module, GRADIENTS, "gradient_statistics", tmp_path
    )
    for name, value in expected.items():
        assert np.abs(value).max() > 0, name
        np.testing.assert_allclose(found[name], value, rtol=1e-4, atol=1e-6)


DISTILL = r"""
import numpy as np, keras, keras_prune as kp


def distill_history():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(96, 12)).astype("float32")
    y = rng.integers(0, 3, 96)

    def net(name):
        model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(24, activation="tanh", name="h"),
                                  keras.layers.Dense(3, name="out")], name=name)
        model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.3 for w in model.weights])
        return model

    teacher = net("teacher")
    student = kp.prune(net("student"), schedule=kp.PolynomialDecay(0.0, 0.8, 0, 12, frequency=3))
    trainer = kp.distill.Distiller(student, teacher, alpha=0.5, hints=[("h", "h")])
    trainer.compile(optimizer="adam", metrics=["accuracy"])
    history = trainer.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0,
                          callbacks=[kp.PruningCallback()])
    return {name: np.array(values) for name, values in history.history.items()}
"""


@pytest.mark.parametrize("backend, module", [("jax", "jax"), ("torch", "torch")])
def test_distillation_aware_pruning_agrees_across_backends(backend, module, tmp_path):
    found, expected = on_backend_and_here(backend, module, DISTILL, "distill_history", tmp_path)
    assert sorted(found.files) == sorted(expected)
    assert {"distillation_loss", "hint_loss", "student_loss", "sparsity"} <= set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(found[name], values, rtol=1e-3, atol=1e-4, err_msg=name)


STRUCTURED = r"""
import os, tempfile
import numpy as np, keras, keras_prune as kp


def structured_outputs():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    inputs = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inputs)
    h = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn")(h))
    h = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(h)
    h = keras.layers.Conv2D(6, 1, name="pw")(h)
    outputs = keras.layers.Dense(3, name="out")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    model.set_weights([rng.normal(size=w.shape).astype("float32") * 0.5
                       + (1.0 if "variance" in w.path else 0.0) for w in model.weights])
    one_shot = kp.prune_channels(model, sparsity=0.5)
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5, 0, frequency=1),
                      granularity="channel")
    kp.pruning.update_masks(pruned, 0)
    shrunk = kp.shrink(pruned)
    path = os.path.join(tempfile.mkdtemp(), "pruned.keras")
    pruned.save(path)
    reloaded = keras.saving.load_model(path)
    return {
        "one_shot": one_shot.predict(x, verbose=0),
        "one_shot_c1": np.array(one_shot.get_layer("c1").kernel.shape),
        "pruned": pruned.predict(x, verbose=0),
        "shrunk": shrunk.predict(x, verbose=0),
        "shrunk_pw": np.array(shrunk.get_layer("pw").kernel.shape),
        "reloaded": reloaded.predict(x, verbose=0),
    }
"""


@pytest.mark.parametrize("backend, module", [("jax", "jax"), ("torch", "torch")])
def test_structured_surgery_and_saving_agree_across_backends(backend, module, tmp_path):
    found, expected = on_backend_and_here(
        backend, module, STRUCTURED, "structured_outputs", tmp_path
    )
    np.testing.assert_array_equal(found["one_shot_c1"], [3, 3, 3, 4])
    np.testing.assert_array_equal(found["shrunk_pw"], expected["shrunk_pw"])
    for name in ("one_shot", "pruned", "shrunk", "reloaded"):
        np.testing.assert_allclose(found[name], expected[name], rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(found["shrunk"], found["pruned"], atol=1e-5)
    np.testing.assert_array_equal(found["reloaded"], found["pruned"])


LEAN_MASKS = r"""
import sys
import numpy as np, keras, keras_prune as kp
rng = np.random.default_rng(0)
x = rng.random((64, 12), dtype=np.float32); y = rng.random((64, 4), dtype=np.float32)
model = keras.Sequential([keras.Input((12,)), keras.layers.Dense(32, name="d"), keras.layers.Dense(4)])
pruned = kp.prune(model, schedule=kp.PolynomialDecay(0.0, 0.75, 0, 6, frequency=2))
pruned.compile("adam", "mse")
pruned.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[kp.PruningCallback()])
wrapper = pruned.get_layer("d")
assert keras.backend.standardize_dtype(wrapper.masks[0].dtype) == "uint8"
mask = keras.ops.convert_to_numpy(wrapper.masks[0])
assert set(np.unique(mask)) <= {0, 1}, np.unique(mask)
assert not keras.ops.convert_to_numpy(wrapper.layer.kernel)[mask == 0].any()
pruned.save(sys.argv[1])
loaded = keras.saving.load_model(sys.argv[1])
np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded.get_layer("d").masks[0]), mask)
np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0), rtol=1e-6)
print("OK")
"""


def test_jax_masks_are_uint8_and_exact_across_save_and_load(tmp_path):
    run_on_backend("jax", "jax", LEAN_MASKS, str(tmp_path / "pruned.keras"))
