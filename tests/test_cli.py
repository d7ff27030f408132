"""keras-prune command line: export and inspect, exit statuses, errors without files."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_prune.cli import build_parser, main

# `main` runs in this process and its output is read with capsys. On another backend the export
# command runs again in a TensorFlow child process, whose output capsys does not see; the last
# test here runs the command on JAX or torch in a subprocess instead.
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="reads the CLI's output in this process"
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.save(root / "digits.keras")
    np.save(root / "x.npy", np.random.default_rng(0).random((32, 8, 8, 1)).astype("float32"))
    (root / "labels.txt").write_text("zero\none\ntwo\n")
    return root


def test_export_mcu_writes_the_model_and_c_sources(saved, capsys):
    out = saved / "build"
    status = main(
        [
            "export",
            str(saved / "digits.keras"),
            "--target",
            "mcu",
            "--calibration",
            str(saved / "x.npy"),
            "--labels",
            str(saved / "labels.txt"),
            "--out",
            str(out),
            "--json",
        ]
    )
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["target"] == "mcu" and report["passed"] and report["arena_bytes"] > 0
    # C sources are named after the model, so several models can share a folder; the hidden
    # manifest records the set.
    assert sorted(os.listdir(out)) == [
        ".digits.keras_prune.json",
        "digits.tflite",
        "digits_data.cc",
        "digits_data.h",
        "digits_data_ops.h",
    ]


def test_inspect_prints_the_report(saved, capsys):
    main(["export", str(saved / "digits.keras"), "--out", str(saved / "mobile")])
    capsys.readouterr()
    assert main(["inspect", str(saved / "mobile" / "digits.tflite"), "--latency-runs", "2"]) == 0
    text = capsys.readouterr().out
    assert "FULLY_CONNECTED" in text and "XNNPACK sparse inference" in text
    assert "with XNNPACK" in text and "built-in kernels" in text


def one_line_error(capsys, command):
    """The stderr of a failed command: it must end in one `error:` line, with no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"keras-prune {command}: error: "), err
    return last


def test_usage_errors_exit_2_with_the_message_and_write_nothing(saved, capsys):
    out = saved / "bad"
    status = main(["export", str(saved / "digits.keras"), "--target", "phone", "--out", str(out)])
    assert status == 2
    assert '"mobile", "mobile-int8", "mcu"' in one_line_error(capsys, "export")
    status = main(["export", str(saved / "digits.keras"), "--target", "mcu", "--out", str(out)])
    assert status == 2 and "Expected --calibration" in one_line_error(capsys, "export")
    bad = np.full((4, 8, 8, 1), np.nan, dtype="float32")
    np.save(saved / "nan.npy", bad)
    status = main(
        ["export", str(saved / "digits.keras"), "--calibration", str(saved / "nan.npy"),
         "--target", "mcu", "--out", str(out)]
    )  # fmt: skip
    line = one_line_error(capsys, "export")
    assert status == 2 and "finite values in --calibration" in line and "(0, 0, 0, 0)" in line
    assert not out.exists() or not os.listdir(out)


def test_help_documents_the_exit_statuses(capsys):
    for command in (["--help"], ["export", "--help"], ["inspect", "--help"]):
        with pytest.raises(SystemExit):
            main(command)
        text = capsys.readouterr().out
        for code in ("2 ", "3 ", "4 ", "5 "):
            assert f"  {code}" in text
        assert "conversion failure" in text and "bad input file" in text


