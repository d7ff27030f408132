"""prune / strip on whole models, saving and resuming, tfmot names, summaries."""

import json

import keras
import numpy as np
import pytest
from conftest import compile_for_digits, small_cnn

import keras_prune as kp
from keras_prune.reporting.summary import weight_rows

L = keras.layers


def functional_with_nested_block():
    keras.utils.set_random_seed(7)
    block = keras.Sequential(
        [keras.Input((8,)), L.Dense(8, name="inner_a"), L.Dense(8, name="inner_b")], name="block"
    )
    inputs = keras.Input((6,))
    hidden = L.Dense(8, activation="relu", name="stem")(inputs)
    branch = block(hidden)
    merged = L.Add()([hidden, branch])
    outputs = L.Dense(3, name="head")(merged)
    return keras.Model(inputs, outputs)


def test_prune_leaves_the_original_model_untouched(random_batch):
    x, _ = random_batch
    model = small_cnn()
    before = [w.copy() for w in model.get_weights()]
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.9, 0, frequency=1))
    kp.pruning.update_masks(pruned, 0)
    for original, now in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(original, now)
    assert not kp.layers.find_wrappers(model)
    assert all(not isinstance(layer, kp.PruneWrapper) for layer in model.layers)


def test_functional_and_nested_models():
    model = functional_with_nested_block()
    x = np.random.default_rng(0).normal(size=(10, 6)).astype("float32")
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5, 0, frequency=1))
    names = sorted(wrapper.name for wrapper in kp.layers.find_wrappers(pruned))
    assert names == ["head", "inner_a", "inner_b", "stem"]
    np.testing.assert_allclose(pruned.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    kp.pruning.update_masks(pruned, 0)
    plain = kp.strip(pruned)
    assert not kp.layers.find_wrappers(plain)
    np.testing.assert_allclose(plain.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    "filters, expected",
    [
        ("conv", ["conv1", "conv2"]),
        (["^dense1$", "logits"], ["dense1", "logits"]),
        (lambda layer: isinstance(layer, L.Dense), ["dense1", "logits"]),
        (None, ["conv1", "conv2", "dense1", "logits"]),
    ],
)
def test_filters(filters, expected):
    pruned = kp.prune(small_cnn(), filters=filters)
    assert sorted(pruned.pruning_report.wrapped) == expected
    for name in {"conv1", "conv2", "dense1", "logits"} - set(expected):
        assert pruned.pruning_report.skipped[name] == "excluded by `filters`"


def test_bad_models_are_refused_with_a_fix():
    # Unbuilt Sequential models, subclassed models and single layers are pruned now
    # (tests/test_any_model.py); what cannot be pruned is refused with the fix.
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = L.Dense(3)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="not built"):
        kp.prune(Subclassed())
    with pytest.raises(TypeError, match="keras.Model"):
        kp.prune("model.keras")
    with pytest.raises(TypeError, match="filters=42"):
        kp.prune(small_cnn(), filters=42)
    with pytest.raises(ValueError, match="nothing to prune"):
        kp.prune(small_cnn(), filters="no_such_layer")


def test_subclassed_model_with_wrapped_layers_trains(random_batch):
    x, y = random_batch

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.flatten = L.Flatten()
            self.hidden = kp.PruneWrapper(
                L.Dense(16), schedule=kp.ConstantSparsity(0.5, 0, frequency=1)
            )
            self.out = L.Dense(10)

        def call(self, x):
            return self.out(self.hidden(self.flatten(x)))

    net = compile_for_digits(Net())
    net.fit(x, y, epochs=1, verbose=0, callbacks=[kp.PruningCallback()])
    kernel = np.asarray(net.hidden.layer.kernel)
    assert np.count_nonzero(kernel) == kp.masks.keep_count(kernel.size, 0.5)


