"""PruneWrapper: masks, exact zeros under any optimizer, learnable masks, errors, serialization."""

import json

import keras
import numpy as np
import pytest
from conftest import compile_for_digits, small_cnn

import keras_prune as kp

L = keras.layers


class AssertMaskedWeightsZero(keras.callbacks.Callback):
    """After every batch, every masked weight must be exactly zero (checkpoints are sparse)."""

    def __init__(self):
        super().__init__()
        self.checked = 0

    def on_train_batch_end(self, batch, logs=None):
        for wrapper in kp.layers.find_wrappers(self.model):
            for variable, mask in zip(wrapper.prunable_weights, wrapper.masks, strict=True):
                leaked = np.asarray(variable)[np.asarray(mask) == 0]
                assert not leaked.any(), f"{variable.path}: masked weights revived"
                self.checked += 1


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop", "adamw", "lion"])
def test_masked_weights_stay_zero_at_every_step(optimizer, random_batch):
    x, y = random_batch
    pruned = kp.prune(small_cnn(), schedule=kp.PolynomialDecay(0.0, 0.8, 0, 12, frequency=3))
    pruned.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    checker = AssertMaskedWeightsZero()
    pruned.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[kp.PruningCallback(), checker])
    assert checker.checked > 0
    assert kp.engine.realised_sparsity(kp.layers.find_wrappers(pruned)) > 0.7


def test_fit_without_callback_tells_the_user(random_batch):
    x, y = random_batch
    pruned = compile_for_digits(kp.prune(small_cnn()))
    with pytest.raises(RuntimeError, match="kp.PruningCallback"):
        pruned.fit(x, y, epochs=1, verbose=0)


def test_sparsity_is_logged_for_the_progress_bar(random_batch):
    x, y = random_batch
    pruned = compile_for_digits(
        kp.prune(small_cnn(), schedule=kp.ConstantSparsity(0.6, 0, frequency=1))
    )
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(logs["sparsity"])

    history = pruned.fit(x, y, epochs=2, verbose=0, callbacks=[kp.PruningCallback(), Spy()])
    assert history.history["sparsity"][-1] == pytest.approx(0.6, abs=0.01)
    assert seen and seen[-1] == pytest.approx(0.6, abs=0.01)


@pytest.mark.parametrize(
    "granularity, expected",
    [
        ("unstructured", lambda n, s: n - kp.masks.keep_count(n, s)),
        (kp.granularity.Block((1, 4)), None),
        (kp.granularity.NofM(2, 4), lambda n, s: n // 2),
        ("channel", None),
    ],
)
def test_realised_sparsity_matches_schedule(granularity, expected):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((16,)), L.Dense(32, name="a"), L.Dense(8, name="b")])
    pruned = kp.prune(
        model,
        schedule=kp.ConstantSparsity(0.7, 0, frequency=1),
        granularity=granularity,
        allocation="per_layer",
    )
    kp.pruning.update_masks(pruned, 0)
    for wrapper in kp.layers.find_wrappers(pruned):
        kernel = np.asarray(wrapper.layer.kernel)
        zeros = kernel.size - np.count_nonzero(kernel)
        if expected is not None:
            assert zeros == expected(kernel.size, 0.7)
        elif granularity == "channel" and wrapper.name == "b":
            # Channels are pruned by dependency group; the model output's are never removed.
            assert zeros == 0
        else:
            # Within one block / one channel of the schedule.
            unit = 4 if isinstance(granularity, kp.granularity.Block) else kernel.shape[0]
            assert abs(zeros - 0.7 * kernel.size) <= unit


def test_channel_granularity_zeroes_bias_with_the_channel():
    keras.utils.set_random_seed(4)
    # A layer after "a": the channels of a model output are never pruned.
    model = keras.Sequential(
        [keras.Input((6,)), L.Dense(10, bias_initializer="ones", name="a"), L.Dense(2)]
    )
    pruned = kp.prune(
        model, schedule=kp.ConstantSparsity(0.5, 0, frequency=1), granularity="channel"
    )
    kp.pruning.update_masks(pruned, 0)
    layer = pruned.get_layer("a").layer
    dead = ~np.asarray(layer.kernel).any(axis=0)
    assert dead.sum() == 5
    np.testing.assert_array_equal(np.asarray(layer.bias)[dead], 0.0)
    np.testing.assert_array_equal(np.asarray(layer.bias)[~dead], 1.0)


