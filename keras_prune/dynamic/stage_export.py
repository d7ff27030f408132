"""`export_stages`: one verified `.tflite` file per stage of an early-exit model, and a manifest.

Stage `i` is written as `<stem>_stage<i>.tflite`; its input is the model input (stage 0) or
the previous stage's "features" output, and it returns "logits" (the exit's class scores) and,
except for the last stage, "features". Each file is verified by `kp.export.to_tflite` on the
inputs that stage really receives (the previous stages' Keras outputs on the calibration
data). `<stem>_stages.json` lists the files, their measured latencies and the calibrated
threshold, if given; `kp.dynamic.StagedRunner` reads it.
"""

import os

import keras
import numpy as np

from keras_prune.core import validation
from keras_prune.dynamic import manifest as manifest_lib
from keras_prune.dynamic import stages as stages_lib
from keras_prune.dynamic.threshold import check_threshold
from keras_prune.dynamic.width_export import measure_latencies, sample_array


def export_stages(
    model,
    directory,
    *,
    calibration_data,
    threshold=None,
    stem=None,
    target="mobile",
    latency_runs=50,
    verbose=0,
):
    """Export an `EarlyExitModel` as one verified `.tflite` file per stage.

    Args:
        model: a trained `kp.dynamic.EarlyExitModel`.
        directory: folder for the files and the manifest (created if missing).
        calibration_data: inputs (`x`, `(x, y)` or batches); their first samples verify each
            stage (and calibrate the int8 targets).
        threshold: the confidence threshold stored in the manifest (e.g. from
            `calibrate_threshold`), in [0, 1]; `StagedRunner` uses it by default.
        stem: file name stem; default: the backbone's name.
        target: a `kp.export.to_tflite` target.
        latency_runs: timed LiteRT invocations per stage and round, as for `export_widths`;
            0 skips timing.
        verbose: 1 shows a progress bar.

    Returns:
        The manifest (a dict, also written to `<stem>_stages.json`), with "manifest_path".

    Example:

    ```python
    # docs: slow (TFLite export, verified on LiteRT)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, activation="relu", name="block1")(inputs)
    h = keras.layers.Conv2D(16, 3, activation="relu", name="block2")(h)
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(h))
    early_exit = kp.dynamic.EarlyExitModel(keras.Model(inputs, outputs), exits=["block1"])
    early_exit.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    early_exit.fit(x, y, epochs=1, verbose=0)
    manifest = kp.dynamic.export_stages(early_exit, "build/exit", calibration_data=x,
                                        threshold=0.9)
    runner = kp.dynamic.StagedRunner(manifest["manifest_path"])
    ```
    """
    from keras_prune.export import to_tflite

    if not hasattr(model, "exit_names"):
        raise TypeError(
            f"Expected a kp.dynamic.EarlyExitModel. Received: model={type(model).__name__}"
        )
    if threshold is not None:
        threshold = check_threshold(threshold)
    directory = validation.check_path("directory", directory)
    stem = stem or model.backbone.name
    stages = stages_lib.stage_models(model)
    samples = sample_array(calibration_data, 500)
    os.makedirs(directory, exist_ok=True)
    entries = []
    progress = keras.utils.Progbar(len(stages)) if verbose else None
    for index, stage in enumerate(stages):
        name = f"{stem}_stage{index}.tflite"
        result = to_tflite(
            stage,
            os.path.join(directory, name),
            target=target,
            calibration_data=samples,
            verification_data=samples[:64],
            latency_runs=0,
        )
        entries.append(
            {
                "file": name,
                "exit": model.exit_names[index] if index < len(model.exit_names) else None,
                "checks": [check.to_dict() for check in result.checks],
            }
        )
        if index < len(stages) - 1:
            samples = np.concatenate(
                [
                    keras.ops.convert_to_numpy(stage(samples[i : i + 256])[stages_lib.FEATURES])
                    for i in range(0, len(samples), 256)
                ]
            )
        if progress is not None:
            progress.add(1)
    measure_latencies(entries, directory, latency_runs)
    content = {
        "kind": manifest_lib.STAGES_KIND,
        "model": stem,
        "target": target,
        "from_logits": bool(model.from_logits),
        "threshold": threshold,
        "stages": entries,
    }
    path = manifest_lib.write_manifest(os.path.join(directory, f"{stem}_stages.json"), content)
    return {**manifest_lib.read_manifest(path, manifest_lib.STAGES_KIND), "manifest_path": path}
