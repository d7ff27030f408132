"""Slimmable widths: channel permutation, width masks, kp.shrink(width=...), training, saving."""

import json

import keras
import numpy as np
import pytest
from conftest import compile_for_digits

import keras_prune as kp
from keras_prune.graph import groups as groups_lib
from keras_prune.surgery import width as width_lib
from keras_prune.surgery.shrink import shrink

layers = keras.layers


def residual_cnn(seed=0):
    """Residual Add, BatchNorm, depthwise, Concatenate and Flatten: every member kind."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    y = layers.Conv2D(8, 3, padding="same", name="c2")(x)
    y = layers.BatchNormalization(name="bn2")(y)
    x = layers.Add(name="add")([x, y])
    z = layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    c = layers.Concatenate(name="cat")([x, layers.ReLU()(z)])
    c = layers.Conv2D(12, 3, strides=2, padding="same", activation="relu", name="c3")(c)
    h = layers.Dense(16, activation="relu", name="d1")(layers.Flatten()(c))
    model = keras.Model(inputs, layers.Dense(10, name="out")(h), name="residual")
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=8).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, 8).astype("float32"))
            layer.gamma.assign(rng.uniform(0.5, 1.5, 8).astype("float32"))
            layer.beta.assign(rng.normal(size=8).astype("float32"))
    return model


def numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def batch(seed=1):
    return np.random.default_rng(seed).normal(size=(6, 8, 8, 1)).astype("float32")


# -- widths --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, width, round_to, expected",
    [(24, 0.25, None, 6), (10, 0.25, None, 3), (3, 0.1, None, 1), (24, 0.25, 8, 8), (6, 0.9, 8, 6)],
)
def test_width_channels(size, width, round_to, expected):
    assert kp.dynamic.width_channels(size, width, round_to) == expected


@pytest.mark.parametrize(
    "widths, match",
    [
        ([0.5], "include 1.0"),
        ([0.0, 1.0], r"widths\[0\]"),
        ([0.5, 1.5], r"widths\[1\]"),
        (0.5, "list"),
    ],
)
def test_bad_widths_are_named(widths, match):
    with pytest.raises(ValueError, match=match):
        kp.dynamic.SlimmableModel(residual_cnn(), widths=widths)


# -- permutation ---------------------------------------------------------------------------------


def test_permuting_every_group_keeps_outputs():
    model = residual_cnn()
    x = batch()
    before = numpy(model(x))
    groups = kp.graph.channel_groups(model)
    rng = np.random.default_rng(3)
    permutations = {g.index: rng.permutation(g.size) for g in groups if g.prunable}
    assert len(permutations) >= 3
    kp.dynamic.permute_channels(model, permutations, groups)
    assert np.max(np.abs(numpy(model(x)) - before)) < 1e-5
    assert not np.allclose(
        numpy(model.get_layer("c1").kernel), numpy(residual_cnn().get_layer("c1").kernel)
    )


def test_permuted_values_is_pure_and_checks_permutations():
    model = residual_cnn()
    group = next(g for g in kp.graph.channel_groups(model) if g.prunable)
    values = {id(m.variable): numpy(m.variable) for m in group.members}
    snapshot = {key: value.copy() for key, value in values.items()}
    reversed_order = np.arange(group.size)[::-1]
    result = kp.dynamic.permuted_values([group], {group.index: reversed_order}, values)
    for key in values:
        np.testing.assert_array_equal(values[key], snapshot[key])
    # Applying the reversal twice is the identity.
    twice = kp.dynamic.permuted_values([group], {group.index: reversed_order}, {**values, **result})
    for key, value in twice.items():
        np.testing.assert_array_equal(value, snapshot[key])
    with pytest.raises(ValueError, match="permutation"):
        kp.dynamic.permuted_values([group], {group.index: [0, 0, 1]}, values)


def test_order_channels_sorts_by_importance_and_keeps_outputs():
    model = residual_cnn()
    x = batch()
    before = numpy(model(x))
    kp.dynamic.order_channels(model, "magnitude", norm="l2")
    assert np.max(np.abs(numpy(model(x)) - before)) < 1e-5
    for group in kp.graph.channel_groups(model):
        if group.prunable:
            scores = kp.graph.channel_scores(group, "magnitude", norm="l2")
            assert np.all(np.diff(scores) <= 1e-6)


# -- masked sub-networks and shrink(width=...) ---------------------------------------------------


def test_masked_width_equals_shrunk_model_at_every_width():
    slim = kp.dynamic.SlimmableModel(residual_cnn(), widths=[0.25, 0.5, 0.75, 1.0])
    x = batch()
    for index, width in enumerate(slim.widths):
        small = kp.shrink(slim, width=width)
        masked = numpy(slim.call_at_width(x, index))
        assert np.max(np.abs(masked - numpy(small(x)))) < 1e-4, width
    quarter = kp.shrink(slim, width=0.25)
    assert quarter.get_layer("c1").kernel.shape == (3, 3, 1, 2)
    assert quarter.get_layer("c3").kernel.shape == (3, 3, 4, 3)
    assert quarter.get_layer("d1").kernel.shape == (4 * 4 * 3, 4)
    assert quarter.get_layer("out").kernel.shape == (4, 10)
    np.testing.assert_allclose(numpy(kp.shrink(slim, width=1.0)(x)), numpy(slim(x)), atol=1e-5)


def test_shrink_width_on_a_plain_model_and_round_to():
    model = residual_cnn()
    half = kp.shrink(model, width=0.5, round_to=4)
    assert half.get_layer("c1").kernel.shape[-1] == 4
    assert half.get_layer("d1").kernel.shape[-1] == 8
    assert [row["after"] for row in half.shrink_report.groups if row["reason"] is None] == [4, 8, 8]


def test_shrink_without_width_is_unchanged():
    model = residual_cnn()
    for group in kp.graph.channel_groups(model):
        if group.prunable:
            kp.surgery.zero_group_channels(group, np.arange(0, group.size, 2))
    small = shrink(model)
    assert np.max(np.abs(numpy(small(batch())) - numpy(model(batch())))) < 1e-5


def test_bad_width_requests_name_the_problem():
    slim = kp.dynamic.SlimmableModel(residual_cnn(), widths=[0.5, 1.0])
    with pytest.raises(ValueError, match=r"trained widths \[0.5, 1.0\].*width=0.25"):
        kp.shrink(slim, width=0.25)
    with pytest.raises(ValueError, match=r"trained widths.*width=0.75"):
        slim.at_width(0.75)
    with pytest.raises(ValueError, match=r"`width` in \(0.0, 1.0\]"):
        kp.shrink(residual_cnn(), width=1.5)
    with pytest.raises(ValueError, match="`width`"):
        kp.shrink(residual_cnn(), width=0)


def test_model_without_channel_groups_is_named():
    flat = keras.Sequential(
        [keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(10)], name="no_groups"
    )
    with pytest.raises(ValueError, match="'no_groups' has no channel groups"):
        kp.dynamic.SlimmableModel(flat)
    with pytest.raises(ValueError, match="'no_groups' has no channel groups"):
        kp.shrink(flat, width=0.5)
    with pytest.raises(TypeError, match="Sequential or Functional"):
        kp.dynamic.SlimmableModel(layers.Dense(3))


# -- BatchNorm re-estimation ---------------------------------------------------------------------


def test_recalibrate_batchnorm_sets_the_data_statistics():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.BatchNormalization()])
    x = np.random.default_rng(0).normal(2.0, 3.0, size=(256, 4)).astype("float32")
    assert kp.dynamic.recalibrate_batchnorm(model, x, batch_size=64) == 1
    features = numpy(model.layers[0](x))
    bn = model.layers[1]
    np.testing.assert_allclose(numpy(bn.moving_mean), features.mean(0), rtol=1e-4, atol=1e-4)
    batch_vars = np.mean([features[i : i + 64].var(0) for i in range(0, 256, 64)], axis=0)
    np.testing.assert_allclose(numpy(bn.moving_variance), batch_vars, rtol=1e-3)
    assert bn.momentum == 0.99
    with pytest.raises(ValueError, match="calibration_data"):
        kp.dynamic.recalibrate_batchnorm(model, 3)


# -- training and saving -------------------------------------------------------------------------


def digits_cnn():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="digits_cnn")


def test_sandwich_training_makes_every_width_work(digits):
    (x, y), (x_test, y_test) = digits
    slim = kp.dynamic.SlimmableModel(digits_cnn(), widths=[0.25, 0.5, 1.0])
    compile_for_digits(slim)
    history = slim.fit(x, y, epochs=4, batch_size=64, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    accuracy = {}
    for width in slim.widths:
        small = slim.at_width(width, calibration_data=x[:512])
        accuracy[width] = np.mean(np.argmax(numpy(small(x_test)), 1) == y_test)
    # 4 filters then 8 (a quarter) is a weak classifier, yet far above chance (0.1).
    assert accuracy[0.25] > 0.3 and accuracy[0.5] > 0.5 and accuracy[1.0] > 0.7, accuracy
    with pytest.raises(ValueError, match="calibration_data"):
        slim.at_width(0.5)


def test_label_training_without_distillation(digits):
    (x, y), _ = digits
    slim = kp.dynamic.SlimmableModel(digits_cnn(), widths=[0.5, 1.0], distillation=False)
    compile_for_digits(slim)
    history = slim.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_slimmable_round_trips_config_and_keras_file(tmp_path):
    slim = kp.dynamic.SlimmableModel(
        residual_cnn(), widths=[0.5, 1.0], num_random=0, temperature=2.0, round_to=2
    )
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(slim)))
    restored = keras.saving.deserialize_keras_object(config)
    assert restored.widths == (0.5, 1.0) and restored.round_to == 2
    assert restored.temperature == 2.0 and restored.num_random == 0
    x = batch()
    path = str(tmp_path / "slim.keras")
    slim.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(numpy(loaded(x)), numpy(slim(x)), atol=1e-6)
    np.testing.assert_allclose(
        numpy(loaded.call_at_width(x, 0)), numpy(slim.call_at_width(x, 0)), atol=1e-6
    )
    np.testing.assert_allclose(
        numpy(kp.shrink(loaded, width=0.5)(x)), numpy(kp.shrink(slim, width=0.5)(x)), atol=1e-6
    )


def test_axis_masks_are_a_pure_function_of_groups():
    groups = kp.graph.channel_groups(residual_cnn())
    masks = width_lib.axis_masks(groups, 0.5)
    kernel = next(m.variable for g in groups for m in g.members if m.layer.name == "c3")
    full = width_lib.weight_mask(tuple(kernel.shape), masks[id(kernel)])
    # c3 reads the concatenation [x (8), dw(x) (8)]: 4 of each kept; 6 of its 12 filters.
    assert full.shape == (3, 3, 16, 12)
    assert full[0, 0].sum() == 8 * 6
    assert np.array_equal(np.flatnonzero(full[0, 0, :, 0]), [0, 1, 2, 3, 8, 9, 10, 11])
    assert width_lib.axis_masks(groups, 1.0) == {}
    assert groups_lib.channel_groups  # groups come from the public analysis


@pytest.mark.slow  # a variant of a fast training test; CI runs it
def test_softmax_model_with_a_loss_name_trains_every_width(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(8, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ]
    )
    for distillation in (True, False):
        slim = kp.dynamic.SlimmableModel(model, widths=[0.5, 1.0], distillation=distillation)
        assert not slim.from_logits
        slim.compile("adam", "sparse_categorical_crossentropy")
        history = slim.fit(x[:256], y[:256], epochs=2, verbose=0)
        assert history.history["loss"][1] < history.history["loss"][0]


JAX_SCRIPT = r"""
import numpy as np, keras, keras_prune as kp
assert keras.backend.backend() == "jax"
rng = np.random.default_rng(0)
x = rng.random((96, 8, 8, 1), dtype=np.float32); y = rng.integers(0, 10, 96)
inputs = keras.Input((8, 8, 1))
h = keras.layers.Conv2D(8, 3, use_bias=False, name="c")(inputs)
h = keras.layers.ReLU(name="b1")(keras.layers.BatchNormalization()(h))
model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(h)))
slim = kp.dynamic.SlimmableModel(model, widths=[0.5, 1.0])
slim.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
before = keras.ops.convert_to_numpy(model.get_layer("c").kernel).copy()
history = slim.fit(x, y, epochs=2, batch_size=16, verbose=0).history
assert history["loss"][1] < history["loss"][0], history
assert np.abs(keras.ops.convert_to_numpy(model.get_layer("c").kernel) - before).max() > 0
small = kp.shrink(slim, width=0.5)
masked = keras.ops.convert_to_numpy(slim.call_at_width(x[:4], 0))
assert np.abs(keras.ops.convert_to_numpy(small(x[:4])) - masked).max() < 1e-4
exits = kp.dynamic.EarlyExitModel(model, exits=["b1"])
exits.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
exits.fit(x, y, epochs=1, verbose=0)
print("OK")
"""


@pytest.mark.slow
def test_slimmable_and_early_exit_train_on_jax():
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environment = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=root, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-c", JAX_SCRIPT],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
