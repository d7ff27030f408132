"""`export_widths`: one verified `.tflite` file per trained width and a manifest.

Every width is materialised (`SlimmableModel.at_width`: `kp.shrink(model, width=w)` with its
BatchNormalization statistics re-estimated), exported with `kp.export.to_tflite` (converted,
run on LiteRT and compared with Keras, timed) and named `<stem>_w<percent>.tflite`, e.g.
`digits_w025.tflite`. `<stem>_widths.json` lists the files with their measured latencies and
parameter counts; `kp.dynamic.WidthPicker` reads it to choose a width for a latency budget.
"""

import os

import keras
import numpy as np

from keras_prune.core import validation
from keras_prune.dynamic import manifest as manifest_lib
from keras_prune.dynamic import runtime
from keras_prune.dynamic.batchnorm import calibration_batches
from keras_prune.surgery import width as width_lib


def width_file_name(stem, width):
    """`<stem>_w<percent>.tflite`: `("digits", 0.25)` -> `"digits_w025.tflite"`."""
    return f"{stem}_w{int(round(width * 100)):03d}.tflite"


def sample_array(calibration_data, count):
    batches, total = [], 0
    for batch in calibration_batches(calibration_data):
        batch = np.asarray(batch)
        batches.append(batch)
        total += len(batch)
        if total >= count:
            break
    return np.concatenate(batches)[:count]


def measure_latencies(entries, directory, runs):
    """Latencies of the verified files, interleaved so that they compare with each other."""
    paths = [os.path.join(directory, entry["file"]) for entry in entries]
    for entry in entries:
        entry["latency_us"] = {}
        entry["latency_spread_us"] = {}
    if not runs:
        return
    for xnnpack, key in ((True, "xnnpack"), (False, "builtin")):
        for entry, stats in zip(
            entries, runtime.measure_interleaved(paths, xnnpack=xnnpack, runs=runs), strict=True
        ):
            entry["latency_us"][key] = stats["median"]
            entry["latency_spread_us"][key] = [stats["low"], stats["high"]]


def export_widths(
    model,
    directory,
    *,
    calibration_data,
    widths=None,
    stem=None,
    target="mobile",
    latency_runs=50,
    verbose=0,
):
    """Export every trained width of a `SlimmableModel` as its own verified `.tflite` file.

    Args:
        model: a trained `kp.dynamic.SlimmableModel`.
        directory: folder for the files and the manifest (created if missing).
        calibration_data: training inputs (`x`, `(x, y)` or batches): BatchNormalization
            statistics of each width are re-estimated on them, and their first samples are
            the int8 targets' representative data and the verification inputs.
        widths: the widths to export (default: all trained widths); each must be trained.
        stem: file name stem; default: the backbone's name.
        target: a `kp.export.to_tflite` target: "mobile", "mobile-int8" or "mcu".
        latency_runs: timed LiteRT invocations per width and round (5 rounds alternating
            between the widths, in this process, on the verified files; the median of the
            round medians is stored, with XNNPACK and with the built-in kernels); 0 skips
            timing.
        verbose: 1 shows a progress bar.

    Returns:
        The manifest (a dict, also written to `<stem>_widths.json`): `{"kind", "model",
        "target", "widths": [{"width", "file", "path", "params", "latency_us": {"xnnpack",
        "builtin"}, "latency_spread_us", "checks"}]}`.

    Example:

    ```python
    # docs: slow (TFLite export, verified on LiteRT)
    pretrained = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    slim = kp.dynamic.SlimmableModel(pretrained, widths=[0.25, 0.5, 1.0])
    slim.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    slim.fit(x, y, epochs=1, verbose=0)
    manifest = kp.dynamic.export_widths(slim, "build/slim", calibration_data=x)
    picker = kp.dynamic.WidthPicker(manifest["manifest_path"])
    ```
    """
    from keras_prune.export import to_tflite

    if not hasattr(model, "trained_widths"):
        raise TypeError(
            f"Expected a kp.dynamic.SlimmableModel. Received: model={type(model).__name__}"
        )
    directory = validation.check_path("directory", directory)
    chosen = (
        model.trained_widths
        if widths is None
        else [width_lib.check_trained_width(width, model.trained_widths) for width in widths]
    )
    stem = stem or model.backbone.name
    samples = sample_array(calibration_data, 500)
    os.makedirs(directory, exist_ok=True)
    entries = []
    progress = keras.utils.Progbar(len(chosen)) if verbose else None
    for width in chosen:
        small = model.at_width(width, calibration_data)
        name = width_file_name(stem, width)
        result = to_tflite(
            small,
            os.path.join(directory, name),
            target=target,
            calibration_data=samples,
            verification_data=samples[:64],
            latency_runs=0,
        )
        entries.append(
            {
                "width": width,
                "file": name,
                "params": int(small.count_params()),
                "checks": [check.to_dict() for check in result.checks],
            }
        )
        if progress is not None:
            progress.add(1)
    measure_latencies(entries, directory, latency_runs)
    content = {
        "kind": manifest_lib.WIDTHS_KIND,
        "model": stem,
        "target": target,
        "widths": entries,
    }
    path = manifest_lib.write_manifest(os.path.join(directory, f"{stem}_widths.json"), content)
    return {**manifest_lib.read_manifest(path, manifest_lib.WIDTHS_KIND), "manifest_path": path}