@pytest.mark.parametrize("mask", ["learnable", kp.mask_types.SigmoidGateMask(temperature=0.5)])
def test_learnable_masks_train_scores_and_keep_effective_weights_sparse(mask, random_batch):
    x, y = random_batch
    pruned = compile_for_digits(
        kp.prune(small_cnn(), schedule=kp.ConstantSparsity(0.75, 0, frequency=1), mask=mask)
    )
    wrapper = pruned.get_layer("dense1")
    scores_before = np.asarray(wrapper.scores[0]).copy()
    pruned.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[kp.PruningCallback()])
    assert not np.allclose(np.asarray(wrapper.scores[0]), scores_before)
    effective = keras.ops.convert_to_numpy(wrapper.effective_weights()[0][1])
    assert effective.size - np.count_nonzero(effective) == effective.size - kp.masks.keep_count(
        effective.size, 0.75
    )
    plain = kp.strip(pruned)
    np.testing.assert_allclose(plain.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-5)


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda: kp.PruneWrapper("dense"), TypeError, "Received: layer='dense'"),
        (
            lambda: kp.PruneWrapper(kp.PruneWrapper(L.Dense(2))),
            ValueError,
            "already a PruneWrapper",
        ),
        (lambda: kp.PruneWrapper(keras.Sequential([L.Dense(2)])), ValueError, "kp.prune"),
        (lambda: kp.PruneWrapper(L.Dense(2), granularity="diagonal"), ValueError, "'diagonal'"),
        (lambda: kp.PruneWrapper(L.Dense(2), mask="fuzzy"), ValueError, "mask='fuzzy'"),
        (lambda: kp.granularity.NofM(4, 4), ValueError, "n=4, m=4"),
        (lambda: kp.granularity.Block((0, 4)), ValueError, r"block_shape=\(0, 4\)"),
        (lambda: kp.mask_types.SigmoidGateMask(temperature=0), ValueError, "temperature=0"),
    ],
)
def test_bad_input_raises_clear_errors(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_block_larger_than_weight_is_refused_when_built():
    wrapper = kp.PruneWrapper(L.Dense(8), granularity=kp.granularity.Block((1, 16)))
    with pytest.raises(ValueError, match=r"Block shape \(1, 16\) is larger than weight"):
        wrapper.build((None, 4))


def test_layer_without_prunable_weights_passes_through_and_unknown_weights_are_refused():
    # As in tfmot, a built-in layer with nothing to prune wraps and passes its inputs through.
    flatten = kp.PruneWrapper(L.Flatten())
    flatten.build((None, 2, 2))
    assert flatten.targets == [] and flatten.masks == []

    class Scale(L.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],))

        def call(self, x):
            return x * self.scale

    with pytest.raises(ValueError, match="get_prunable_weights"):
        kp.PruneWrapper(Scale()).build((None, 2))


def test_config_round_trip():
    wrapper = kp.PruneWrapper(
        L.Dense(8, name="d"),
        schedule=kp.PolynomialDecay(0.1, 0.7, 5, 50, power=2, frequency=5),
        granularity=kp.granularity.Block((2, 4), pooling="max"),
        mask=kp.mask_types.SigmoidGateMask(0.3),
    )
    config = json.loads(json.dumps(keras.layers.serialize(wrapper)))
    restored = keras.layers.deserialize(config)
    assert isinstance(restored, kp.PruneWrapper)
    assert restored.schedule == wrapper.schedule
    assert restored.granularity == wrapper.granularity
    assert restored.mask_type == wrapper.mask_type
    assert restored.name == "d" and restored.layer.name == "d"


def test_manual_wrapper_in_sequential_is_drop_in(random_batch):
    x, _ = random_batch
    keras.utils.set_random_seed(5)
    dense = L.Dense(10)
    plain = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), dense])
    wrapped = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), kp.PruneWrapper(dense)])
    np.testing.assert_allclose(
        wrapped.predict(x, verbose=0), plain.predict(x, verbose=0), atol=1e-6
    )