def test_save_and_load_round_trip(tmp_path, random_batch):
    x, y = random_batch
    pruned = compile_for_digits(
        kp.prune(
            small_cnn(), schedule=kp.PolynomialDecay(0.0, 0.8, 0, 8, frequency=2), mask="learnable"
        )
    )
    pruned.fit(x, y, epochs=1, batch_size=16, verbose=0, callbacks=[kp.PruningCallback()])
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0))
    for original, restored in zip(
        kp.layers.find_wrappers(pruned), kp.layers.find_wrappers(loaded), strict=True
    ):
        assert restored.schedule == original.schedule
        for a, b in zip(
            original.masks + original.scores, restored.masks + restored.scores, strict=True
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert int(restored.pruning_step) == int(original.pruning_step)
    assert int(loaded.optimizer.iterations) == int(pruned.optimizer.iterations)


def test_resumed_training_reaches_the_same_masks(tmp_path, random_batch):
    x, y = random_batch
    schedule = kp.PolynomialDecay(0.0, 0.85, begin_step=0, end_step=30, frequency=4)

    def fresh():
        return compile_for_digits(kp.prune(small_cnn(seed=11), schedule=schedule))

    def fit(model, epochs, initial_epoch=0):
        model.fit(
            x,
            y,
            batch_size=8,
            epochs=epochs,
            initial_epoch=initial_epoch,
            shuffle=False,
            verbose=0,
            callbacks=[kp.PruningCallback()],
        )

    uninterrupted = fresh()
    fit(uninterrupted, 4)

    interrupted = fresh()
    fit(interrupted, 2)
    interrupted.save(tmp_path / "mid.keras")
    resumed = keras.models.load_model(tmp_path / "mid.keras")
    fit(resumed, 4, initial_epoch=2)

    for a, b in zip(
        kp.layers.find_wrappers(uninterrupted), kp.layers.find_wrappers(resumed), strict=True
    ):
        for mask_a, mask_b in zip(a.masks, b.masks, strict=True):
            np.testing.assert_array_equal(np.asarray(mask_a), np.asarray(mask_b))
    assert kp.engine.realised_sparsity(kp.layers.find_wrappers(resumed)) == pytest.approx(
        0.85, abs=0.01
    )


def test_stripped_model_has_no_keras_prune_objects(tmp_path, random_batch):
    x, y = random_batch
    pruned = compile_for_digits(
        kp.prune(small_cnn(), schedule=kp.ConstantSparsity(0.7, 0, frequency=1))
    )
    pruned.fit(x, y, epochs=1, verbose=0, callbacks=[kp.PruningCallback()])
    plain = kp.strip(pruned)
    plain.save(tmp_path / "plain.keras")
    with open(tmp_path / "plain.keras", "rb") as file:
        assert b"keras_prune" not in file.read()
    np.testing.assert_allclose(plain.predict(x, verbose=0), pruned.predict(x, verbose=0), atol=1e-6)
    assert all(not type(layer).__module__.startswith("keras_prune") for layer in plain.layers)


def test_tfmot_names(random_batch):
    x, y = random_batch
    pruned = kp.tfmot.prune_low_magnitude(
        small_cnn(),
        pruning_schedule=kp.ConstantSparsity(0.5, begin_step=0, frequency=1),
        filters="dense1",
        block_size=(4, 1),  # tfmot counts on the Keras kernel [input, output]: 4 inputs, 1 output
    )
    assert pruned.get_layer("dense1").granularity == kp.granularity.Block((1, 4))
    compile_for_digits(pruned).fit(
        x, y, epochs=1, verbose=0, callbacks=[kp.tfmot.UpdatePruningStep()]
    )
    plain = kp.tfmot.strip_pruning(pruned)
    assert not kp.layers.find_wrappers(plain)
    layer = kp.tfmot.prune_low_magnitude(L.Dense(4))
    assert isinstance(layer, kp.PruneWrapper)


def test_pruning_summaries_record_per_layer_sparsity(tmp_path, random_batch):
    x, y = random_batch
    pruned = compile_for_digits(
        kp.prune(
            small_cnn(),
            schedule=kp.PolynomialDecay(0.0, 0.6, 0, 16, frequency=4),
            allocation="per_layer",
        )
    )
    summaries = kp.callbacks.PruningSummaries(log_dir=str(tmp_path))
    history = pruned.fit(
        x, y, batch_size=16, epochs=4, verbose=0, callbacks=[kp.PruningCallback(), summaries]
    )
    assert history.history["sparsity/dense1"][-1] == pytest.approx(0.6, abs=0.01)
    steps = [step for step, _ in summaries.history["conv1"]]
    assert steps == sorted(steps) and len(steps) == 4
    records = [
        json.loads(line) for line in (tmp_path / "pruning_summaries.jsonl").read_text().splitlines()
    ]
    assert len(records) == 4 and set(records[-1]["layers"]) == {
        "conv1",
        "conv2",
        "dense1",
        "logits",
    }


def test_callback_without_wrappers_says_what_to_do(random_batch):
    # A warning, not an error: a training script shared by pruned and unpruned models keeps
    # working, as with tfmot's UpdatePruningStep.
    x, y = random_batch
    with pytest.warns(UserWarning, match="kp.prune"):
        compile_for_digits(small_cnn()).fit(
            x, y, epochs=1, verbose=0, callbacks=[kp.PruningCallback()]
        )


def test_summary_table(random_batch):
    pruned = kp.prune(
        small_cnn(), schedule=kp.ConstantSparsity(0.5, 0, frequency=1), filters="dense"
    )
    kp.pruning.update_masks(pruned, 0)
    text = kp.summary(pruned, print_fn=None)
    assert "dense1 *" in text and "50.0%" in text
    rows = {row.layer: row for row in weight_rows(pruned)}
    plain_text = kp.summary(kp.strip(pruned), print_fn=None)
    assert "dense1 " in plain_text and "50.0%" in plain_text
    assert rows["dense1"].sparsity == pytest.approx(0.5)
    assert rows["dense1"].pruned and not rows["conv1"].pruned


def test_summary_compares_two_models():
    model = small_cnn()
    small = kp.prune_channels(model, sparsity=0.5)
    text = str(kp.reporting.compare(model, small))
    assert "MACs" in text and "conv1" in text and "smaller" in text


@pytest.mark.parametrize("steps_per_execution", [1, 4, 5])
def test_steps_per_execution_keeps_every_scheduled_update(steps_per_execution):
    if steps_per_execution > 1 and keras.backend.backend() == "torch":
        pytest.skip("Keras runs one step per execution on torch")
    # With steps_per_execution=k Keras calls batch hooks once per k steps; an update due inside
    # those k steps must still happen (at the start of them), so the schedule is followed.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(112, 6)).astype("float32")
    y = x[:, :2]
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(32), keras.layers.Dense(2)])
    schedule = kp.PolynomialDecay(0.0, 0.75, begin_step=0, end_step=21, frequency=3)
    pruned = kp.prune(model, schedule=schedule)
    pruned.compile("sgd", "mse", steps_per_execution=steps_per_execution)
    history = pruned.fit(
        x, y, batch_size=16, epochs=4, verbose=0, callbacks=[kp.PruningCallback()]
    )  # 7 steps per epoch, 28 steps
    wrapper = kp.layers.find_wrappers(pruned)[0]
    assert int(keras.ops.convert_to_numpy(wrapper.pruning_step)) == 21
    assert history.history["sparsity"][-1] == pytest.approx(0.75, abs=1e-3)
    # After the first epoch (steps 0-6) the update due at step 6 has been applied (to within
    # the one-weight rounding of each of the two kernels).
    assert schedule.sparsity_at(6) - schedule.sparsity_at(3) > 0.1
    assert history.history["sparsity"][0] == pytest.approx(float(schedule.sparsity_at(6)), abs=0.01)


def test_step_windows_cover_every_step_once():
    from keras_prune.callbacks.pruning_callback import StepWindows

    windows = StepWindows(steps_per_call=3, steps_per_epoch=7)
    windows.start_epoch(0)
    assert list(windows.steps(0)) == [0, 1, 2]
    assert list(windows.steps(3)) == [3, 4, 5]
    assert list(windows.steps(6)) == [6]  # the epoch's short last call
    windows.start_epoch(7)
    assert list(windows.steps(0)) == [7, 8, 9]
    assert list(windows.steps(5)) == [10, 11, 12, 13]  # a longer call than expected: caught up
    unknown_length = StepWindows(steps_per_call=1)
    unknown_length.start_epoch(40)
    assert [list(unknown_length.steps(batch)) for batch in range(3)] == [[40], [41], [42]]
