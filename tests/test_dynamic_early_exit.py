"""Early exit: heads, training, stage split, threshold calibration, saving."""

import json

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.dynamic import threshold as threshold_lib

layers = keras.layers


def block_cnn(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    y = layers.Conv2D(16, 3, padding="same", name="res")(x)
    x = layers.Add(name="block1")([x, y])
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(name="block2")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="block_cnn")


def numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def compiled(model):
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def test_joint_training_with_distillation_trains_every_exit(digits):
    (x, y), (x_test, y_test) = digits
    model = compiled(
        kp.dynamic.EarlyExitModel(
            block_cnn(), exits=["pool1", "block2"], distillation=True, head="flatten"
        )
    )
    history = model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    assert "accuracy" in history.history
    probabilities = model.exit_predictions(x_test)
    assert len(probabilities) == 3
    np.testing.assert_allclose(probabilities[0].sum(1), 1.0, atol=1e-5)
    accuracy = [np.mean(np.argmax(p, 1) == y_test) for p in probabilities]
    assert min(accuracy) > 0.6, accuracy


def test_frozen_backbone_trains_the_heads_only(digits):
    (x, y), _ = digits
    backbone = block_cnn()
    before = [numpy(w) for w in backbone.weights]
    model = compiled(kp.dynamic.EarlyExitModel(backbone, exits=["pool1"], freeze_backbone=True))
    head_before = numpy(model.heads[0].weights[0])
    model.fit(x[:256], y[:256], epochs=1, batch_size=64, verbose=0)
    for old, new in zip(before, backbone.weights, strict=True):
        np.testing.assert_array_equal(old, numpy(new))
    assert not np.allclose(head_before, numpy(model.heads[0].weights[0]))


def test_stages_chain_to_the_full_model():
    model = kp.dynamic.EarlyExitModel(block_cnn(), exits=["block1", "block2"])
    x = np.random.default_rng(0).random((4, 8, 8, 1)).astype("float32")
    expected = [numpy(out) for out in model(x)]
    stages = kp.dynamic.stage_models(model)
    assert len(stages) == 3
    out = stages[0](x)
    np.testing.assert_allclose(numpy(out["logits"]), expected[0], atol=1e-6)
    out = stages[1](out["features"])
    np.testing.assert_allclose(numpy(out["logits"]), expected[1], atol=1e-6)
    final = stages[2](out["features"])
    assert set(final) == {"logits"}
    np.testing.assert_allclose(numpy(final["logits"]), expected[2], atol=1e-6)


def test_an_exit_crossed_by_a_residual_is_named():
    model = kp.dynamic.EarlyExitModel(block_cnn(), exits=["res"])
    with pytest.raises(kp.dynamic.StageSplitError, match="exit layer 'res'"):
        kp.dynamic.stage_models(model)


@pytest.mark.parametrize(
    "exits, match",
    [("pool1", "list of layer names"), (["nope"], "'nope'"), (["block2", "pool1"], "order")],
)
def test_bad_exits_are_named(exits, match):
    with pytest.raises(ValueError, match=match):
        kp.dynamic.EarlyExitModel(block_cnn(), exits=exits)


def test_early_exit_round_trips_config_and_keras_file(tmp_path):
    model = kp.dynamic.EarlyExitModel(
        block_cnn(), exits=["pool1"], exit_weights=[0.5], distillation=True, alpha=0.3
    )
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(model)))
    restored = keras.saving.deserialize_keras_object(config)
    assert restored.exit_names == ["pool1"] and restored.exit_weights == [0.5]
    assert restored.alpha == 0.3 and restored.distillation and restored.head == "average"
    x = np.random.default_rng(1).random((3, 8, 8, 1)).astype("float32")
    path = str(tmp_path / "exit.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(loaded(x), model(x), strict=True):
        np.testing.assert_allclose(numpy(a), numpy(b), atol=1e-6)


# -- thresholds ----------------------------------------------------------------------------------


def _brute_force(probabilities, labels, threshold):
    correct = []
    for i, label in enumerate(labels):
        for stage, p in enumerate(probabilities):
            if stage == len(probabilities) - 1 or p[i].max() >= threshold:
                correct.append(p[i].argmax() == label)
                break
    return np.mean(correct)


def test_calibrated_threshold_is_the_lowest_meeting_the_accuracy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 200)
    final = np.eye(4)[labels] * 0.7 + 0.075  # always right, confidence 0.775
    noisy = rng.dirichlet(np.ones(4) * 0.5, size=200)
    calibration = kp.dynamic.calibrate_threshold(
        [noisy, final], labels, max_accuracy_drop=0.05, stage_costs=[1.0, 3.0]
    )
    assert calibration.full_accuracy == 1.0
    assert calibration.accuracy >= 0.95
    assert calibration.accuracy == pytest.approx(
        _brute_force([noisy, final], labels, calibration.threshold)
    )
    # Any lower observed confidence would lose more than 5 points.
    lower = np.max(noisy, 1)[np.max(noisy, 1) < calibration.threshold]
    for threshold in lower[-5:]:
        assert _brute_force([noisy, final], labels, threshold) < 0.95
    early = calibration.exit_fractions[0]
    assert calibration.expected_cost == pytest.approx(early * 1.0 + (1 - early) * 4.0)


def test_threshold_outside_unit_interval_is_named():
    probabilities = [np.full((2, 2), 0.5), np.full((2, 2), 0.5)]
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            threshold_lib.exit_indices(probabilities, bad)
    with pytest.raises(ValueError, match="max_accuracy_drop"):
        kp.dynamic.calibrate_threshold(probabilities, [0, 1], max_accuracy_drop=2.0)
    with pytest.raises(ValueError, match="one row of probabilities per label"):
        kp.dynamic.calibrate_threshold(probabilities, [0, 1, 1])


def test_string_and_function_losses_match_the_loss_object():
    from keras_prune.dynamic.compiled_loss import loss_function

    y = np.array([0, 2, 1])
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]], "float32")
    expected = numpy(keras.losses.SparseCategoricalCrossentropy()(y, probabilities))
    by_name = loss_function("sparse_categorical_crossentropy", "m")(y, probabilities)
    np.testing.assert_allclose(numpy(by_name), expected, rtol=1e-6)
    weights = np.array([1.0, 0.0, 1.0], "float32")
    weighted = loss_function(keras.losses.sparse_categorical_crossentropy, "m")(
        y, probabilities, weights
    )
    per_sample = numpy(keras.losses.sparse_categorical_crossentropy(y, probabilities))
    np.testing.assert_allclose(numpy(weighted), (per_sample[0] + per_sample[2]) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="one loss"):
        loss_function(["mse", "mse"], "EarlyExitModel")


@pytest.mark.slow  # a variant of a fast training test; CI runs it
def test_softmax_model_trains_with_a_loss_name(digits):
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    backbone = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.Conv2D(8, 3, activation="relu", name="conv"),
            layers.Flatten(),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model = kp.dynamic.EarlyExitModel(backbone, exits=["conv"], distillation=True)
    assert not model.from_logits
    model.compile("adam", "sparse_categorical_crossentropy")
    history = model.fit(x[:256], y[:256], epochs=2, verbose=0)
    assert history.history["loss"][1] < history.history["loss"][0]
    first, final = model.exit_predictions(x[:4])
    np.testing.assert_allclose(first.sum(1), 1.0, atol=1e-5)
