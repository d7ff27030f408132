"""One-shot, iterative, lottery ticket, SET / RigL, learnable-mask penalties and regularizers."""

import os

import keras
import numpy as np
import pytest
from conftest import compile_for_digits, small_cnn

import keras_prune as kp
from keras_prune import methods
from keras_prune.core import allocation, regularizers


def to_numpy(value):
    return keras.ops.convert_to_numpy(value)


def kept(model):
    return {w.name: int(to_numpy(w.masks[0]).sum()) for w in kp.layers.find_wrappers(model)}


def sizes(model):
    return {w.name: int(np.prod(w.masks[0].shape)) for w in kp.layers.find_wrappers(model)}


# -- one-shot ------------------------------------------------------------------------------------


def test_prune_once_then_plain_fit_keeps_the_mask(random_batch):
    x, y = random_batch
    base = small_cnn()
    pruned = kp.prune_once(base, 0.9, allocation=allocation.GlobalAllocation(0.02))
    before = kept(pruned)
    assert sum(before.values()) == kp.masks.keep_count(sum(sizes(pruned).values()), 0.9)
    compile_for_digits(pruned)
    pruned.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert kept(pruned) == before
    for wrapper in kp.layers.find_wrappers(pruned):
        weight = to_numpy(wrapper.layer.kernel)
        assert np.all(weight[to_numpy(wrapper.masks[0]) == 0] == 0)
    # The original is untouched.
    assert np.count_nonzero(to_numpy(base.get_layer("dense1").kernel)) == 576 * 32


def test_prune_once_reloaded_model_trains_with_callback_without_changing_masks(
    tmp_path, random_batch
):
    x, y = random_batch
    pruned = kp.prune_once(small_cnn(), 0.8, allocation="global")
    path = os.path.join(tmp_path, "once.keras")
    pruned.save(path)
    loaded = compile_for_digits(keras.saving.load_model(path))
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(pruned(x)), rtol=1e-6)
    before = {w.name: to_numpy(w.masks[0]) for w in kp.layers.find_wrappers(loaded)}
    loaded.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[kp.PruningCallback()])
    for wrapper in kp.layers.find_wrappers(loaded):
        np.testing.assert_array_equal(to_numpy(wrapper.masks[0]), before[wrapper.name])


def test_prune_once_with_gradient_criterion_needs_calibration(random_batch):
    x, y = random_batch
    base = compile_for_digits(small_cnn())
    with pytest.raises(ValueError, match="calibration_data"):
        kp.prune_once(base, 0.5, criterion="fisher")
    pruned = kp.prune_once(
        base, 0.5, criterion="fisher", calibration_data=(x, y), allocation="per_layer"
    )
    for name, count in kept(pruned).items():
        assert count == kp.masks.keep_count(sizes(pruned)[name], 0.5)


# -- iterative -------------------------------------------------------------------------------------


def test_iterative_schedule_steps_and_values():
    schedule = kp.schedules.IterativeSparsity([0.5, 0.75, 0.9], frequency=4, begin_step=2)
    updates = [step for step in range(20) if schedule.should_update(step)]
    assert updates == [2, 6, 10]
    assert [schedule.sparsity_at(step) for step in (0, 2, 5, 6, 10, 100)] == [
        0.5,
        0.5,
        0.5,
        0.75,
        0.9,
        0.9,
    ]
    assert float(to_numpy(schedule.sparsity_at(keras.ops.convert_to_tensor(7)))) == 0.75
    with pytest.raises(ValueError, match="non-decreasing"):
        kp.schedules.IterativeSparsity([0.9, 0.5], 10)
    with pytest.raises(ValueError, match=r"sparsities\[1\]"):
        kp.schedules.IterativeSparsity([0.5, 1.0], 10)


def test_iterative_pruning_reaches_each_stage(random_batch):
    x, y = random_batch
    schedule = kp.schedules.IterativeSparsity([0.5, 0.8], frequency=2)
    model = compile_for_digits(kp.prune(small_cnn(), schedule=schedule))
    history = model.fit(
        x, y, epochs=2, batch_size=32, verbose=0, callbacks=[kp.PruningCallback()]
    )  # 4 steps: cut to 0.5 at step 0, to 0.8 at step 2
    assert history.history["sparsity"][0] == pytest.approx(0.5, abs=0.01)
    assert history.history["sparsity"][1] == pytest.approx(0.8, abs=0.01)


