"""keras-prune command line: export and inspect, exit statuses, errors without files."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_prune.cli import build_parser, main


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


def test_errors_exit_2_with_the_message_and_write_nothing(saved, capsys):
    out = saved / "bad"
    status = main(["export", str(saved / "digits.keras"), "--target", "phone", "--out", str(out)])
    assert status == 2
    assert '"mobile", "mobile-int8", "mcu"' in capsys.readouterr().err
    status = main(["export", str(saved / "digits.keras"), "--target", "mcu", "--out", str(out)])
    assert status == 2 and "Expected `representative_data`" in capsys.readouterr().err
    status = main(
        [
            "export",
            str(saved / "digits.keras"),
            "--target",
            "mcu",
            "--calibration",
            str(saved / "missing.npy"),
            "--out",
            str(out),
        ]
    )
    assert status == 2 and "missing.npy" in capsys.readouterr().err
    assert main(["inspect", str(saved / "nope.tflite")]) == 2
    assert not out.exists() or not os.listdir(out)


def test_a_saved_pruned_model_is_loaded_and_stripped(saved, capsys):
    import keras_prune as kp

    model = keras.saving.load_model(saved / "digits.keras")
    pruned = kp.prune(
        model, schedule=kp.ConstantSparsity(0.75, begin_step=0), granularity=kp.Block((1, 4))
    )
    kp.update_masks(pruned, 0)
    pruned.save(saved / "pruned.keras")
    status = main(["export", str(saved / "pruned.keras"), "--out", str(saved / "pruned"), "--json"])
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stripped_wrappers"] is True
    assert [t["encoding"] for t in report["sparse_tensors"]] == ["sparse CSR, block 1x4"] * 2


def test_parser_has_a_subcommand_per_entry():
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([])
    assert parser.parse_args(["inspect", "m.tflite"]).command == "inspect"


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
