"""keras_prune.export.to_tflite: every target converted once, run on the real runtimes."""

import json
import os
import re
import shutil
import subprocess
import warnings

import keras
import numpy as np
import pytest

from keras_prune import export
from keras_prune.export import mcu, verify
from keras_prune.export.flatbuffer import read_model

SPARSITY = 0.9


def zero_dense_blocks(layer, sparsity, block):
    """Zeroes the lowest-magnitude (1 x block) groups of a Dense kernel in TFLite's [out, in]
    layout (Keras stores [in, out]), so exactly `sparsity` of the groups are zero."""
    kernel = layer.kernel.numpy().T
    rows, columns = kernel.shape
    groups = np.abs(kernel.reshape(rows, columns // block, block)).mean(axis=-1)
    order = np.argsort(groups, axis=None)
    mask = np.ones(groups.size, dtype=bool)
    mask[order[: round(sparsity * groups.size)]] = False
    mask = mask.reshape(groups.shape).repeat(block, axis=1)
    layer.kernel.assign((kernel * mask).T)


def build_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="tiny_cnn",
    )
    for layer in model.layers:
        if isinstance(layer, keras.layers.Dense):
            zero_dense_blocks(layer, SPARSITY, block=16)
    return model


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def calibration():
    return np.random.default_rng(1).random((64, 8, 8, 1)).astype("float32")


@pytest.fixture(scope="module")
def exports(model, calibration, tmp_path_factory):
    root = tmp_path_factory.mktemp("exports")
    results = {}
    for target in ("mobile", "mobile-int8", "mcu"):
        results[target] = export.to_tflite(
            model,
            root / target / "model.tflite",
            target=target,
            calibration_data=calibration,
            labels=[f"digit {i}" for i in range(10)],
            latency_runs=5,
            # The sparse-encoded files whatever their speed: these tests read their encoding
            # (the latency objective is tested in test_export_storage.py).
            objective="size",
        )
    return results


def test_mobile_float_matches_keras_and_keeps_sparse_fully_connected(exports):
    result = exports["mobile"]
    assert {check.runtime for check in result.checks} == {"litert+xnnpack", "litert-builtin"}
    for check in result.checks:
        assert check.passed and check.max_abs_error <= 1e-4
        assert check.top1_agreement == 1.0
    info = read_model(result.path)
    fully_connected = [
        info.tensors[op.inputs[1]] for op in info.ops if op.name == "FULLY_CONNECTED"
    ]
    assert [t.encoding for t in fully_connected] == ["sparse CSR, block 1x4"] * 2
    assert "DENSIFY" not in info.op_counts()  # the sparse FC kernel runs, nothing densified
    dense_bytes = sum(4 * t.size for t in fully_connected)
    assert result.size_breakdown["sparse_values"] <= 0.11 * dense_bytes
    assert result.latency_us["xnnpack"] > 0 and result.latency_us["builtin"] > 0


def test_mobile_int8_keeps_zeros_and_1x16_blocks(exports, model):
    result = exports["mobile-int8"]
    assert all(check.passed for check in result.checks)
    assert result.input_quantization["scale"][0] > 0
    info = read_model(result.path)
    fully_connected = [
        info.tensors[op.inputs[1]] for op in info.ops if op.name == "FULLY_CONNECTED"
    ]
    assert [t.encoding for t in fully_connected] == ["sparse CSR, block 1x16"] * 2
    assert all(t.dtype == "int8" for t in fully_connected)
    for tensor, layer in zip(fully_connected, model.layers[2:], strict=True):
        keras_nonzero = np.count_nonzero(layer.kernel.numpy())
        assert round(tensor.density * tensor.size) <= keras_nonzero
    assert any(note.startswith("sparsity kept") for note in result.notes)


def test_mcu_runs_on_tflm_with_the_smallest_arena(exports, calibration):
    result = exports["mcu"]
    assert [check.runtime for check in result.checks][-1] == "tflm"
    assert all(check.passed for check in result.checks)
    info = read_model(result.path)
    assert not info.sparse_tensors and "DENSIFY" not in info.op_counts()
    arena = result.arena_bytes
    inputs = verify.quantize(calibration[:2], info.tensors[info.inputs[0]])
    assert verify.run_tflm(result.path, inputs, arena).shape == (2, 10)
    with pytest.raises(verify.TFLMError):
        verify.run_tflm(result.path, inputs, arena - 16)
    on_tflm = export.predict(result.path, calibration, runtime="tflm", arena_bytes=arena)
    on_litert = export.predict(result.path, calibration, xnnpack=False)
    step = result.output_quantization["scale"][0]
    assert np.max(np.abs(on_tflm - on_litert)) <= step + 1e-7


def test_arena_search_counts_its_tries_when_verbose(exports, capsys):
    result = exports["mcu"]
    assert verify.find_min_arena(result.path) == result.arena_bytes
    assert capsys.readouterr().out == ""
    assert verify.find_min_arena(result.path, verbose=1) == result.arena_bytes
    assert "try" in capsys.readouterr().out


def _c_array_bytes(source):
    body = source.split("{", 1)[1].split("}", 1)[0]
    return bytes(int(value, 16) for value in re.findall(r"0x([0-9a-f]{2})", body))


def test_mcu_c_sources_hold_the_model_and_its_ops(exports):
    result = exports["mcu"]
    directory = os.path.dirname(result.path)
    names = sorted(os.path.basename(path) for path in result.extra_files)
    assert names == ["model_data.cc", "model_data.h", "model_data_ops.h"]
    with open(result.path, "rb") as handle:
        data = handle.read()
    with open(os.path.join(directory, "model_data.cc")) as handle:
        source = handle.read()
    assert "alignas(16) const unsigned char model_data[]" in source
    assert _c_array_bytes(source) == data
    assert f"model_data_len = {len(data)};" in source
    with open(os.path.join(directory, "model_data.h")) as handle:
        assert f"model_data_arena_size = {result.arena_bytes};" in handle.read()
    with open(os.path.join(directory, "model_data_ops.h")) as handle:
        ops_header = handle.read()
    registered = re.findall(r"resolver\.(Add\w+)\(\)", ops_header)
    expected = sorted(mcu.TFLM_RESOLVER_METHODS[name] for name in set(read_model(data).op_names))
    assert sorted(registered) == expected
    assert "MicroMutableOpResolver<model_data_op_count>" in ops_header
    assert f"model_data_op_count = {len(expected)};" in ops_header


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler")
def test_mcu_c_array_compiles_aligned_and_complete(exports, tmp_path):
    result = exports["mcu"]
    source = os.path.join(os.path.dirname(result.path), "model_data.cc")
    main = tmp_path / "main.cc"
    main.write_text(
        '#include <cstdint>\n#include <cstdio>\n#include "model_data.h"\n'
        "int main() {\n"
        '  std::printf("%u %d\\n", model_data_len,\n'
        "              (int)(reinterpret_cast<std::uintptr_t>(model_data) % 16));\n"
        "  std::fwrite(model_data, 1, model_data_len, stderr);\n}\n"
    )
    binary = tmp_path / "check"
    subprocess.run(
        ["g++", "-std=c++17", "-I", os.path.dirname(source), str(main), source, "-o", str(binary)],
        check=True,
    )
    run = subprocess.run([str(binary)], capture_output=True, check=True)
    length, misalignment = run.stdout.decode().split()
    with open(result.path, "rb") as handle:
        data = handle.read()
    assert int(length) == len(data) and int(misalignment) == 0
    assert run.stderr == data


def test_result_prints_a_table_and_serializes(exports):
    result = exports["mcu"]
    text = str(result)
    for label in ("size", "ops", "sparse tensors", "check tflm", "latency", "TFLM arena"):
        assert re.search(rf"^{label}\s", text, flags=re.MULTILINE), label
    data = json.loads(json.dumps(result.to_dict()))
    assert data["arena_bytes"] == result.arena_bytes and data["passed"] is True
    assert data["file_bytes"] == os.path.getsize(result.path)


def test_metadata_is_written_or_skipped_with_install_hint(exports):
    available, _ = export.metadata.available()
    for result in exports.values():
        if available:
            assert result.metadata.startswith("written")
            assert "TFLITE_METADATA" in read_model(result.path).metadata_names
        else:
            assert result.metadata.startswith("not written")


def test_metadata_missing_warns_once_with_the_install_command(model, tmp_path):
    if export.metadata.available()[0]:
        pytest.skip("tflite-support is installed here")
    export.metadata._warned_missing = False
    with pytest.warns(UserWarning, match="pip install --no-deps tflite-support"):
        export.metadata.add_metadata(b"", name="m", version="1", description="")
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        data, status = export.metadata.add_metadata(b"", name="m", version="1", description="")
    assert not records and data == b"" and status.startswith("not written")


def test_metadata_packs_labels_and_pruning_record(exports, model):
    pytest.importorskip("tensorflow_lite_support.metadata.python.metadata")
    from tensorflow_lite_support.metadata.python import metadata

    with open(exports["mobile"].path, "rb") as handle:
        displayer = metadata.MetadataDisplayer.with_model_buffer(handle.read())
    assert set(displayer.get_packed_associated_file_list()) == {"labels.txt", "pruning_record.json"}
    record = json.loads(displayer.get_associated_file_buffer("pruning_record.json"))
    assert record["layers"][model.layers[2].name]["sparsity"] == pytest.approx(SPARSITY, abs=0.001)


def test_wrapped_models_are_stripped_before_conversion(tmp_path):
    import keras_prune as kp

    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [keras.Input((32,)), keras.layers.Dense(64, activation="relu"), keras.layers.Dense(4)]
    )
    wrapped = kp.prune(
        model,
        schedule=kp.ConstantSparsity(SPARSITY, begin_step=0),
        granularity=kp.granularity.Block((1, 16)),
    )
    kp.pruning.update_masks(wrapped, 0)
    assert export.convert.keras_prune_layers(wrapped)
    result = export.to_tflite(wrapped, tmp_path / "model.tflite", latency_runs=1, objective="size")
    assert result.stripped_wrappers and result.passed
    assert not any(name.startswith("CUSTOM") for name in result.ops)
    assert [t["encoding"] for t in result.sparse_tensors] == ["sparse CSR, block 1x4"] * 2
    assert all(
        t["density"] == pytest.approx(1 - SPARSITY, abs=0.03)  # within one block
        for t in result.sparse_tensors
    )