# -- lottery ticket ------------------------------------------------------------------------------


class RecordAtBatchBegin(keras.callbacks.Callback):
    def __init__(self, steps):
        super().__init__()
        self.steps = steps
        self.records = {}

    def on_train_batch_begin(self, batch, logs=None):
        step = int(to_numpy(self.model.optimizer.iterations))
        if step in self.steps:
            self.records[step] = [to_numpy(v) for v in self.model.trainable_variables]


def test_lottery_ticket_rewinds_survivors_exactly(random_batch):
    x, y = random_batch
    model = compile_for_digits(kp.prune(small_cnn()))
    ticket = methods.LotteryTicket([0.5, 0.8], frequency=2, rewind_step=1)
    recorder = RecordAtBatchBegin({1, 2, 4})
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[ticket, recorder])
    assert ticket.rounds_done == 2
    saved = recorder.records[1]
    variables = model.trainable_variables
    mask_of = {id(w.targets[0].variable): w for w in kp.layers.find_wrappers(model)}
    for step, sparsity in ((2, 0.5), (4, 0.8)):
        rewound = recorder.records[step]
        for variable, original, value in zip(variables, saved, rewound, strict=True):
            wrapper = mask_of.get(id(variable))
            if wrapper is None:
                np.testing.assert_array_equal(value, original)
                continue
            survivors = value != 0
            # Survivors hold exactly their saved values; the rest is zero.
            np.testing.assert_array_equal(value[survivors], original[survivors])
            expected = kp.masks.keep_count(original.size, sparsity)
            assert np.count_nonzero(value) <= expected
    for name, count in kept(model).items():
        assert count == kp.masks.keep_count(sizes(model)[name], 0.8)


def test_lottery_ticket_validates_and_serializes():
    with pytest.raises(ValueError, match="rewind_step"):
        methods.LotteryTicket([0.5], frequency=5, rewind_step=5)
    ticket = methods.LotteryTicket([0.5, 0.9], 10, rewind_step=2, allocation="global")
    restored = methods.LotteryTicket(**ticket.get_config())
    assert restored.get_config() == ticket.get_config()


# -- SET / RigL ------------------------------------------------------------------------------------


def test_drop_and_grow_matches_numpy():
    rng = np.random.default_rng(3)
    mask = (rng.random(40) < 0.3).astype("float32")
    weights = rng.normal(size=40).astype("float32") * mask
    grow = rng.random(40).astype("float32")
    count = 4
    result = to_numpy(methods.drop_and_grow(mask, np.abs(weights), grow, count))
    active = np.flatnonzero(mask)
    dropped = active[np.argsort(np.abs(weights[active]))[:count]]
    inactive = np.flatnonzero(mask == 0)
    grown = inactive[np.argsort(-grow[inactive])[:count]]
    expected = mask.copy()
    expected[dropped] = 0
    expected[grown] = 1
    np.testing.assert_array_equal(result, expected)
    assert result.sum() == mask.sum()


def run_sparse_training(callback, random_batch, epochs=2):
    x, y = random_batch
    model = compile_for_digits(kp.prune(small_cnn()))
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=[callback])
    return model


def test_set_keeps_erk_counts_and_moves_connections(random_batch):
    first = {}

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if not first:
                first.update(
                    {w.name: to_numpy(w.masks[0]) for w in kp.layers.find_wrappers(self.model)}
                )

    model = compile_for_digits(kp.prune(small_cnn()))
    x, y = random_batch
    callback = methods.SET(0.9, frequency=2, drop_fraction=0.3, seed=1)
    model.fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[callback, Snapshot()])
    shapes = [tuple(w.targets[0].variable.shape) for w in kp.layers.find_wrappers(model)]
    expected = allocation.erk_sparsities(shapes, 0.9)
    for wrapper, sparsity in zip(kp.layers.find_wrappers(model), expected, strict=True):
        mask = to_numpy(wrapper.masks[0])
        assert mask.sum() == kp.masks.keep_count(mask.size, sparsity)
        weight = to_numpy(wrapper.layer.kernel)
        assert np.all(weight[mask == 0] == 0)
    assert not np.array_equal(first["dense1"], to_numpy(model.get_layer("dense1").masks[0]))


