"""Exported widths and stages run on LiteRT with Keras's outputs; the runtime helpers."""

import json

import keras
import numpy as np
import pytest

import keras_prune as kp
from keras_prune.dynamic import runtime
from keras_prune.dynamic.threshold import exit_indices

layers = keras.layers


def numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def tiny_cnn(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.ReLU(name="block1")(layers.BatchNormalization()(x))
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = layers.Flatten()(x)
    return keras.Model(inputs, layers.Dense(10, name="logits")(x), name="tiny")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((128, 8, 8, 1)).astype("float32"), rng.integers(0, 10, 128)


@pytest.fixture(scope="module")
def width_export(tmp_path_factory, data):
    x, y = data
    slim = kp.dynamic.SlimmableModel(tiny_cnn(), widths=[0.5, 1.0])
    slim.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    slim.fit(x, y, epochs=1, verbose=0)
    directory = tmp_path_factory.mktemp("widths")
    manifest = kp.dynamic.export_widths(slim, directory, calibration_data=x, latency_runs=5)
    return slim, manifest


def test_every_width_file_matches_its_keras_model(width_export, data):
    slim, manifest = width_export
    x, _ = data
    assert [entry["file"] for entry in manifest["widths"]] == [
        "tiny_w050.tflite",
        "tiny_w100.tflite",
    ]
    assert manifest["widths"][0]["params"] < manifest["widths"][1]["params"]
    picker = kp.dynamic.WidthPicker(manifest["manifest_path"])
    for entry in manifest["widths"]:
        assert all(check["passed"] for check in entry["checks"])
        expected = numpy(slim.at_width(entry["width"], calibration_data=x)(x[:8]))
        interpreter = picker.interpreter(entry["width"])
        detail_in = interpreter.get_input_details()[0]
        detail_out = interpreter.get_output_details()[0]
        for i in range(8):
            interpreter.set_tensor(detail_in["index"], x[i : i + 1])
            interpreter.invoke()
            got = interpreter.get_tensor(detail_out["index"])
            np.testing.assert_allclose(got[0], expected[i], atol=1e-4)


def test_width_picker_chooses_the_widest_width_within_budget(width_export):
    _, manifest = width_export
    picker = kp.dynamic.WidthPicker(manifest["manifest_path"], latencies_us={0.5: 10.0, 1.0: 25.0})
    assert picker.pick(100) == 1.0
    assert picker.pick(25) == 1.0
    assert picker.pick(12) == 0.5
    with pytest.raises(ValueError, match=r"budget_us.*>= 10.0.*narrowest width, 0.5"):
        picker.pick(5)
    with pytest.raises(ValueError, match=r"trained widths \[0.5, 1.0\].*width=0.75"):
        picker.path(0.75)
    measured = kp.dynamic.WidthPicker(manifest["manifest_path"])
    assert set(measured.latencies_us) == {0.5, 1.0}
    assert measured.pick(1e9) == 1.0


def test_manifest_of_the_wrong_kind_is_refused(width_export, tmp_path):
    _, manifest = width_export
    with pytest.raises(ValueError, match="'keras_prune.early_exit' manifest"):
        kp.dynamic.StagedRunner(manifest["manifest_path"], threshold=0.5)
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(ValueError, match="Cannot read the manifest"):
        kp.dynamic.WidthPicker(str(path))


def test_staged_runner_matches_keras_exit_by_exit(tmp_path, data):
    x, y = data
    model = kp.dynamic.EarlyExitModel(tiny_cnn(), exits=["block1"])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=1, verbose=0)
    probabilities = model.exit_predictions(x[:32])
    threshold = float(np.median(np.max(probabilities[0], 1)))  # about half exit early
    manifest = kp.dynamic.export_stages(
        model, tmp_path, calibration_data=x, threshold=threshold, latency_runs=0
    )
    assert [entry["file"] for entry in manifest["stages"]] == [
        "tiny_stage0.tflite",
        "tiny_stage1.tflite",
    ]
    assert all(c["passed"] for entry in manifest["stages"] for c in entry["checks"])
    with open(manifest["manifest_path"], encoding="utf-8") as handle:
        assert json.load(handle)["threshold"] == threshold
    runner = kp.dynamic.StagedRunner(manifest["manifest_path"])
    predicted, stages = runner.predict(x[:32])
    expected_stages = exit_indices(probabilities, threshold)
    # Confidences right at the threshold may fall either side after float rounding.
    confidence = np.max(probabilities[0], 1)
    clear = np.abs(confidence - threshold) > 1e-5
    np.testing.assert_array_equal(stages[clear], expected_stages[clear])
    assert 0 < np.mean(stages == 0) < 1
    expected = np.stack([probabilities[s][i] for i, s in enumerate(stages)])
    np.testing.assert_allclose(predicted, expected, atol=1e-4)
    never = kp.dynamic.StagedRunner(manifest["manifest_path"], threshold=1.0, xnnpack=False)
    assert set(never.predict(x[:4])[1]) <= {0, 1}
    for bad in (-0.5, 1.01):
        with pytest.raises(ValueError, match=r"Expected `threshold` in \[0.0, 1.0\]"):
            kp.dynamic.StagedRunner(manifest["manifest_path"], threshold=bad)
    with pytest.raises(ValueError, match="threshold"):
        kp.dynamic.export_stages(model, tmp_path, calibration_data=x, threshold=2.0)


def test_signature_runner_quantizes_int8_ports():
    port = runtime.Port({"index": 0, "shape": [1, 2], "dtype": np.int8, "quantization": (0.5, -3)})
    q = port.quantize(np.array([1.0, -100.0]))
    assert q.dtype == np.int8 and q.tolist() == [-1, -128]
    np.testing.assert_allclose(port.dequantize(q), [1.0, -62.5])