# Bad input: each error names the value and the fix, and nothing is left on disk.


def _no_files(directory):
    return not os.path.exists(directory) or not os.listdir(directory)


def test_unknown_target_lists_the_valid_ones(model, tmp_path):
    with pytest.raises(ValueError, match=r'"mobile", "mobile-int8", "mcu".*target=\'phone\''):
        export.to_tflite(model, tmp_path / "m.tflite", target="phone")
    assert _no_files(tmp_path)


@pytest.mark.parametrize("target", ["mobile-int8", "mcu"])
def test_int8_needs_calibration_data(model, tmp_path, target):
    with pytest.raises(ValueError, match="Expected `calibration_data`"):
        export.to_tflite(model, tmp_path / "m.tflite", target=target)
    assert _no_files(tmp_path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (np.zeros((4, 8, 8)), r"shape \(num_samples, 8, 8, 1\).*\(4, 8, 8\)"),
        (np.zeros((0, 8, 8, 1)), r"num_samples >= 1"),
        (np.full((4, 8, 8, 1), "a"), r"real numbers.*dtype=<U1"),
    ],
)
def test_calibration_data_shape_and_dtype(model, tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        export.to_tflite(model, tmp_path / "m.tflite", target="mcu", calibration_data=data)
    assert _no_files(tmp_path)


def test_unwritable_path_is_refused_before_converting(model, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="Cannot write to"):
        export.to_tflite(model, blocker / "m.tflite")
    with pytest.raises(ValueError, match=r"ending in '\.tflite'"):
        export.to_tflite(model, tmp_path / "model.bin")
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_labels_and_normalization_are_validated(model, tmp_path):
    with pytest.raises(ValueError, match=r"one label per output unit \(10\)"):
        export.to_tflite(model, tmp_path / "m.tflite", labels=["a", "b"])
    with pytest.raises(ValueError, match="std in `normalization` > 0"):
        export.to_tflite(model, tmp_path / "m.tflite", normalization=(0.0, 0.0))
    with pytest.raises(TypeError, match="Expected `model` to be a keras.Model"):
        export.to_tflite("model.keras", tmp_path / "m.tflite")
    assert _no_files(tmp_path)


def test_ops_tflm_lacks_are_named_and_nothing_is_written(tmp_path):
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(8, activation="gelu"), keras.layers.Dense(4)]
    )
    data = np.random.default_rng(0).random((16, 16)).astype("float32")
    with pytest.raises(export.ConversionError, match="uses GELU, which TFLM lacks"):
        export.to_tflite(
            model, tmp_path / "out" / "deeper" / "m.tflite", target="mcu", calibration_data=data
        )
    assert os.listdir(tmp_path) == []  # The folders the export created went with it.


