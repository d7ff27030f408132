"""Wanda's scores and masks against the formula, in NumPy, and through kp.posttraining.prune_posttraining."""

import keras
import numpy as np

import keras_prune as kp
from keras_prune.posttraining.wanda import per_output_mask, wanda_scores


def test_scores_are_weight_magnitude_times_input_norm():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(3, 5))
    x = rng.normal(size=(40, 5))
    norms = np.sqrt((x**2).sum(0))
    expected = np.array([[abs(weight[i, j]) * norms[j] for j in range(5)] for i in range(3)])
    np.testing.assert_allclose(wanda_scores(weight, norms), expected)


def test_each_output_row_keeps_the_same_number():
    scores = np.array([[5.0, 1.0, 4.0, 2.0], [0.1, 0.4, 0.3, 0.2]])
    np.testing.assert_array_equal(per_output_mask(scores, 0.5), [[1, 0, 1, 0], [0, 1, 1, 0]])


def _dense_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(12, activation="relu", name="first")(inputs)
    return keras.Model(inputs, keras.layers.Dense(4, name="second")(hidden))


def test_prune_posttraining_wanda_masks_follow_the_formula_layer_after_layer():
    model = _dense_model()
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(64, 8)) * np.linspace(0.1, 3, 8)).astype("float32")
    pruned = kp.posttraining.prune_posttraining(model, x, method="wanda", sparsity=0.5, verbose=0)
    first, second = model.get_layer("first"), model.get_layer("second")
    w1, b1 = (np.asarray(v) for v in first.weights)
    mask1 = per_output_mask(wanda_scores(w1.T, np.linalg.norm(x, axis=0)), 0.5).T
    # The second layer sees the outputs of the pruned first layer.
    hidden = np.maximum(x @ (w1 * mask1) + b1, 0)
    w2 = np.asarray(second.kernel)
    mask2 = per_output_mask(wanda_scores(w2.T, np.linalg.norm(hidden, axis=0)), 0.5).T
    wrappers = {w.name: w for w in kp.layers.find_wrappers(pruned)}
    np.testing.assert_array_equal(np.asarray(wrappers["first"].masks[0]), mask1)
    np.testing.assert_array_equal(np.asarray(wrappers["second"].masks[0]), mask2)
    np.testing.assert_array_equal(np.asarray(wrappers["first"].layer.kernel), w1 * mask1)


def test_wanda_two_of_four_groups_follow_the_library_pattern():
    model = _dense_model()
    x = np.random.default_rng(3).normal(size=(32, 8)).astype("float32")
    pruned = kp.posttraining.prune_posttraining(
        model, x, method="wanda", granularity="2:4", verbose=0
    )
    for wrapper in kp.layers.find_wrappers(pruned):
        mask = np.asarray(wrapper.masks[0]).T  # [outputs, inputs]
        assert np.all(mask.reshape(mask.shape[0], -1, 4).sum(-1) == 2)
