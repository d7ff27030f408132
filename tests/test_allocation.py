"""Allocation of sparsity across layers: exact global targets, floors, thresholds, ERK."""

import keras
import numpy as np
import pytest
from conftest import compile_for_digits, small_cnn

import keras_prune as kp
from keras_prune.core import allocation


def to_numpy(value):
    return keras.ops.convert_to_numpy(value)


def kept_per_wrapper(model):
    return {w.name: int(to_numpy(w.masks[0]).sum()) for w in kp.layers.find_wrappers(model)}


def test_global_masks_hit_target_exactly_and_match_numpy():
    rng = np.random.default_rng(0)
    scores = [rng.random((5, 7)).astype("float32"), rng.random(13).astype("float32") * 3]
    result = allocation.global_masks(scores, 0.6)
    total = 35 + 13
    kept = kp.masks.keep_count(total, 0.6)
    assert sum(int(to_numpy(m).sum()) for m in result) == kept
    flat = np.concatenate([s.ravel() for s in scores])
    threshold = np.sort(flat)[::-1][kept - 1]
    expected = [s >= threshold for s in scores]
    for mask, reference in zip(result, expected, strict=True):
        np.testing.assert_array_equal(to_numpy(mask).astype(bool), reference)


def test_global_masks_respect_floors():
    scores = [np.full((10,), 100.0, "float32"), np.linspace(0, 1, 50).astype("float32")]
    result = allocation.global_masks(scores, 0.8, min_density=0.1)
    assert int(to_numpy(result[1]).sum()) == 5  # ceil(0.1 * 50) best of the small-scored tensor
    assert sum(int(to_numpy(m).sum()) for m in result) == kp.masks.keep_count(60, 0.8)
    np.testing.assert_array_equal(to_numpy(result[1])[-5:], np.ones(5))
    # Without a floor the small-scored tensor keeps only its best weight.
    bare = allocation.global_masks(scores, 0.85, min_density=0.0)
    assert int(to_numpy(bare[1]).sum()) == 1


def test_global_floors_that_exceed_the_target_raise():
    scores = [np.ones(10, "float32"), np.ones(10, "float32")]
    with pytest.raises(ValueError, match="Lower `min_density`"):
        allocation.global_masks(scores, 0.9, min_density=0.5)


def test_global_allocation_through_the_callback_is_exact(random_batch):
    x, y = random_batch
    schedule = kp.ConstantSparsity(0.95, begin_step=0, frequency=1)
    model = compile_for_digits(kp.prune(small_cnn(), schedule=schedule))
    callback = kp.PruningCallback(allocation=allocation.GlobalAllocation(min_density=0.02))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    wrappers = kp.layers.find_wrappers(model)
    sizes = {w.name: int(np.prod(w.masks[0].shape)) for w in wrappers}
    kept = kept_per_wrapper(model)
    assert sum(kept.values()) == kp.masks.keep_count(sum(sizes.values()), 0.95)
    for name, size in sizes.items():
        assert kept[name] >= np.ceil(0.02 * size)
    # The large dense layer carries more of the sparsity than the small first conv.
    assert kept["conv1"] / sizes["conv1"] > kept["dense1"] / sizes["dense1"]
    # Masked weights are exactly zero in the trained layers.
    for wrapper in wrappers:
        weight = to_numpy(wrapper.targets[0].variable)
        assert np.all(weight[to_numpy(wrapper.masks[0]) == 0] == 0)


def test_global_allocation_refuses_structured_and_learnable():
    model = kp.prune(small_cnn(), granularity="channel")
    with pytest.raises(ValueError, match="granularity='unstructured'"):
        kp.engine.MaskEngine(model, kp.layers.find_wrappers(model)).prune_to(
            0.5, allocation=allocation.GlobalAllocation()
        )
    model = kp.prune(small_cnn(), mask="learnable")
    with pytest.raises(ValueError, match="learnable mask"):
        kp.engine.MaskEngine(model, kp.layers.find_wrappers(model)).prune_to(
            0.5, allocation=allocation.GlobalAllocation()
        )