def test_rigl_grows_by_gradient(random_batch):
    x, y = random_batch
    rigl = methods.RigL(0.8, calibration_data=(x[:32], y[:32]), frequency=2, end_step=100)
    model = run_sparse_training(rigl, random_batch, epochs=1)
    total = sum(sizes(model).values())
    assert abs(sum(kept(model).values()) - 0.2 * total) <= len(kept(model))
    assert kept(model)["dense1"] < 0.2 * sizes(model)["dense1"]
    with pytest.raises(ValueError, match="calibration_data"):
        run_sparse_training(methods.RigL(0.8), random_batch, epochs=1)
    assert rigl.drop_fraction_at(0) == pytest.approx(0.3)
    assert rigl.drop_fraction_at(50) == pytest.approx(0.15)
    assert rigl.drop_fraction_at(100) == 0.0


def test_sparse_training_arguments_are_checked_and_serialize():
    with pytest.raises(ValueError, match="drop_fraction"):
        methods.SET(0.9, drop_fraction=1.5)
    with pytest.raises(ValueError, match="distribution"):
        methods.SET(0.9, distribution="normal")
    callback = methods.SET(0.8, frequency=5, end_step=50, distribution="uniform", seed=4)
    assert methods.SET(**callback.get_config()).get_config() == callback.get_config()


# -- learnable masks and regularizers ----------------------------------------------------


def test_gate_penalty_closes_gates(random_batch):
    x, y = random_batch

    def mean_gate(strength):
        model = kp.prune(
            small_cnn(), schedule=kp.ConstantSparsity(0.5, 0, frequency=1000), mask="sigmoid"
        )
        if strength:
            assert methods.penalize_masks(model, regularizers.GateL0(strength)) == 4
        compile_for_digits(model, learning_rate=0.1)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[kp.PruningCallback()])
        scores = to_numpy(model.get_layer("dense1").scores[0])
        return float(np.mean(1 / (1 + np.exp(-scores))))

    penalized, free = mean_gate(1e-2), mean_gate(0.0)
    assert penalized < free - 0.02
    with pytest.raises(ValueError, match="no learnable mask"):
        methods.penalize_masks(kp.prune(small_cnn()), regularizers.GateL0(1e-3))


def test_regularizers_match_numpy():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 4, 5)).astype("float32")
    np.testing.assert_allclose(
        float(regularizers.L1(0.1)(kernel)), 0.1 * np.abs(kernel).sum(), rtol=1e-5
    )
    per_filter = np.linalg.norm(kernel.reshape(-1, 5), axis=0)
    np.testing.assert_allclose(
        float(regularizers.GroupLasso(0.1)(kernel)),
        0.1 * np.sqrt(36) * per_filter.sum(),
        rtol=1e-5,
    )
    per_input = np.linalg.norm(np.moveaxis(kernel, 2, 0).reshape(4, -1), axis=1)
    np.testing.assert_allclose(
        float(regularizers.GroupLasso(0.1, groups="input")(kernel)),
        0.1 * np.sqrt(45) * per_input.sum(),
        rtol=1e-5,
    )
    scores = rng.normal(size=10).astype("float32")
    np.testing.assert_allclose(
        float(regularizers.GateL0(0.5, temperature=2.0)(scores)),
        0.5 * (1 / (1 + np.exp(-scores / 2))).sum(),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="strength"):
        regularizers.L1(-1.0)


@pytest.mark.parametrize(
    "instance",
    [regularizers.L1(0.01), regularizers.GroupLasso(0.02, "input"), regularizers.GateL0(0.1, 2)],
)
def test_regularizers_round_trip(instance):
    config = keras.saving.serialize_keras_object(instance)
    restored = keras.saving.deserialize_keras_object(config)
    assert type(restored) is type(instance) and restored.get_config() == instance.get_config()


