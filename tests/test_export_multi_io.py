"""to_tflite with several inputs and outputs: lists, dicts, int token ids, keras-hub backbones."""

import json

import keras
import numpy as np
import pytest

from keras_prune import export
from keras_prune.export.flatbuffer import read_model
from keras_prune.export.signature import Signature


def two_in_two_out():
    keras.utils.set_random_seed(0)
    image = keras.Input((6, 6, 1), name="image")
    extra = keras.Input((3,), name="extra")
    features = keras.layers.Flatten()(keras.layers.Conv2D(2, 3, activation="relu")(image))
    joined = keras.layers.Concatenate()([features, extra])
    scores = keras.layers.Dense(4, activation="softmax", name="scores")(joined)
    value = keras.layers.Dense(1, name="value")(joined)
    return keras.Model([image, extra], [scores, value], name="two_heads")


def dict_input_with_token_ids():
    keras.utils.set_random_seed(1)
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    weights = keras.Input((5,), name="weights")
    embedded = keras.layers.Embedding(7, 4)(tokens)
    pooled = keras.layers.Flatten()(embedded * keras.ops.expand_dims(weights, -1))
    out = keras.layers.Dense(3, name="logits")(pooled)
    return keras.Model({"tokens": tokens, "weights": weights}, out, name="dict_in")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return [rng.random((24, 6, 6, 1), dtype=np.float32), rng.random((24, 3), dtype=np.float32)]


def test_two_inputs_two_outputs_on_litert_matched_by_name(tmp_path, data):
    model = two_in_two_out()
    result = export.to_tflite(model, tmp_path / "m.tflite", verification_data=data, latency_runs=1)
    assert result.passed
    assert [port["name"] for port in result.inputs] == ["image", "extra"]
    assert [port["name"] for port in result.outputs] == ["scores", "value"]
    for check in result.checks:
        assert sorted(check.outputs) == ["scores", "value"] and check.max_abs_error <= 1e-4
    info = read_model(result.path)
    assert sorted(info.signature_inputs) == ["extra", "image"]
    # Outputs come back by name whatever order the converter gave the tensors.
    outputs = export.predict(result.path, {"image": data[0][:5], "extra": data[1][:5]})
    expected = model([data[0][:5], data[1][:5]])
    np.testing.assert_allclose(outputs["scores"], expected[0], atol=1e-5)
    np.testing.assert_allclose(outputs["value"], expected[1], atol=1e-5)
    # A dict keyed by the Keras input names is the same data as the list.
    as_dict = {"extra": data[1], "image": data[0]}
    again = export.to_tflite(
        model, tmp_path / "d.tflite", verification_data=as_dict, latency_runs=0
    )
    assert again.passed and again.latency_us == {}


@pytest.mark.parametrize("target", ["mobile-int8", "mcu"])
def test_two_inputs_calibrate_int8_and_run_on_tflm(tmp_path, data, target):
    result = export.to_tflite(
        two_in_two_out(), tmp_path / "m.tflite", target=target, calibration_data=data,
        latency_runs=0,
    )  # fmt: skip
    assert result.passed, str(result)
    assert all(port["quantization"]["scale"][0] > 0 for port in result.inputs)
    runtimes = [check.runtime for check in result.checks]
    assert runtimes[-1] == ("tflm" if target == "mcu" else "litert-builtin")


def test_dict_inputs_with_token_ids_get_generated_ids_in_range(tmp_path):
    model = dict_input_with_token_ids()
    signature = Signature(model)
    assert [(p.key, p.dtype) for p in signature.inputs] == [
        ("tokens", "int32"),
        ("weights", "float32"),
    ]
    generated = signature.generate(64)
    assert generated[0].dtype == np.int32 and set(np.unique(generated[0])) <= {0, 1}
    result = export.to_tflite(model, tmp_path / "m.tflite", latency_runs=2)
    assert result.passed and result.latency_us["builtin"] > 0
    assert [port["dtype"] for port in result.inputs] == ["int32", "float32"]
    tokens = np.arange(10).reshape(2, 5) % 7
    weights = np.ones((2, 5), dtype="float32")
    outputs = export.predict(result.path, {"tokens": tokens, "weights": weights})
    expected = model({"tokens": tokens, "weights": weights})
    np.testing.assert_allclose(outputs, expected, atol=1e-5)


def test_bert_backbone_dict_in_dict_out_on_litert(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=1000,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=64,
    )
    rng = np.random.default_rng(0)
    batch = {
        "token_ids": rng.integers(0, 1000, (6, 16)).astype("int32"),
        "segment_ids": rng.integers(0, 2, (6, 16)).astype("int32"),
        "padding_mask": (np.arange(16) < rng.integers(4, 17, (6, 1))).astype("int32"),
    }
    with pytest.raises(ValueError, match="open dimensions in: 'padding_mask'"):
        export.to_tflite(backbone, tmp_path / "bert.tflite")
    result = export.to_tflite(
        backbone, tmp_path / "bert.tflite", verification_data=batch, latency_runs=1
    )
    assert result.passed, str(result)
    assert {port["name"]: port["shape"] for port in result.outputs} == {
        "pooled_output": [1, 32],
        "sequence_output": [1, 16, 32],
    }
    assert [check.runtime for check in result.checks] == ["litert+xnnpack", "litert-builtin"]
    assert all(sorted(c.outputs) == ["pooled_output", "sequence_output"] for c in result.checks)


def test_structured_data_errors_name_the_input(tmp_path, data):
    model = two_in_two_out()
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match=r"dict or list of 2 arrays.*'image'.*'extra'"):
        export.to_tflite(model, path, verification_data=data[0])
    with pytest.raises(ValueError, match=r"entry for every input.*Received keys: \['image'\]"):
        export.to_tflite(model, path, verification_data={"image": data[0]})
    with pytest.raises(ValueError, match=r"same number of samples.*'extra': 5"):
        export.to_tflite(model, path, verification_data=[data[0], data[1][:5]])
    with pytest.raises(ValueError, match=r"for input 'extra' of shape \(num_samples, 3\)"):
        export.to_tflite(model, path, verification_data=[data[0], data[0]])
    tokens = dict_input_with_token_ids()
    with pytest.raises(ValueError, match=r"whole numbers.*input 'tokens'"):
        export.to_tflite(
            tokens,
            path,
            verification_data={"tokens": np.full((2, 5), 0.5), "weights": np.ones((2, 5))},
        )
    with pytest.raises(
        ValueError, match=r"one label per unit of some output \(scores: 4, value: 1\)"
    ):
        export.to_tflite(model, path, labels=["a", "b"])
    assert not path.exists()


def test_metadata_names_every_input_and_output_and_labels_the_matching_one(tmp_path, data):
    pytest.importorskip("tensorflow_lite_support.metadata.python.metadata")
    from tensorflow_lite_support.metadata.python import metadata

    result = export.to_tflite(
        two_in_two_out(), tmp_path / "m.tflite", labels=["a", "b", "c", "d"], latency_runs=0
    )
    displayer = metadata.MetadataDisplayer.with_model_buffer((tmp_path / "m.tflite").read_bytes())
    described = json.loads(displayer.get_metadata_json())["subgraph_metadata"][0]
    assert sorted(t["name"] for t in described["input_tensor_metadata"]) == ["extra", "image"]
    assert sorted(t["name"] for t in described["output_tensor_metadata"]) == ["scores", "value"]
    assert "scores_labels.txt" in displayer.get_packed_associated_file_list()
    assert result.metadata.startswith("written (scores_labels.txt")