def test_per_layer_overrides_cap_and_callables():
    model = kp.prune(small_cnn())
    overrides = allocation.PerLayerAllocation(
        {"conv1": 0.25, "logits": lambda name, sparsity: sparsity / 2}
    )
    kp.engine.MaskEngine(model, kp.layers.find_wrappers(model)).prune_to(0.8, allocation=overrides)
    kept = kept_per_wrapper(model)
    assert kept["conv1"] == kp.masks.keep_count(72, 0.25)
    assert kept["logits"] == kp.masks.keep_count(320, 0.4)
    assert kept["dense1"] == kp.masks.keep_count(576 * 32, 0.8)
    assert overrides.sparsity_for("conv1", 0.1) == 0.1  # a cap, not a floor
    with pytest.raises(ValueError, match=r"overrides\['conv1'\]"):
        allocation.PerLayerAllocation({"conv1": 1.5})


def test_threshold_allocation_unstructured_and_channel():
    model = kp.prune(small_cnn())
    wrappers = kp.layers.find_wrappers(model)
    kp.engine.MaskEngine(model, wrappers).prune_to(
        0.0, allocation=allocation.ThresholdAllocation(0.1)
    )
    for wrapper in wrappers:
        weight = to_numpy(wrapper.layer.kernel)
        mask = to_numpy(wrapper.masks[0])
        assert np.all(mask[weight != 0] == 1)
    dense = small_cnn().get_layer("dense1")
    reference = np.linalg.norm(to_numpy(dense.kernel), axis=0) >= 0.9
    model = kp.prune(small_cnn(), granularity="channel", filters="dense1")
    wrapper = kp.layers.find_wrappers(model)[0]
    kp.engine.MaskEngine(model, [wrapper]).prune_to(
        0.0, allocation=allocation.ThresholdAllocation(0.9)
    )
    np.testing.assert_array_equal(to_numpy(wrapper.bias_masks[0]).astype(bool), reference)
    np.testing.assert_array_equal(to_numpy(wrapper.layer.bias)[~reference], 0)


def test_threshold_never_empties_a_tensor():
    mask = to_numpy(allocation.threshold_mask(np.array([0.1, 0.3, 0.2], "float32"), 5.0))
    np.testing.assert_array_equal(mask, [0, 1, 0])


def test_percentile_allocation_matches_numpy():
    model = kp.prune(small_cnn())
    wrappers = kp.layers.find_wrappers(model)
    pooled = np.concatenate([np.abs(to_numpy(w.layer.kernel)).ravel() for w in wrappers])
    threshold = np.percentile(pooled, 70, method="lower")
    kp.engine.MaskEngine(model, wrappers).prune_to(
        0.0, allocation=allocation.PercentileAllocation(70)
    )
    for wrapper in wrappers:
        np.testing.assert_array_equal(
            to_numpy(wrapper.masks[0]).astype(bool),
            np.abs(to_numpy(wrapper.layer.kernel)) >= threshold,
        )


def test_erk_sparsities_keep_the_total_and_favour_small_layers():
    shapes = [(3, 3, 1, 8), (3, 3, 8, 16), (576, 32), (32, 10)]
    sizes = np.array([np.prod(s) for s in shapes])
    sparsities = np.array(allocation.erk_sparsities(shapes, 0.9))
    np.testing.assert_allclose(np.sum(sizes * (1 - sparsities)), 0.1 * sizes.sum(), rtol=1e-9)
    ratios = np.array([sum(s) / np.prod(s) for s in shapes])
    # Density is proportional to (sum of dims / number of weights): denser where that is large.
    np.testing.assert_array_equal(np.argsort(sparsities), np.argsort(-ratios))
    # Overfull layers become dense and the rest is rescaled.
    tiny = allocation.erk_sparsities([(2, 2), (1000, 1000)], 0.5)
    assert tiny[0] == 0.0
    np.testing.assert_allclose(4 + 1e6 * (1 - tiny[1]), 0.5 * (1e6 + 4))
    np.testing.assert_allclose(allocation.erk_sparsities(shapes, 0.9, power_scale=0), [0.9] * 4)


