"""Compiled mask updates (one traced call per model) give exactly the eager masks.

TensorFlow runs here; JAX runs the same checks in a subprocess (tests/test_backends.py style).
"""

import keras
import numpy as np
import pytest

from tests.test_backends import run_on_backend

# These run in this process and trace with tf.function: on torch every update runs eagerly.
on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="traces with tf.function in this process"
)

CHECKS = r"""
import numpy as np, keras, keras_prune as kp
from keras_prune.engine.engine import MaskEngine


def cnn():
    keras.utils.set_random_seed(0)
    # Fixed names: kp.criteria.Random seeds by weight path.
    return keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv"),
        keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv_2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(32, activation="relu", name="dense"),
        keras.layers.Dense(10, name="logits"),
    ], name="cnn")


def masks_and_weights(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def run(granularity, allocation, compile_masks, mask="binary", criterion="magnitude"):
    model = kp.prune(cnn(), schedule=kp.ConstantSparsity(0.7), granularity=granularity,
                     mask=mask, criterion=criterion)
    for weight in model.trainable_weights:  # coarse values: many ties, and zeros
        weight.assign(np.round(keras.ops.convert_to_numpy(weight) * 8) / 8)
    engine = MaskEngine(model, compile_masks=compile_masks)
    states, reasons = [], []
    for sparsity in [0.3, 0.9]:  # the second reuses the trace at another sparsity
        engine.prune_to(sparsity, allocation=allocation)
        states.append(masks_and_weights(model))
        reasons.append(engine.eager_reason)
    return states, reasons


def check(granularity, allocation=None, compiled=True, **kwargs):
    eager, _ = run(granularity, allocation, False, **kwargs)
    found, reasons = run(granularity, allocation, True, **kwargs)
    if compiled:
        assert reasons == [None] * len(reasons), reasons
    else:
        assert all(reasons), reasons
    for eager_state, found_state in zip(eager, found, strict=True):
        for a, b in zip(eager_state, found_state, strict=True):
            np.testing.assert_array_equal(a, b)
    return reasons


def check_all(full=True):
    check("unstructured")
    check(kp.granularity.Block((1, 4)))
    check("2:4")
    check("unstructured", kp.allocation.GlobalAllocation(0.01))
    check(kp.granularity.Channel(), mask="learnable")
    if not full:
        return
    check(kp.granularity.Block((2, 2), pooling="max"))
    check("unstructured", mask="learnable")
    check("unstructured", kp.allocation.GlobalAllocation(0.0), criterion="l2")
    check("unstructured", criterion=kp.criteria.Random(seed=3))
    # Not compilable: computed eagerly, same masks.
    check("unstructured", kp.allocation.PerLayerAllocation({"dense": 0.5}), compiled=False)
    check("unstructured", kp.allocation.ERKAllocation(), compiled=False)
"""


@on_tensorflow
def test_compiled_masks_equal_eager_masks_on_tensorflow(monkeypatch):
    from keras_prune.engine import engine

    monkeypatch.setattr(engine, "_CHUNK", 2)  # per-layer masks traced in several chunks
    namespace = {}
    exec(CHECKS, namespace)
    namespace["check_all"]()


def test_compiled_masks_equal_eager_masks_on_jax():
    run_on_backend("jax", "jax", CHECKS + "\ncheck_all(full=False)\nprint('OK')\n")


@on_tensorflow
def test_untraceable_criterion_falls_back_to_eager():
    namespace = {}
    exec(CHECKS, namespace)

    def numpy_magnitude(weight, statistics):
        import keras

        return np.abs(keras.ops.convert_to_numpy(weight))  # NumPy: cannot be traced

    criterion = namespace["kp"].criteria.FunctionCriterion(numpy_magnitude)
    reasons = namespace["check"]("unstructured", criterion=criterion, compiled=False)
    assert reasons[-1].startswith("tracing failed")


@on_tensorflow
def test_auto_traces_from_the_second_update():
    namespace = {}
    exec(CHECKS, namespace)
    kp, engine_lib = namespace["kp"], namespace["MaskEngine"]
    engine = engine_lib(kp.prune(namespace["cnn"](), schedule=kp.ConstantSparsity(0.5)))
    engine.prune_to(0.5)
    assert engine.eager_reason.startswith("first use")
    engine.prune_to(0.6)
    assert engine.eager_reason is None
    with pytest.raises(ValueError, match="compile_masks"):
        engine_lib(engine.model, compile_masks="yes")


def test_compiled_update_names_the_layer_holding_nan():
    namespace = {}
    exec(CHECKS, namespace)
    kp, engine_lib = namespace["kp"], namespace["MaskEngine"]
    model = kp.prune(namespace["cnn"](), schedule=kp.ConstantSparsity(0.5))
    engine = engine_lib(model, compile_masks=True)
    engine.prune_to(0.5)
    wrapper = engine.wrappers[-1]
    kernel = wrapper.targets[0].variable
    value = np.array(kernel.numpy() if hasattr(kernel, "numpy") else kernel.value)
    value[0, 0] = np.nan
    kernel.assign(value)
    with pytest.raises(ValueError, match=f"Layer {wrapper.name!r}.*NaN"):
        engine.prune_to(0.6)
