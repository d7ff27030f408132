"""Native work runs in child processes: a crash becomes an exception naming the stage.

Two crashes measured on TensorFlow 2.21 are reproduced for real (an LSTM converted to int8,
`inf` in the calibration data); the others are provoked with the worker's test hook, which
ends the child with SIGSEGV at a named stage, as a crashing runtime would.
"""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_prune import export
from keras_prune.export import convert, isolation, targets
from keras_prune.export.signature import Signature


def small_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(3)]
    )


@pytest.fixture
def calibration():
    return np.random.default_rng(0).random((16, 8)).astype("float32")


@pytest.mark.parametrize("target", ["mobile-int8", "mcu"])
def test_non_finite_data_is_refused_before_converting(tmp_path, calibration, target):
    calibration[3, 5] = np.inf
    with pytest.raises(
        ValueError, match=r"finite values in `calibration_data`.*inf at index \(3, 5\)"
    ):
        export.to_tflite(
            small_model(), tmp_path / "m.tflite", target=target, calibration_data=calibration
        )
    nan = np.zeros((4, 8), dtype="float32")
    nan[2, 0] = np.nan
    with pytest.raises(
        ValueError, match=r"finite values in `verification_data`.*nan at index \(2, 0\)"
    ):
        export.to_tflite(small_model(), tmp_path / "m.tflite", verification_data=nan)
    assert not os.listdir(tmp_path)


def test_inf_calibration_crash_in_the_converter_is_contained(calibration):
    # Past the validation, the converter itself dies with SIGSEGV ("scale out of expressed
    # type range"): in a child, that is an exception here.
    calibration[0, 0] = np.inf
    model = small_model()
    with pytest.raises(export.ConversionError) as error:
        convert.convert_checked(model, targets.get_target("mcu"), [calibration], Signature(model))
    assert error.value.stage == "convert" and error.value.signal == signal.SIGSEGV
    assert "signal 11 (SIGSEGV)" in str(error.value) and "int8" in str(error.value)


def test_int8_lstm_crashes_the_converter_not_the_process(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    data = np.random.default_rng(0).random((8, 5, 3)).astype("float32")
    with pytest.raises(
        export.ConversionError, match=r"crashed \(signal 11 \(SIGSEGV\)\).*LSTM"
    ) as error:
        export.to_tflite(model, tmp_path / "m.tflite", target="mobile-int8", calibration_data=data)
    assert error.value.stage == "convert"
    assert not os.listdir(tmp_path)
    # The same model converts in float: the crash was the int8 converter's alone.
    assert export.to_tflite(model, tmp_path / "f.tflite", latency_runs=0).passed


@pytest.fixture
def crash_at(monkeypatch):
    armed = []

    def arm(stage):
        monkeypatch.setenv("KERAS_PRUNE_TEST_CRASH_AT", stage)
        if stage == "convert":  # The converter server's children inherit its environment.
            isolation._SERVER.stop()
            armed.append(stage)

    yield arm
    monkeypatch.delenv("KERAS_PRUNE_TEST_CRASH_AT", raising=False)
    if armed:
        isolation._SERVER.stop()


@pytest.mark.parametrize(
    ("stage", "error_stage", "target"),
    [
        ("convert", "convert", "mobile"),
        ("verify-litert:xnnpack", "verify-litert", "mobile"),
        ("verify-litert:builtin", "verify-litert", "mobile"),
        ("latency:xnnpack", "latency", "mobile"),
        ("verify-tflm", "verify-tflm", "mcu"),
    ],
)
def test_a_crash_at_each_stage_names_the_stage(
    tmp_path, calibration, crash_at, stage, error_stage, target
):
    crash_at(stage)
    with pytest.raises(export.StageError) as error:
        export.to_tflite(
            small_model(), tmp_path / "m.tflite", target=target, calibration_data=calibration,
            latency_runs=2,
        )  # fmt: skip
    assert error.value.stage == error_stage and error.value.signal == signal.SIGSEGV
    assert "SIGSEGV" in str(error.value) and "crashed" in str(error.value)
    assert f"stage {error_stage}" in str(error.value)
    assert not os.listdir(tmp_path)


def test_inspect_and_predict_contain_runtime_crashes(tmp_path, crash_at):
    data = convert.convert(small_model(), targets.get_target("mobile"))
    crash_at("latency:xnnpack")
    with pytest.raises(export.RuntimeCheckError, match="stage latency") as error:
        export.inspect_tflite(data, latency_runs=1)
    assert error.value.signal == signal.SIGSEGV
    assert export.inspect_tflite(data, latency_runs=0).latency_us == {}
    crash_at("verify-litert:builtin")
    with pytest.raises(export.RuntimeCheckError, match="built-in kernels"):
        export.predict(data, np.zeros((2, 8)), xnnpack=False)


def test_no_temporary_folders_are_left_in_the_system_temp(tmp_path, monkeypatch, calibration):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "temp"))
    os.makedirs(tmp_path / "temp")
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # Re-read TMPDIR.
    export.to_tflite(small_model(), tmp_path / "out" / "m.tflite", target="mcu",
                     calibration_data=calibration, latency_runs=1)  # fmt: skip
    with pytest.raises(ValueError):
        export.to_tflite(small_model(), tmp_path / "out" / "m.tflite", labels=["x"])
    assert os.listdir(tmp_path / "temp") == []
    # Debris of a killed run (its process id no longer exists) goes at the next export.
    stale = tmp_path / "temp" / "keras_prune-999999999-abc"
    stale.mkdir()
    export.to_tflite(small_model(), tmp_path / "out" / "m.tflite", latency_runs=0)
    assert os.listdir(tmp_path / "temp") == []


def test_a_server_that_ends_without_taking_the_job_is_restarted_once(tmp_path):
    # The server exits after SERVER_IDLE_SECONDS without input, and importing TensorFlow makes
    # its exit take seconds: an export in that window finds it alive, writes the job and reads
    # end of file. A process that reads the job and exits unanswered stands in for it.
    isolation._SERVER.stop()
    dying = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.readline()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    isolation._SERVER.process, isolation._SERVER.ready = dying, True
    try:
        data = convert.convert(small_model(), targets.get_target("mobile"))
    finally:
        dying.kill()
        dying.wait()
    assert data[4:8] == b"TFL3"
    assert isolation._SERVER.process is not dying
