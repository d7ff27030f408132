"""The digits demo: the whole path from a dense CNN to verified phone and microcontroller files.

1. train a small CNN on scikit-learn's bundled 8x8 digits (the dense baseline);
2. prune it to 90% sparsity with a polynomial schedule while fine-tuning (the recipe that keeps
   accuracy at high sparsity: prune gradually, finish pruning before training ends, a lower
   learning rate, the small first conv and the classifier left dense);
3. strip the wrappers, save the dense and the pruned `.keras` files;
4. export both for `mobile` (float32, sparse-encoded, LiteRT) and `mcu` (int8, TFLM, with the C
   array), each file checked against Keras on its runtimes before it is written;
5. print one before/after table and write the report (Markdown, PNG plots, JSON record).
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
import warnings

import keras
import numpy as np

import keras_prune as kp

# Batches of fine-tuning after the schedule ends: the masks are final and the weights recover.
_RECOVERY_EPOCHS = 4


def load_data():
    """`((x_train, y_train), (x_test, y_test))`: scikit-learn's digits, 80/20, scaled to [0, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "The demo's data set ships with scikit-learn: `pip install keras-prune[examples]` "
            "(or `pip install scikit-learn`)."
        ) from error
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    labels = digits.target.astype("int32")
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], labels[order]
    split = int(0.8 * len(images))
    return (images[:split], labels[:split]), (images[split:], labels[split:])


def build_cnn():
    """The demo's CNN: two convolutions, a pooling, two dense layers (about 151k weights)."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(128, activation="relu", name="dense"),
            keras.layers.Dense(10, name="logits"),
        ],
        name="digits_cnn",
    )


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _export(model, path, target, calibration, latency_runs, verbose):
    with warnings.catch_warnings():
        # Metadata needs tflite-support, which few have installed; the report says so once.
        warnings.filterwarnings("ignore", message="No TFLite metadata written")
        return kp.export.to_tflite(
            model,
            path,
            target=target,
            calibration_data=calibration,
            latency_runs=latency_runs,
            verbose=verbose,
            name="digits_cnn",
            description="keras-prune digits demo",
        )


# Run by _export_in_tensorflow with KERAS_BACKEND=tensorflow: loads the .keras file, exports it
# as `_export` does, and prints the ExportResult as JSON on its last line.
_EXPORT_SCRIPT = """
import json, sys, warnings
import numpy as np
import keras_prune as kp
model_path, path, target, calibration_path, latency_runs = sys.argv[1:]
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="No TFLite metadata written")
    result = kp.export.to_tflite(
        kp.export.load_model(model_path), path, target=target,
        calibration_data=np.load(calibration_path), latency_runs=int(latency_runs),
        name="digits_cnn", description="keras-prune digits demo",
    )
print(json.dumps(result.to_dict(), default=str))
"""


def _export_in_tensorflow(model_path, path, target, calibration, latency_runs):
    """`_export` of a saved model, in a child process on the TensorFlow backend; the result
    as the dict `ExportResult.to_dict()` gives (what `kp.reporting.report` reads)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    calibration_path = os.path.join(directory, "calibration.npy")
    np.save(calibration_path, calibration)
    environment = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-c", _EXPORT_SCRIPT, model_path, path, target, calibration_path]
    try:
        finished = subprocess.run(
            [*command, str(latency_runs)], env=environment, capture_output=True, text=True
        )
    finally:
        os.remove(calibration_path)
    if finished.returncode != 0:
        raise RuntimeError(
            f"Exporting {model_path} for {target} on the TensorFlow backend failed:\n"
            + finished.stderr[-2000:]
        )
    return json.loads(finished.stdout.strip().splitlines()[-1])


def _field(result, name):
    """`name` of an export result: an `ExportResult`, or its dict from a TensorFlow child."""
    return result[name] if isinstance(result, dict) else getattr(result, name)


def _with_latency(result, latency_us):
    if isinstance(result, dict):
        return dict(result, latency_us=latency_us)
    return dataclasses.replace(result, latency_us=latency_us)


def _timed_side_by_side(pair, latency_runs, rounds=7, target="this target"):
    """`pair` ({"dense": result, "pruned": result} of one target) with both files' latency
    timed again together: rounds interleaved in one child process. Each export timed its own
    file, minutes apart; load on a shared machine moved those two figures apart by up to 20%
    and made the report's before/after ratio disagree with the exporter's own interleaved
    comparison. Left as it was, with a warning naming `target` and why, if either file was not
    timed on the same runtime or the runtime refuses one."""
    dense, pruned = pair.get("dense"), pair.get("pruned")
    if dense is None or pruned is None or not latency_runs:
        return pair
    dense_latency, pruned_latency = _field(dense, "latency_us"), _field(pruned, "latency_us")
    if not dense_latency or not pruned_latency:  # not timed: no ratio to mislead
        return pair
    runtime = "xnnpack" if "xnnpack" in dense_latency else "builtin"
    if runtime not in dense_latency or runtime not in pruned_latency:
        return _separately_timed(
            pair,
            target,
            f"the exports timed them on {sorted(dense_latency)} and "
            f"{sorted(pruned_latency)}, not both on {runtime!r}",
        )
    try:
        medians = kp.export.measure_latencies(
            [_field(dense, "path"), _field(pruned, "path")],
            xnnpack=runtime == "xnnpack",
            runs=latency_runs,
            rounds=rounds,
        )
    except kp.export.RuntimeCheckError as error:  # XNNPACK refusing a file is one too
        return _separately_timed(pair, target, f"{runtime} refused a file: {error}")
    return {
        "dense": _with_latency(dense, {**dense_latency, runtime: medians[0]}),
        "pruned": _with_latency(pruned, {**pruned_latency, runtime: medians[1]}),
    }


