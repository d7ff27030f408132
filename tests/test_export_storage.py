"""to_tflite(objective=...): sparse-encoded or dense storage, chosen on LiteRT with XNNPACK."""

import json

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune import export
from keras_prune.export import storage

GRANULARITIES = {
    "unstructured": ("unstructured", 0.8),
    "1x4": (kp.granularity.Block((1, 4)), 0.8),
    "2:4": (kp.granularity.NofM(2, 4), 0.5),
    "channel": (kp.granularity.Channel(), 0.5),
}


def small_model(seed=0):
    """A convolution (for channel pruning) feeding fully-connected layers (sparse kernels)."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def pruned(granularity="unstructured"):
    model = small_model()
    chosen, sparsity = GRANULARITIES[granularity]
    return kp.strip(kp.prune_once(model, sparsity, granularity=chosen))


def assert_matches_keras(result, model, data, int8):
    """The file was checked on LiteRT with and without XNNPACK, and runs like Keras on both."""
    assert [check.runtime for check in result.checks] == ["litert+xnnpack", "litert-builtin"]
    assert result.passed, str(result)
    expected = keras.ops.convert_to_numpy(model(data))
    tolerance = 0.1 * float(np.ptp(expected)) if int8 else 1e-4
    for xnnpack in (True, False):
        outputs = export.predict(result.path, data, xnnpack=xnnpack)
        assert np.max(np.abs(outputs - expected)) <= tolerance


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(0).standard_normal((48, 6, 6, 2)).astype("float32")


def test_int8_unstructured_runs_on_xnnpack_by_default(tmp_path, data):
    model = pruned()
    result = export.to_tflite(
        model, tmp_path / "m.tflite", target="mobile-int8", calibration_data=data, latency_runs=5
    )
    # int8 FULLY_CONNECTED reads only 1x16 blocks sparse: unstructured weights would need
    # DENSIFY (which XNNPACK refuses in int8), so every weight is stored dense.
    assert result.objective == "latency" and result.storage == "dense"
    assert not result.sparse_tensors
    assert result.tensor_storage and all(
        t["storage"] == "dense" and "DENSIFY" in t["reason"] for t in result.tensor_storage
    )
    assert [check.runtime for check in result.checks] == ["litert+xnnpack", "litert-builtin"]
    assert result.passed
    assert result.sparse_latency_us is None and result.dense_latency_us > 0
    assert result.latency_vs_dense == 1.0
    assert any("no sparse-encoded weight is read sparse" in note for note in result.notes)
    assert_matches_keras(result, model, data, int8=True)


def test_weights_that_all_need_densify_keep_the_smaller_sparse_file_when_not_slower(tmp_path, data):
    # Float unstructured weights run at dense speed behind DENSIFY: the latency objective keeps
    # the sparse file (the tie goes to the smaller one). latency_runs=0 keeps it untimed when
    # XNNPACK runs it, so the test does not depend on timing.
    model = pruned()
    result = export.to_tflite(
        model, tmp_path / "m.tflite", target="mobile", calibration_data=data, latency_runs=0
    )
    assert result.storage == "sparse" and result.sparse_tensors
    assert all(t["storage"] == "sparse" and "DENSIFY" in t["reason"] for t in result.tensor_storage)
    assert any("no sparse-encoded weight is read sparse" in note for note in result.notes)
    assert_matches_keras(result, model, data, int8=False)


def test_size_keeps_the_sparse_file_and_says_xnnpack_refuses_it(tmp_path, data):
    result = export.to_tflite(
        pruned(),
        tmp_path / "m.tflite",
        target="mobile-int8",
        calibration_data=data,
        objective="size",
        latency_runs=0,
    )
    assert result.storage == "sparse" and result.sparse_tensors
    assert result.latency_vs_dense is None
    assert [check.runtime for check in result.checks] == ["litert-builtin"]
    assert any(note.startswith("XNNPACK refused this file") for note in result.notes)


def test_without_timing_the_sparse_file_is_kept_where_xnnpack_runs_it(tmp_path, data):
    model = pruned("1x4")
    result = export.to_tflite(model, tmp_path / "m.tflite", latency_runs=0)
    assert result.storage in ("sparse", "mixed") and result.sparse_tensors
    assert result.latency_vs_dense is None and result.dense_latency_us is None
    assert any("latency_runs=0: not timed" in note for note in result.notes)
    assert_matches_keras(result, model, data, int8=False)


@pytest.mark.parametrize("objective", ["speed", None, "Latency"])
def test_a_bad_objective_names_the_argument_and_the_choices(tmp_path, objective):
    with pytest.raises(ValueError, match=r"`objective`.*'latency', 'size'.*objective="):
        export.to_tflite(small_model(), tmp_path / "m.tflite", objective=objective)
    assert not (tmp_path / "m.tflite").exists()


def test_the_result_reports_the_timed_choice(tmp_path, data):
    result = export.to_tflite(
        pruned("1x4"), tmp_path / "m.tflite", calibration_data=data, latency_runs=5
    )
    assert result.storage in ("sparse", "dense")
    assert result.sparse_latency_us > 0 and result.dense_latency_us > 0
    chosen = result.sparse_latency_us if result.storage == "sparse" else result.dense_latency_us
    assert result.latency_vs_dense == pytest.approx(chosen / result.dense_latency_us)
    ratio = result.sparse_latency_us / result.dense_latency_us
    assert (result.storage == "sparse") == (ratio <= 1 + storage.NOISE_MARGIN)
    assert bool(result.sparse_tensors) == (result.storage == "sparse")
    stored = json.loads(json.dumps(result.to_dict()))
    for field in ("objective", "storage", "sparse_latency_us", "dense_latency_us"):
        assert stored[field] == getattr(result, field)
    assert stored["latency_vs_dense"] == pytest.approx(result.latency_vs_dense)
    assert f"{result.storage} (objective='latency'): {result.latency_vs_dense:.2f}x" in str(result)


def test_a_file_whose_weights_all_need_densify_is_timed_as_a_tie(tmp_path, data):
    # Unstructured float: every encoded weight sits behind DENSIFY, so the two files run the
    # same kernels once loaded; only a ratio beyond the A/A bound keeps the dense file.
    result = export.to_tflite(
        pruned("unstructured"), tmp_path / "m.tflite", calibration_data=data, latency_runs=5
    )
    assert result.sparse_latency_us > 0 and result.dense_latency_us > 0
    ratio = result.sparse_latency_us / result.dense_latency_us
    assert (result.storage == "sparse") == (ratio <= 1 + storage.SAME_KERNELS_MARGIN)
    assert any("each needs DENSIFY" in note for note in result.notes), result.notes
    if result.storage == "sparse":
        assert any("10% tie margin" in note for note in result.notes), result.notes


def test_targets_without_sparse_encoding_report_dense_storage(tmp_path, data):
    result = export.to_tflite(
        small_model(), tmp_path / "m.tflite", calibration_data=data, latency_runs=0
    )
    assert result.storage == "dense" and result.latency_vs_dense is None


# Unstructured is covered above (int8 by default, float without timing); 2:4 int8 is the fast
# representative of the files XNNPACK refuses sparse.
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("granularity", "target"),
    [
        pytest.param("1x4", "mobile", marks=SLOW),
        pytest.param("1x4", "mobile-int8", marks=SLOW),
        ("2:4", "mobile-int8"),
        pytest.param("2:4", "mobile", marks=SLOW),
        pytest.param("channel", "mobile", marks=SLOW),
        pytest.param("channel", "mobile-int8", marks=SLOW),
    ],
)
def test_every_granularity_matches_keras_with_and_without_xnnpack(
    tmp_path, data, granularity, target
):
    model = pruned(granularity)
    result = export.to_tflite(
        model, tmp_path / "m.tflite", target=target, calibration_data=data, latency_runs=0
    )
    assert_matches_keras(result, model, data, int8=target == "mobile-int8")


def mixed_model(seed=0):
    """A convolution pruned unstructured (its op has no sparse kernel: DENSIFY) and
    fully-connected layers pruned in 1x4 blocks (float FULLY_CONNECTED reads them sparse)."""
    model = kp.strip(
        kp.prune_once(small_model(seed), 0.8, granularity=kp.granularity.Block((1, 4)))
    )
    conv = model.layers[0]
    kernel, bias = conv.get_weights()
    kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.8)] = 0.0
    conv.set_weights([kernel, bias])
    return model


def test_per_tensor_keeps_fully_connected_sparse_and_stores_the_conv_dense(tmp_path, data):
    model = mixed_model()
    result = export.to_tflite(model, tmp_path / "m.tflite", latency_runs=0)
    by_op = {tensor["op"]: tensor for tensor in result.tensor_storage}
    assert by_op["CONV_2D"]["storage"] == "dense" and "DENSIFY" in by_op["CONV_2D"]["reason"]
    assert by_op["FULLY_CONNECTED"]["storage"] == "sparse"
    assert result.storage == "mixed"
    assert "DENSIFY" not in result.ops
    info = export.read_model(result.path)
    sparse = {t.name for t in info.sparse_tensors}
    assert sparse == {t["name"] for t in result.tensor_storage if t["storage"] == "sparse"}
    assert all(t.encoding == "sparse CSR, block 1x4" for t in info.sparse_tensors)
    assert_matches_keras(result, model, data, int8=False)


def test_size_keeps_every_tensor_sparse_and_is_timed_against_dense(tmp_path, data):
    model = mixed_model()
    result = export.to_tflite(model, tmp_path / "m.tflite", objective="size", latency_runs=3)
    assert result.storage == "sparse"
    assert {t["storage"] for t in result.tensor_storage} == {"sparse"}
    assert len(result.sparse_tensors) == len(result.tensor_storage) >= 3
    assert "DENSIFY" in result.ops
    assert result.latency_vs_dense == pytest.approx(
        result.sparse_latency_us / result.dense_latency_us
    )
    assert_matches_keras(result, model, data, int8=False)


def test_int8_unstructured_per_tensor_runs_on_xnnpack(tmp_path, data):
    model = mixed_model()
    result = export.to_tflite(
        model, tmp_path / "m.tflite", target="mobile-int8", calibration_data=data, latency_runs=0
    )
    # int8 FULLY_CONNECTED reads only 1x16 blocks sparse: every weight gets DENSIFY, so all
    # are stored dense and XNNPACK runs the file.
    assert result.storage == "dense" and not result.sparse_tensors
    assert {t["storage"] for t in result.tensor_storage} == {"dense"}
    assert_matches_keras(result, model, data, int8=True)
