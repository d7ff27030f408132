"""Lean masks: one byte per weight (uint8), exactly 0/1, across save/load and from old files."""

import os
import zipfile

import h5py
import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.layers.mask_storage import MASK_DTYPE, stored_mask

to_numpy = keras.ops.convert_to_numpy


def mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((12,)),
            keras.layers.Dense(16, activation="relu", name="hidden"),
            keras.layers.Dense(4, name="out"),
        ]
    )


def mask_values(model):
    return {
        (wrapper.name, index): to_numpy(mask)
        for wrapper in kp.layers.find_wrappers(model)
        for index, mask in enumerate(
            wrapper.masks + [m for m in wrapper.bias_masks if m is not None]
        )
    }


@pytest.mark.parametrize(
    "settings",
    [
        {"allocation": "auto"},
        {"allocation": "per_layer"},
        {"granularity": "channel"},
        {"mask": "learnable", "allocation": "per_layer"},
    ],
)
def test_masks_are_one_byte_and_exactly_zero_or_one(settings):
    pruned = kp.prune(mlp(), schedule=kp.ConstantSparsity(0.75, 0), **settings)
    kp.pruning.update_masks(pruned, step=0)
    for wrapper in kp.layers.find_wrappers(pruned):
        slots = wrapper.masks + [mask for mask in wrapper.bias_masks if mask is not None]
        for mask in slots:
            assert keras.backend.standardize_dtype(mask.dtype) == MASK_DTYPE == "uint8"
            assert not mask.trainable
            assert set(np.unique(to_numpy(mask))) <= {0, 1}
    if settings.get("mask") != "learnable":
        kept = sum(int(to_numpy(w.masks[0]).sum()) for w in kp.layers.find_wrappers(pruned))
        assert kept < 12 * 16 + 16 * 4
        for wrapper in kp.layers.find_wrappers(pruned):
            kernel = to_numpy(wrapper.layer.kernel)
            assert not kernel[to_numpy(wrapper.masks[0]) == 0].any()


def test_installed_masks_of_any_dtype_are_stored_as_zero_or_one():
    # Float, boolean and integer masks; a fraction keeps the weight (never rounds it away).
    for mask in [
        np.array([0.0, 1.0, 0.5]),
        np.array([False, True, True]),
        np.array([0, 3, 1], "int32"),
    ]:
        stored = to_numpy(stored_mask(mask))
        assert stored.dtype == np.uint8
        np.testing.assert_array_equal(stored, [0, 1, 1])


def test_masks_are_exact_across_keras_save_and_load(tmp_path):
    pruned = kp.prune_once(mlp(), 0.8)
    path = os.path.join(tmp_path, "pruned.keras")
    pruned.save(path)
    loaded = keras.saving.load_model(path)
    before, after = mask_values(pruned), mask_values(loaded)
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert after[key].dtype == np.uint8
        np.testing.assert_array_equal(after[key], value)
    x = np.random.default_rng(0).random((8, 12), dtype=np.float32)
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(pruned(x)))


def _uint8_datasets(weights):
    names = []

    def visit(name, node):
        if isinstance(node, h5py.Dataset) and node.dtype == np.uint8:
            names.append(name)

    weights.visititems(visit)
    return names


def _as_float32_masks(path, out_path):
    """A copy of the .keras file at `path` whose mask variables are float32, as files saved
    before masks were uint8 hold them."""
    converted = 0
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out_path, "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.endswith(".h5"):
                local = os.path.join(os.path.dirname(out_path), "weights.h5")
                with open(local, "wb") as handle:
                    handle.write(data)
                with h5py.File(local, "r+") as weights:
                    names = _uint8_datasets(weights)
                    for name in names:
                        values = weights[name][()].astype(np.float32)
                        del weights[name]
                        weights.create_dataset(name, data=values)
                    converted += len(names)
                with open(local, "rb") as handle:
                    data = handle.read()
            target.writestr(item, data)
    return converted


def test_files_saved_with_float32_masks_still_load_exactly(tmp_path):
    pruned = kp.prune_once(mlp(), 0.8, granularity="channel")
    path = os.path.join(tmp_path, "new.keras")
    pruned.save(path)
    old_path = os.path.join(tmp_path, "old.keras")
    assert _as_float32_masks(path, old_path) == len(mask_values(pruned)) >= 2
    loaded = keras.saving.load_model(old_path)
    before, after = mask_values(pruned), mask_values(loaded)
    for key, value in before.items():
        assert after[key].dtype == np.uint8
        np.testing.assert_array_equal(after[key], value)
    # It trains on with its masks held.
    loaded.compile("sgd", "mse")
    x = np.random.default_rng(0).random((16, 12), dtype=np.float32)
    y = np.random.default_rng(1).random((16, 4), dtype=np.float32)
    loaded.fit(x, y, epochs=1, verbose=0, callbacks=[kp.PruningCallback()])
    for key, value in before.items():
        np.testing.assert_array_equal(mask_values(loaded)[key], value)


def test_strip_of_uint8_masks_matches_the_pruned_model():
    pruned = kp.prune_once(mlp(), 0.7, allocation="per_layer")
    plain = kp.strip(pruned)
    x = np.random.default_rng(0).random((8, 12), dtype=np.float32)
    np.testing.assert_allclose(to_numpy(plain(x)), to_numpy(pruned(x)), rtol=1e-6, atol=1e-7)
    kernel = to_numpy(plain.get_layer("hidden").kernel)
    assert np.count_nonzero(kernel) == kp.masks.keep_count(12 * 16, 0.7)


@pytest.mark.parametrize("min_density", [0.0, 0.15])
def test_global_masks_of_nonnegative_scores_are_the_same_with_the_promise(min_density):
    # Radix path (over 65,536 scores), many ties (rounded magnitudes, zeros), and floors that
    # force entries of the small tensor in when min_density is high.
    rng = np.random.default_rng(0)
    scores = [
        np.round(np.abs(rng.normal(size=(400, 200))), 2).astype("float32"),
        np.zeros((50,), "float32"),
        np.round(np.abs(rng.normal(size=(40, 30))), 1).astype("float32"),
    ]
    general = kp.allocation.global_masks(scores, 0.8, min_density)
    promised = kp.allocation.global_masks(scores, 0.8, min_density, dtype="uint8", nonnegative=True)
    for expected, found in zip(general, promised, strict=True):
        found = to_numpy(found)
        assert found.dtype == np.uint8
        np.testing.assert_array_equal(found, to_numpy(expected))
    assert sum(int(to_numpy(m).sum()) for m in promised) == kp.masks.keep_count(
        sum(s.size for s in scores), 0.8
    )