def test_a_mismatch_raises_and_writes_nothing(model, tmp_path):
    # Calibrated on all-zero inputs, the int8 input range cannot represent the real inputs.
    calibration = np.zeros((4, 8, 8, 1), dtype="float32")
    far = np.full((8, 8, 8, 1), 50.0, dtype="float32")
    with pytest.raises(export.ExportVerificationError, match="no file was written") as error:
        export.to_tflite(
            model,
            tmp_path / "m.tflite",
            target="mobile-int8",
            calibration_data=calibration,
            verification_data=far,
            latency_runs=1,
        )
    assert not error.value.result.passed
    assert _no_files(tmp_path)


def test_file_sets_are_committed_whole_and_replace_the_previous_set(tmp_path):
    from keras_prune.export.files import commit_files, manifest_path

    commit_files(tmp_path, "m", {"m.tflite": b"model", "m_data.cc": "source", "m_data.h": "h"})
    assert sorted(os.listdir(tmp_path)) == [
        ".m.keras_prune.json",
        "m.tflite",
        "m_data.cc",
        "m_data.h",
    ]
    with open(manifest_path(tmp_path, "m")) as handle:
        assert sorted(json.load(handle)["files"]) == ["m.tflite", "m_data.cc", "m_data.h"]
    # A mobile export of the same model replaces the set: the stale C sources go too.
    commit_files(tmp_path, "m", {"m.tflite": b"float model"})
    assert sorted(os.listdir(tmp_path)) == [".m.keras_prune.json", "m.tflite"]
    assert (tmp_path / "m.tflite").read_bytes() == b"float model"
    # A second model shares the folder without touching the first one's files.
    commit_files(tmp_path, "other", {"other.tflite": b"x", "other_data.cc": "y"})
    assert (tmp_path / "m.tflite").read_bytes() == b"float model"
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".keras_prune-")]