def write_corrupted_keras(saved, tmp_path):
    """Damaged .keras files as users meet them, by name."""
    import zipfile

    data = (saved / "digits.keras").read_bytes()
    files = {
        "empty.keras": b"",
        "truncated.keras": data[: len(data) // 2],
        "not_a_zip.keras": b"garbage" * 100,
        "flipped.keras": data[:3000] + bytes([data[3000] ^ 0x40]) + data[3001:],
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    # A well-formed archive (CRCs match) whose weights member is garbage: h5py's OSError.
    with zipfile.ZipFile(saved / "digits.keras") as source:
        with zipfile.ZipFile(tmp_path / "garbage_weights.keras", "w") as target:
            for item in source.infolist():
                content = source.read(item.filename)
                if item.filename.endswith(".h5"):
                    content = np.random.default_rng(0).bytes(len(content))
                target.writestr(item, content)
    return [*files, "garbage_weights.keras"]


def test_corrupted_keras_files_are_named_as_such(saved, tmp_path, capsys):
    for name in write_corrupted_keras(saved, tmp_path):
        status = main(["export", str(tmp_path / name), "--out", str(tmp_path / "out")])
        line = one_line_error(capsys, "export")
        assert status == 3, (name, line)
        assert "not a valid .keras file" in line, line
        assert not re.search(r"file not found|no such file|existing", line, re.IGNORECASE), line
    assert not (tmp_path / "out").exists()


def test_corrupted_tflite_files_are_named_as_such(saved, tmp_path, capsys):
    main(["export", str(saved / "digits.keras"), "--out", str(tmp_path), "--latency-runs", "0"])
    capsys.readouterr()
    data = (tmp_path / "digits.tflite").read_bytes()
    files = {
        "empty.tflite": b"",
        "zeros.tflite": bytes(len(data)),  # was: 'NoneType' object is not subscriptable
        "truncated.tflite": data[: len(data) // 3],  # was: struct.error
        "header_only.tflite": data[:8],
        "garbage.tflite": np.random.default_rng(0).bytes(2000),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        status = main(["inspect", str(tmp_path / name)])
        line = one_line_error(capsys, "inspect")
        assert status == 3, (name, line)
        assert "not a valid .tflite file" in line or "is empty" in line, line
        assert not re.search(r"file not found|no such file|existing", line, re.IGNORECASE), line


def test_wrong_kinds_of_file_say_what_to_do(saved, tmp_path, capsys):
    assert main(["inspect", str(saved / "digits.keras")]) == 3
    line = one_line_error(capsys, "inspect")
    assert "inspect expects a .tflite file" in line and "keras-prune export" in line
    assert main(["inspect", str(saved / "nope.tflite")]) == 3
    assert "existing .tflite file" in one_line_error(capsys, "inspect")
    missing = main(["export", str(saved / "digits.keras"), "--calibration", str(saved / "no.npy")])
    assert missing == 3 and "no.npy" in one_line_error(capsys, "export")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    status = main(
        ["export", str(saved / "digits.keras"), "--calibration", str(tmp_path / "bad.npy")]
    )
    assert status == 3 and "not a valid .npy/.npz file" in one_line_error(capsys, "export")


def test_conversion_and_verification_failures_have_their_own_statuses(
    saved, tmp_path, capsys, monkeypatch
):
    gelu = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="gelu")])
    gelu.save(tmp_path / "gelu.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((8, 4)).astype("float32"))
    status = main(
        ["export", str(tmp_path / "gelu.keras"), "--target", "mcu", "--calibration",
         str(tmp_path / "x.npy"), "--out", str(tmp_path / "out")]
    )  # fmt: skip
    assert status == 4 and "GELU, which TFLM lacks" in one_line_error(capsys, "export")
    monkeypatch.setenv("KERAS_PRUNE_TEST_CRASH_AT", "verify-litert:xnnpack")
    status = main(["export", str(saved / "digits.keras"), "--out", str(tmp_path / "out")])
    line = one_line_error(capsys, "export")
    assert status == 5 and "crashed (signal 11 (SIGSEGV))" in line and "verify-litert" in line
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback_and_bugs_exit_1(saved, capsys, monkeypatch):
    assert main(["--debug", "inspect", str(saved / "nope.tflite")]) == 3
    assert "Traceback" in capsys.readouterr().err
    assert main(["inspect", str(saved / "nope.tflite"), "--debug"]) == 3
    assert "Traceback" in capsys.readouterr().err
    from keras_prune.export import inspection

    def broken(*args, **kwargs):
        raise KeyError("tensors")

    monkeypatch.setattr(inspection, "inspect_tflite", broken)
    assert main(["inspect", str(saved / "digits.keras").replace(".keras", ".tflite")]) == 1
    line = one_line_error(capsys, "inspect")
    assert "KeyError" in line and "rerun with --debug and report it" in line


def test_npz_calibration_feeds_a_model_with_several_inputs(tmp_path, capsys):
    image, extra = keras.Input((4, 4, 1), name="image"), keras.Input((3,), name="extra")
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), extra])
    keras.Model([image, extra], keras.layers.Dense(2)(joined)).save(tmp_path / "two.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "x.npz", image=rng.random((8, 4, 4, 1)), extra=rng.random((8, 3)))
    argv = ["export", str(tmp_path / "two.keras"), "--target", "mobile-int8", "--json"]
    argv += [
        "--calibration",
        str(tmp_path / "x.npz"),
        "--out",
        str(tmp_path),
        "--latency-runs",
        "0",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert [port["name"] for port in report["inputs"]] == ["image", "extra"] and report["passed"]


def test_a_saved_pruned_model_is_loaded_and_stripped(saved, capsys):
    import keras_prune as kp

    model = keras.saving.load_model(saved / "digits.keras")
    pruned = kp.prune(
        model,
        schedule=kp.ConstantSparsity(0.75, begin_step=0),
        granularity=kp.granularity.Block((1, 4)),
    )
    kp.pruning.update_masks(pruned, 0)
    pruned.save(saved / "pruned.keras")
    # --objective size: the sparse-encoded file whatever the timing, to check the blocks in it.
    arguments = ["--out", str(saved / "pruned"), "--objective", "size", "--json"]
    status = main(["export", str(saved / "pruned.keras"), *arguments])
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stripped_wrappers"] is True
    assert [t["encoding"] for t in report["sparse_tensors"]] == ["sparse CSR, block 1x4"] * 2


def test_parser_has_a_subcommand_per_entry():
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([])
    assert parser.parse_args(["inspect", "m.tflite"]).command == "inspect"
    demo = parser.parse_args(["demo", "--targets", "--quiet"])
    assert (demo.command, demo.targets, demo.quiet) == ("demo", [], True)


def _other_backend():
    import importlib.util

    for backend, module in (("jax", "jax"), ("torch", "torch")):
        if importlib.util.find_spec(module):
            return backend
    return None


@pytest.mark.skipif(_other_backend() is None, reason="needs JAX or PyTorch installed")
def test_a_model_from_another_backend_is_exported_through_tensorflow(saved):
    # Only TensorFlow converts to TFLite; the command reruns itself with that backend.
    backend = _other_backend()
    environment = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.getcwd())
    out = saved / "numpy-backend"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_prune.cli",
            "export",
            str(saved / "digits.keras"),
            "--out",
            str(out),
            "--json",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout)["passed"] is True
    refused = subprocess.run(
        [
            sys.executable,
            "-c",
            "import keras, keras_prune.export as e\n"
            "m = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])\n"
            "e.to_tflite(m, 'x.tflite')",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0
    assert f"needs the TensorFlow backend. Received: Keras backend '{backend}'" in refused.stderr