def _separately_timed(pair, target, why):
    """`pair` as it is, after warning that its latencies were timed apart and why."""
    warnings.warn(
        f"{target}: the dense and pruned files could not be timed again together ({why}); "
        "the report shows each export's own latency, timed minutes apart, so their ratio "
        "includes any change of load in between.",
        stacklevel=3,
    )
    return pair


def run(
    out="artifacts",
    *,
    sparsity=0.9,
    epochs=12,
    dense_epochs=15,
    targets=("mobile", "mcu"),
    latency_runs=50,
    plots=True,
    verbose=1,
):
    """Runs the demo end to end and returns the `kp.reporting.RunReport` it wrote.

    Args:
        out: output directory (models, `.tflite` files, C sources, report, plots).
        sparsity: final sparsity of the pruned layers.
        epochs: pruning epochs (the schedule ends 4 epochs before, then the weights recover).
        dense_epochs: epochs of the dense baseline.
        targets: export targets, checked on their runtimes; `()` skips the export. On other
            backends than TensorFlow, the saved `.keras` files are exported in a child
            process on TensorFlow.
        latency_runs: timed LiteRT invocations per latency figure (median); 0 skips timing.
        plots: draw the report's PNGs (needs matplotlib).
        verbose: 0 prints only the table; 1 also says what it is doing and shows training.

    Example:

    ```python
    from keras_prune.demo import run
    print(run("artifacts", epochs=2, dense_epochs=2, targets=("mcu",), latency_runs=0))
    ```
    """
    sparsity = kp.core.validation.check_sparsity("sparsity", sparsity)
    epochs = kp.core.validation.check_int("epochs", epochs, minimum=1)
    dense_epochs = kp.core.validation.check_int("dense_epochs", dense_epochs, minimum=1)
    targets = [kp.export.get_target(target).name for target in targets]
    say = print if verbose else (lambda *args, **kwargs: None)
    started = time.perf_counter()
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = load_data()
    batch_size = 32
    os.makedirs(out, exist_ok=True)

    say(f"1/5 Training the dense baseline ({dense_epochs} epochs)...")
    dense = compile_model(build_cnn(), 1e-3)
    dense.fit(
        x_train, y_train, batch_size=batch_size, epochs=dense_epochs, verbose=2 if verbose else 0
    )
    _, dense_accuracy = dense.evaluate(x_test, y_test, verbose=0)
    dense_path = os.path.join(out, "digits_dense.keras")
    dense.save(dense_path)

    steps_per_epoch = int(np.ceil(len(x_train) / batch_size))
    end_step = steps_per_epoch * max(epochs - _RECOVERY_EPOCHS, 1)
    schedule = kp.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=sparsity,
        begin_step=0,
        end_step=end_step,
        frequency=max(steps_per_epoch // 2, 1),
    )
    pruned = kp.prune(dense, schedule=schedule, filters=["conv2", "^dense$"])
    say(f"2/5 Pruning to {sparsity:.0%} over {end_step} steps while fine-tuning...")
    say("   ", str(pruned.pruning_report).replace("\n", "\n    "))
    compile_model(pruned, 5e-4)
    history = pruned.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        verbose=2 if verbose else 0,
        callbacks=[kp.PruningCallback()],
    )
    _, pruned_accuracy = pruned.evaluate(x_test, y_test, verbose=0)

    say("3/5 Stripping the wrappers (plain Keras layers, zeros baked in)...")
    plain = kp.strip(pruned)
    pruned_path = os.path.join(out, "digits_pruned.keras")
    plain.save(pruned_path)

    exports = {}
    calibration = x_train[:200]
    in_tensorflow = keras.backend.backend() == "tensorflow"
    if targets and not in_tensorflow:
        say("4/5 TFLite conversion needs TensorFlow: exporting the saved .keras files in a")
        say("    process whose Keras uses TensorFlow.")
    for target in targets:
        exports[target] = {}
        for version, model in (("dense", dense), ("pruned", plain)):
            say(f"4/5 Exporting the {version} model for {target}: convert, check, measure...")
            path = os.path.join(out, "export", f"digits_{version}_{target}.tflite")
            if in_tensorflow:
                exports[target][version] = _export(
                    model, path, target, calibration, latency_runs, verbose
                )
            else:
                saved = dense_path if version == "dense" else pruned_path
                exports[target][version] = _export_in_tensorflow(
                    saved, path, target, calibration, latency_runs
                )
        exports[target] = _timed_side_by_side(exports[target], latency_runs, target=target)

    say("5/5 Writing the report...")
    result = kp.reporting.report(
        os.path.join(out, "report.md"),
        pruned,
        dense_model=dense,
        stripped_model=plain,
        schedule=schedule,
        history=history,
        steps_per_epoch=steps_per_epoch,
        metrics={"test accuracy": (dense_accuracy, pruned_accuracy)},
        exports=exports,
        model_paths={"dense": dense_path, "pruned": pruned_path},
        plots=plots,
        title="Pruning report: digits CNN",
    )
    print()
    print(result)
    print()
    for target, pair in exports.items():
        extra = _field(pair["pruned"], "extra_files")
        if extra:
            say(f"{target}: C array for the microcontroller in {extra[0]}")
    say(f"Report: {result.path} (plots: {', '.join(result.plots.values()) or 'none'})")
    say(f"Pruning record: {result.record_path}")
    say(f"Dense model: {dense_path}; pruned model (plain Keras): {pruned_path}")
    say(f"Done in {time.perf_counter() - started:.0f} s.")
    return result