def test_group_lasso_then_threshold_removes_shrunk_channels(digits, tmp_path):
    (x, y), _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(
                32,
                activation="relu",
                name="hidden",
                kernel_regularizer=regularizers.GroupLasso(3e-3),
            ),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    compile_for_digits(model)
    model.fit(x, y, epochs=6, batch_size=64, verbose=0)
    norms = regularizers.GroupLasso().group_norms(model.get_layer("hidden").kernel)
    norms = to_numpy(norms)
    pruned = kp.prune_once(
        model,
        0.0,
        granularity="channel",
        filters="hidden",
        allocation=allocation.ThresholdAllocation(0.05),
    )
    wrapper = pruned.get_layer("hidden")
    np.testing.assert_array_equal(to_numpy(wrapper.bias_masks[0]).astype(bool), norms >= 0.05)
    assert (norms < 0.05).sum() > 0  # the penalty emptied some neurons
    path = os.path.join(tmp_path, "lasso.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.get_layer("hidden").kernel_regularizer, regularizers.GroupLasso)


def test_schedules_round_trip():
    for schedule in (
        kp.schedules.OneShotSparsity(0.7),
        kp.schedules.IterativeSparsity([0.2, 0.4], 3, 1),
    ):
        config = keras.saving.serialize_keras_object(schedule)
        assert keras.saving.deserialize_keras_object(config) == schedule
    assert kp.schedules.OneShotSparsity(0.7)(5) == (False, 0.7)


def test_prune_once_at_channel_granularity_masks_whole_groups_that_shrink_removes():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    y = keras.layers.Conv2D(8, 1, name="b")(keras.layers.ReLU()(x))
    x = keras.layers.Add()([x, y])  # a and b must lose the same channels
    outputs = keras.layers.Dense(3, name="out")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    model.set_weights(  # BatchNorm statistics too, so a channel that is not zero would show
        [
            np.abs(rng.normal(size=w.shape)).astype("float32") + 0.5
            if "variance" in w.path
            else rng.normal(size=w.shape).astype("float32")
            for w in model.weights
        ]
    )
    pruned = kp.prune_once(model, 0.5, granularity="channel")
    small = kp.shrink(pruned)
    assert small.get_layer("a").kernel.shape[-1] == 4
    assert small.get_layer("b").kernel.shape[-1] == 4
    batch = rng.normal(size=(4, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(
        small.predict(batch, verbose=0), pruned.predict(batch, verbose=0), atol=1e-5
    )


@pytest.mark.parametrize("how", ["prune_once", "callback"])
def test_threshold_allocation_at_channel_granularity_is_coupled_across_groups(how):
    # Group lasso's recipe on a residual CNN with BatchNorm: a and b share channels through the
    # add. Channels 0-2 are tiny in both, channel 3 only in a: 0-2 go, 3 stays (b needs it).
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="a")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    y = keras.layers.Conv2D(8, 1, name="b")(keras.layers.ReLU()(x))
    x = keras.layers.Add()([x, y])
    outputs = keras.layers.Dense(3, name="out")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(1)
    for layer, tiny in (("a", [0, 1, 2, 3]), ("b", [0, 1, 2])):
        kernel = rng.normal(size=model.get_layer(layer).kernel.shape).astype("float32")
        kernel[..., tiny] *= 1e-4
        model.get_layer(layer).kernel.assign(kernel)
    threshold = allocation.ThresholdAllocation(0.01)
    if how == "prune_once":
        pruned = kp.prune_once(model, 0.0, granularity="channel", allocation=threshold)
    else:
        # One update, at the first batch (step 1: fit counts batches from 1, as tfmot does).
        schedule = kp.ConstantSparsity(0.0, begin_step=1, end_step=1)
        pruned = kp.prune(model, schedule=schedule, granularity="channel")
        pruned.compile(keras.optimizers.SGD(1e-6), "mse")
        data = rng.normal(size=(8, 6, 6, 3)).astype("float32")
        callback = kp.PruningCallback(allocation=threshold)
        pruned.fit(data, np.zeros((8, 3)), epochs=1, verbose=0, callbacks=[callback])
    kept = keras.ops.convert_to_numpy(pruned.get_layer("a").masks[0]).reshape(-1, 8).any(0)
    np.testing.assert_array_equal(np.flatnonzero(~kept), [0, 1, 2])
    gamma = keras.ops.convert_to_numpy(pruned.get_layer("bn").layer.gamma)
    np.testing.assert_array_equal(gamma[:3], 0)
    small = kp.shrink(pruned)
    assert small.get_layer("a").kernel.shape[-1] == small.get_layer("b").kernel.shape[-1] == 5
    batch = rng.normal(size=(4, 6, 6, 3)).astype("float32")
    np.testing.assert_allclose(
        small.predict(batch, verbose=0), pruned.predict(batch, verbose=0), atol=1e-5
    )
