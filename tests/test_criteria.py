"""Importance criteria against NumPy references, gradient collection, errors, serialization."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import compile_for_digits, small_cnn

import keras_prune as kp
from keras_prune.core import criteria
from keras_prune.engine import collect_gradients

# Differentiates with tf.GradientTape in this process.
on_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="uses tf.GradientTape in this process"
)


def to_numpy(value):
    return keras.ops.convert_to_numpy(value)


@pytest.fixture
def weight_and_statistics():
    rng = np.random.default_rng(1)
    weight = rng.normal(size=(4, 3)).astype("float32")
    gradients = [rng.normal(size=(4, 3)).astype("float32") for _ in range(3)]
    statistics = criteria.GradientStatistics()
    statistics.record(weight, gradients)
    return weight, np.stack(gradients), statistics


@pytest.mark.parametrize(
    "name, reference",
    [
        ("magnitude", lambda w, g: np.abs(w)),
        ("l1", lambda w, g: np.abs(w)),
        ("l2", lambda w, g: w**2),
        ("gradient", lambda w, g: np.abs(g.mean(0))),
        ("taylor", lambda w, g: np.abs(w * g.mean(0))),
        ("fisher", lambda w, g: (g**2).mean(0)),
        ("obd", lambda w, g: 0.5 * (g**2).mean(0) * w**2),
        ("movement", lambda w, g: -w * g.mean(0)),
    ],
)
def test_criterion_matches_numpy_reference(name, reference, weight_and_statistics):
    weight, gradients, statistics = weight_and_statistics
    scores = criteria.get(name)(weight, statistics)
    np.testing.assert_allclose(to_numpy(scores), reference(weight, gradients), rtol=1e-5)


def test_movement_accumulates_across_collections():
    weight = np.array([1.0, -2.0, 0.5], "float32")
    statistics = criteria.GradientStatistics()
    statistics.record(weight, [np.array([0.1, 0.2, -0.3], "float32")])
    moved = weight - 0.5
    statistics.record(moved, [np.array([-1.0, 1.0, 2.0], "float32")])
    expected = -weight * np.array([0.1, 0.2, -0.3]) - moved * np.array([-1.0, 1.0, 2.0])
    np.testing.assert_allclose(to_numpy(criteria.Movement()(moved, statistics)), expected, 1e-6)
    assert statistics.collections == 2 and statistics.batches == 1


def test_random_is_seeded_and_keeps_pruned_weights_pruned():
    weight = keras.Variable(np.array([[0.0, 1.0], [2.0, 0.0], [3.0, 4.0]], "float32"), name="w")
    first = to_numpy(criteria.Random(seed=7)(weight))
    np.testing.assert_array_equal(first, to_numpy(criteria.Random(seed=7)(weight)))
    assert not np.array_equal(first, to_numpy(criteria.Random(seed=8)(weight)))
    zero = to_numpy(weight) == 0
    assert first[zero].max() < first[~zero].min()


def test_gradient_criterion_without_data_says_so():
    weight = keras.Variable(np.ones((2, 2), "float32"), name="kernel")
    with pytest.raises(ValueError, match="no gradient has been collected.*calibration_data"):
        criteria.Taylor()(weight, criteria.GradientStatistics())
    model = compile_for_digits(kp.prune(small_cnn(), criterion="fisher"))
    with pytest.raises(ValueError, match="no gradient has been collected"):
        kp.pruning.update_masks(model, 0)


def test_unknown_criterion_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown criterion 'snip'.*'fisher'.*'taylor'"):
        criteria.get("snip")
    with pytest.raises(ValueError, match="Unknown criterion"):
        kp.PruneWrapper(keras.layers.Dense(2), criterion="snip")
    with pytest.raises(TypeError, match="Expected `criterion`"):
        criteria.get(3)


def test_function_criterion_checks_shape():
    weight = np.ones((2, 3), "float32")
    good = criteria.get(lambda w, stats: keras.ops.abs(w) * 2)
    np.testing.assert_array_equal(to_numpy(good(weight)), 2 * weight)
    bad = criteria.FunctionCriterion(lambda w, stats: keras.ops.sum(w))
    with pytest.raises(ValueError, match="Expected one score per weight"):
        bad(weight)


def test_gradient_collection_shows_progress_only_when_verbose(random_batch, capsys):
    x, y = random_batch
    model = compile_for_digits(kp.prune(small_cnn(), criterion="taylor"))
    collect_gradients(model, (x, y), batch_size=32)
    assert capsys.readouterr().out == ""
    assert collect_gradients(model, (x, y), batch_size=32, verbose=1) == 2
    assert "2/2" in capsys.readouterr().out
    kp.engine.gradient_statistics(model, (x, y), batch_size=16, verbose=1)
    assert "4/4" in capsys.readouterr().out


@on_tensorflow
def test_collect_gradients_matches_gradient_tape(random_batch):
    x, y = random_batch
    model = compile_for_digits(kp.prune(small_cnn(), criterion="taylor"))
    used = collect_gradients(model, (x, y), batch_size=32)
    assert used == 2
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for wrapper in kp.layers.find_wrappers(model):
        variable = wrapper.targets[0].variable
        gradients = []
        for start in (0, 32):
            with tf.GradientTape() as tape:
                loss = loss_fn(y[start : start + 32], model(x[start : start + 32]))
            gradients.append(tape.gradient(loss, variable.value).numpy())
        statistics = wrapper.gradient_statistics[0]
        np.testing.assert_allclose(
            to_numpy(statistics.mean_gradient), np.mean(gradients, 0), rtol=1e-4, atol=1e-7
        )
        np.testing.assert_allclose(
            to_numpy(statistics.mean_squared_gradient),
            np.mean(np.square(gradients), 0),
            rtol=1e-4,
            atol=1e-9,
        )


def test_fit_with_calibration_data_prunes_by_taylor(random_batch):
    x, y = random_batch
    base = small_cnn()
    # One update, at the first batch (step 1: fit counts batches from 1, as tfmot does).
    schedule = kp.ConstantSparsity(0.75, begin_step=1, end_step=1, frequency=1)
    per_layer = dict(schedule=schedule, criterion="taylor", allocation="per_layer")
    model = compile_for_digits(kp.prune(base, **per_layer))
    reference = compile_for_digits(kp.prune(base, **per_layer))
    collect_gradients(reference, (x[:32], y[:32]))
    expected = {
        wrapper.name: to_numpy(wrapper.layer_scores().masks_at(0.75)[0][0])
        for wrapper in kp.layers.find_wrappers(reference)
    }
    callback = kp.PruningCallback(calibration_data=(x[:32], y[:32]))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    for wrapper in kp.layers.find_wrappers(model):
        np.testing.assert_array_equal(to_numpy(wrapper.masks[0]), expected[wrapper.name])
        magnitude = to_numpy(
            kp.masks.magnitude_mask(reference.get_layer(wrapper.name).targets[0].variable, 0.75)
        )
        assert not np.array_equal(magnitude, expected[wrapper.name])


def test_criterion_round_trips_through_config_and_keras_file(tmp_path, random_batch):
    x, _ = random_batch
    model = kp.prune(small_cnn(), criterion=criteria.Random(seed=5))
    wrapper = kp.layers.find_wrappers(model)[0]
    restored = kp.PruneWrapper.from_config(wrapper.get_config())
    assert restored.criterion == criteria.Random(seed=5)
    for name in sorted(criteria.ALIASES):
        original = criteria.get(name)
        config = keras.saving.serialize_keras_object(original)
        assert keras.saving.deserialize_keras_object(config) == original
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert kp.layers.find_wrappers(loaded)[0].criterion == criteria.Random(seed=5)
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6)


@keras.saving.register_keras_serializable(package="keras_prune_tests")
def cubed(weight, statistics):
    return keras.ops.abs(weight) ** 3


def test_registered_function_criterion_round_trips():
    criterion = criteria.get(cubed)
    config = keras.saving.serialize_keras_object(criterion)
    assert keras.saving.deserialize_keras_object(config) == criterion