def test_erk_allocation_installs_erk_sparsities():
    model = kp.prune(small_cnn())
    wrappers = kp.layers.find_wrappers(model)
    kp.engine.MaskEngine(model, wrappers).prune_to(0.9, allocation=allocation.ERKAllocation())
    shapes = [tuple(w.targets[0].variable.shape) for w in wrappers]
    for wrapper, sparsity in zip(wrappers, allocation.erk_sparsities(shapes, 0.9), strict=True):
        size = int(np.prod(wrapper.masks[0].shape))
        assert int(to_numpy(wrapper.masks[0]).sum()) == kp.masks.keep_count(size, sparsity)


@pytest.mark.parametrize(
    "instance",
    [
        allocation.PerLayerAllocation(),
        allocation.PerLayerAllocation({"conv": 0.5}),
        allocation.GlobalAllocation(0.02),
        allocation.ThresholdAllocation(0.01),
        allocation.PercentileAllocation(50),
        allocation.ERKAllocation(0.5),
    ],
)
def test_allocations_round_trip_through_config(instance):
    config = keras.saving.serialize_keras_object(instance)
    assert keras.saving.deserialize_keras_object(config) == instance
    callback = kp.PruningCallback(allocation=instance)
    assert kp.PruningCallback(**callback.get_config()).allocation == instance


def test_bad_allocation_arguments():
    with pytest.raises(ValueError, match=r"Unknown allocation 'best'.*'global'"):
        allocation.get("best")
    with pytest.raises(ValueError, match="min_density"):
        allocation.GlobalAllocation(1.0)
    with pytest.raises(ValueError, match="threshold"):
        allocation.ThresholdAllocation(-1)
    with pytest.raises(ValueError, match="percentile"):
        allocation.PercentileAllocation(100)
    assert isinstance(allocation.get("global"), allocation.GlobalAllocation)


def test_an_unknown_allocation_name_lists_auto_where_it_is_taken():
    with pytest.raises(ValueError, match=r"Unknown allocation 'glbal'.*allocation='auto'"):
        kp.prune(small_cnn(), allocation="glbal")
    with pytest.raises(ValueError, match=r"Unknown allocation 'glbal'.*allocation='auto'"):
        kp.prune_once(small_cnn(), 0.5, allocation="glbal")
    # In the callback "auto" follows what the model declares, as None does.
    assert kp.PruningCallback(allocation="auto").allocation is None


def test_update_masks_accepts_an_allocation():
    schedule = kp.ConstantSparsity(0.9, begin_step=0, frequency=1)
    model = kp.prune(small_cnn(), schedule=schedule)
    updated = kp.pruning.update_masks(model, 0, allocation="global")
    assert [w.name for w in updated] == ["conv1", "conv2", "dense1", "logits"]
    total = 72 + 1152 + 576 * 32 + 320
    assert sum(kept_per_wrapper(model).values()) == kp.masks.keep_count(total, 0.9)
    assert kp.pruning.update_masks(model, 0, allocation=allocation.PerLayerAllocation()) == updated
    assert kept_per_wrapper(model)["conv1"] == kp.masks.keep_count(72, 0.9)


# -- the allocation kp.prune declares ------------------------------------------------------------


def test_prune_declares_a_global_ranking_by_default_and_the_callback_follows_it(random_batch):
    x, y = random_batch
    schedule = kp.ConstantSparsity(0.9, begin_step=0, frequency=1)
    model = compile_for_digits(kp.prune(small_cnn(), schedule=schedule))
    wrappers = kp.layers.find_wrappers(model)
    assert all(isinstance(w.allocation, allocation.GlobalAllocation) for w in wrappers)
    default = kp.pruning.default_allocation("unstructured", "binary")
    assert default.get_config() == allocation.GlobalAllocation().get_config()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[kp.PruningCallback()])
    sizes = {w.name: int(np.prod(w.masks[0].shape)) for w in wrappers}
    kept = kept_per_wrapper(model)
    # One ranking: exactly the target overall, unevenly per layer (what the docs describe).
    assert sum(kept.values()) == kp.masks.keep_count(sum(sizes.values()), 0.9)
    assert len({round(kept[n] / sizes[n], 3) for n in sizes}) > 1


