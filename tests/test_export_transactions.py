"""File sets are committed whole: an export killed (SIGKILL) at any write stage leaves the
complete old set or, once the journal is replayed, the complete new one, and the next export
removes the debris."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import pytest

from keras_prune import export
from keras_prune.export import files

FILES_MODULE = files.__file__
STEM = "digits"
NAMES = [f"{STEM}.tflite", f"{STEM}_data.cc", f"{STEM}_data.h", f"{STEM}_data_ops.h"]
STAGES_BEFORE_COMMIT = [f"staging:{name}" for name in NAMES] + ["staged"]
STAGES_AFTER_COMMIT = ["committed"] + [f"swap:{name}" for name in NAMES] + ["manifest", "cleanup"]

# Loads files.py on its own (it imports only the standard library), so each killed child
# starts in milliseconds instead of importing TensorFlow.
CHILD = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("files", sys.argv[1])
files = importlib.util.module_from_spec(spec)
spec.loader.exec_module(files)
with open(sys.argv[3]) as handle:
    contents = json.load(handle)
files.commit_files(sys.argv[2], sys.argv[4], {name: text.encode() if name.endswith(".tflite")
                                              else text for name, text in contents.items()})
"""


def file_set(version):
    return {name: f"{name} version {version}\n" * (version + 1) for name in NAMES}


def as_written(contents):
    """The .tflite file as bytes, the C sources as text, as an export writes them."""
    return {n: t.encode() if n.endswith(".tflite") else t for n, t in contents.items()}


def digests(directory):
    return {
        name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
        for name in NAMES
        if (directory / name).exists()
    }


def expected_digests(contents):
    return {name: hashlib.sha256(text.encode()).hexdigest() for name, text in contents.items()}


def debris(directory):
    return sorted(name for name in os.listdir(directory) if name.startswith(".keras_prune-"))


def run_until(stage, command, env_extra, pause_file, timeout=120):
    """Starts `command`, waits until it pauses at `stage`, then SIGKILLs it."""
    environment = dict(
        os.environ,
        KERAS_PRUNE_TEST_PAUSE_AT=stage,
        KERAS_PRUNE_TEST_PAUSE_FILE=str(pause_file),
        **env_extra,
    )
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout
    while not pause_file.exists():
        if process.poll() is not None:
            raise AssertionError(f"ended before {stage}: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"never reached {stage}")
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL


@pytest.mark.parametrize("stage", STAGES_BEFORE_COMMIT + STAGES_AFTER_COMMIT)
def test_killed_at_each_write_stage_leaves_a_whole_set(tmp_path, stage):
    destination = tmp_path / "build"
    old, new = file_set(1), file_set(2)
    files.commit_files(destination, STEM, as_written(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    command = [sys.executable, "-c", CHILD, FILES_MODULE, str(destination)]
    command += [str(tmp_path / "new.json"), STEM]
    run_until(stage, command, {}, tmp_path / "paused")

    leftovers = debris(destination)
    assert leftovers, "a killed run leaves its staging or commit folder"
    if stage in STAGES_BEFORE_COMMIT:
        # Nothing visible changed: the complete old set, its manifest, no partial files.
        assert digests(destination) == expected_digests(old)
        expected = old
    else:
        # Every visible file is whole (renames are atomic), old or new; the journal holds
        # the rest of the new set, and replaying it gives exactly the new set.
        for name, digest in digests(destination).items():
            assert digest in (expected_digests(old)[name], expected_digests(new)[name])
        replayed = tmp_path / "replayed"
        shutil.copytree(destination, replayed)
        files.recover(replayed)  # The killed process is gone, so its journal is replayed.
        assert digests(replayed) == expected_digests(new)
        expected = new

    # The next export into the folder finishes or removes what the killed one left.
    newest = file_set(3)
    files.commit_files(destination, STEM, as_written(newest))
    assert debris(destination) == []
    assert digests(destination) == expected_digests(newest)
    assert sorted(os.listdir(destination)) == sorted([*NAMES, f".{STEM}.keras_prune.json"])
    assert expected in (old, new)


def test_a_real_export_killed_mid_swap_is_completed_by_the_next_one(tmp_path, monkeypatch):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(3)]
    )
    model.save(tmp_path / f"{STEM}.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((16, 8)).astype("float32"))
    out, temp = tmp_path / "out", tmp_path / "temp"
    temp.mkdir()
    command = [
        sys.executable, "-m", "keras_prune.cli", "export", str(tmp_path / f"{STEM}.keras"),
        "--target", "mcu", "--calibration", str(tmp_path / "x.npy"), "--out", str(out),
        "--latency-runs", "0",
    ]  # fmt: skip
    env = {"PYTHONPATH": os.getcwd(), "TMPDIR": str(temp)}
    run_until(f"swap:{STEM}_data.h", command, env, tmp_path / "paused", timeout=300)
    assert [name for name in debris(out) if name.endswith(".commit")]
    # The killed process's SavedModel and job folders may remain in its temp directory; the
    # next export removes them with the rest.
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    result = export.to_tflite(
        model, out / f"{STEM}.tflite", target="mcu",
        calibration_data=np.load(tmp_path / "x.npy"), latency_runs=0,
    )  # fmt: skip
    assert result.passed and debris(out) == []
    # (TensorFlow's autograph writes its own files there; none of them is ours.)
    assert not [name for name in os.listdir(temp) if name.startswith("keras_prune-")]
    assert sorted(os.listdir(out)) == sorted([*NAMES, f".{STEM}.keras_prune.json"])