def test_c_sources_use_valid_identifiers_and_refuse_unknown_ops():
    files = mcu.c_sources(b"\x01\x02", ["FULLY_CONNECTED"], symbol="2-layer model")
    assert sorted(files) == ["_2_layer_model.cc", "_2_layer_model.h", "_2_layer_model_ops.h"]
    assert "const unsigned int _2_layer_model_len = 2;" in files["_2_layer_model.cc"]
    assert "model_arena_size" not in files["_2_layer_model.h"]  # unknown arena: not claimed
    with pytest.raises(ValueError, match="DENSIFY, GELU, which TFLM lacks"):
        mcu.c_sources(b"", ["GELU", "CONV_2D", "DENSIFY"])


class SubclassedNet(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.logits = keras.layers.Dense(3)

    def call(self, x):
        return self.logits(self.hidden(x))


def test_a_pruned_subclassed_model_exports_through_its_build_shape(tmp_path):
    import keras_prune as kp

    if keras.backend.backend() == "jax":
        pytest.skip("in-place pruning of subclassed models needs weight constraints")
    keras.utils.set_random_seed(0)
    model = SubclassedNet()
    # 8 input features: with 6, the converter writes 1x4 blocks over a width of 6, which LiteRT
    # cannot read, and to_tflite stores the weights dense (tests/test_by_layer.py).
    x = np.random.default_rng(0).random((16, 8)).astype("float32")
    model(x[:1])  # built by a call: no symbolic inputs
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5, begin_step=0, frequency=1))
    pruned.compile(optimizer="adam", loss="mse")
    pruned.fit(x, np.zeros((16, 3)), epochs=1, verbose=0, callbacks=[kp.PruningCallback()])
    plain = kp.strip(pruned)
    result = export.to_tflite(plain, tmp_path / "sub.tflite", target="mobile", latency_runs=0)
    assert result.passed and os.path.exists(tmp_path / "sub.tflite")
    expected = keras.ops.convert_to_numpy(plain(x))
    np.testing.assert_allclose(export.predict(tmp_path / "sub.tflite", x), expected, atol=1e-5)