def test_per_layer_where_a_global_ranking_does_not_apply_or_was_not_asked_for(random_batch):
    x, y = random_batch
    assert kp.pruning.default_allocation("channel", "binary") is None
    assert kp.pruning.default_allocation("2:4", "binary") is None
    assert kp.pruning.default_allocation("unstructured", "learnable") is None
    schedule = kp.ConstantSparsity(0.75, begin_step=0, frequency=1)
    for model in (
        kp.prune(small_cnn(), schedule=schedule, allocation="per_layer"),
        kp.tfmot.prune_low_magnitude(small_cnn(), pruning_schedule=schedule),
        kp.prune(small_cnn(), schedule=schedule, mask="learnable"),
    ):
        assert all(w.allocation is None for w in kp.layers.find_wrappers(model))
    model = compile_for_digits(kp.prune(small_cnn(), schedule=schedule, allocation="per_layer"))
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[kp.PruningCallback()])
    for wrapper in kp.layers.find_wrappers(model):
        size = int(np.prod(wrapper.masks[0].shape))
        assert kept_per_wrapper(model)[wrapper.name] == kp.masks.keep_count(size, 0.75)


def test_the_callbacks_allocation_overrides_the_declared_one(random_batch):
    x, y = random_batch
    schedule = kp.ConstantSparsity(0.75, begin_step=0, frequency=1)
    model = compile_for_digits(kp.prune(small_cnn(), schedule=schedule))
    callback = kp.PruningCallback(allocation="per_layer")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[callback])
    for wrapper in kp.layers.find_wrappers(model):
        size = int(np.prod(wrapper.masks[0].shape))
        assert kept_per_wrapper(model)[wrapper.name] == kp.masks.keep_count(size, 0.75)


def test_declared_allocation_survives_save_and_load(tmp_path):
    model = kp.prune(small_cnn(), allocation=allocation.GlobalAllocation(min_density=0.05))
    path = str(tmp_path / "pruned.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    for wrapper in kp.layers.find_wrappers(loaded):
        assert isinstance(wrapper.allocation, allocation.GlobalAllocation)
        assert wrapper.allocation.min_density == 0.05


def test_learnable_masks_refuse_a_shared_ranking_naming_the_fix():
    with pytest.raises(ValueError, match="allocation=None"):
        kp.prune(small_cnn(), mask="learnable", allocation="global")


def test_per_layer_unstructured_masks_come_as_the_wrappers_store_them():
    # uint8 like GlobalAllocation's: no float32 copy converted again when installed. The
    # keeping is exactly top-k, ties to earlier positions, for signed scores too.
    rng = np.random.default_rng(3)
    weight = rng.normal(size=(40, 30)).astype("float32")
    for nonnegative, scores in ((True, np.abs(weight)), (False, np.round(weight, 1))):
        layer = allocation.LayerScores(
            "dense", kp.granularity.Unstructured(), [None], [scores], nonnegative=nonnegative
        )
        ((mask, bias_mask),) = allocation.PerLayerAllocation().allocate([layer], [0.7])[0]
        mask = keras.ops.convert_to_numpy(mask)
        assert mask.dtype == np.uint8 and bias_mask is None
        expected = np.zeros(scores.size, np.uint8)
        expected[np.argsort(-scores.ravel(), kind="stable")[:360]] = 1
        np.testing.assert_array_equal(mask.ravel(), expected)
    default = kp.masks.top_k_mask(np.array([0.1, 0.5, 0.3]), 1)
    assert keras.backend.standardize_dtype(default.dtype) == "float32"
    assert keras.ops.convert_to_numpy(
        kp.masks.top_k_mask(np.array([0.1, 0.5]), 1, dtype="uint8")
    ).tolist() == [0, 1]
