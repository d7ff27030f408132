"""Export to TFLite for phones and microcontrollers, checked on the runtimes that will run it.

`to_tflite` strips keras_prune wrappers, converts with the settings of the chosen target, runs
the file on LiteRT (with and without XNNPACK) or TensorFlow Lite Micro, compares it with Keras,
measures it, and only then writes it. `inspect_tflite` reports on any `.tflite` file.
"""

import os

import numpy as np

from keras_prune.export import convert as _convert
from keras_prune.export import mcu as _mcu
from keras_prune.export import metadata as _metadata
from keras_prune.export import verify as _verify
from keras_prune.export.files import check_writable, write_atomically
from keras_prune.export.flatbuffer import read_model
from keras_prune.export.inspection import InspectReport, check_xnnpack_sparse, inspect_tflite
from keras_prune.export.policy import xnnpack_filter
from keras_prune.export.result import ExportResult
from keras_prune.export.targets import TARGETS, Target, get_target
from keras_prune.export.verify import RuntimeCheck, find_min_arena, measure_latency, predict

__all__ = [
    "TARGETS",
    "ExportResult",
    "ExportVerificationError",
    "InspectReport",
    "RuntimeCheck",
    "Target",
    "check_xnnpack_sparse",
    "find_min_arena",
    "get_target",
    "inspect_tflite",
    "measure_latency",
    "predict",
    "read_model",
    "to_tflite",
    "xnnpack_filter",
]

# Samples compared with Keras when no verification data is given: enough to exercise every
# class of a small classifier, few enough to keep TFLM's one-process-per-run check quick.
DEFAULT_VERIFICATION_SAMPLES = 64


class ExportVerificationError(RuntimeError):
    """The exported file disagrees with the Keras model beyond tolerance; nothing was written.

    Attributes:
        result: The `ExportResult` that would have been returned (its path was not written).
    """

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def _check_data(data, model, argument):
    array = np.asarray(data)
    if array.dtype.kind not in "fiu":
        raise ValueError(
            f"Expected `{argument}` to hold real numbers (float or integer). "
            f"Received: dtype={array.dtype}"
        )
    expected = tuple(model.inputs[0].shape[1:])
    if array.ndim != len(expected) + 1 or tuple(array.shape[1:]) != expected or not len(array):
        shape = ", ".join(str(d) for d in expected)
        raise ValueError(
            f"Expected `{argument}` of shape (num_samples, {shape}) with num_samples >= 1. "
            f"Received: {argument}.shape={array.shape}"
        )
    return array.astype(np.float32)


def _check_labels(labels, model):
    if labels is None:
        return None
    if isinstance(labels, str) or not all(isinstance(label, str) for label in labels):
        raise ValueError(
            f"Expected `labels` to be a list of class names (strings). Received: {labels!r}"
        )
    labels = list(labels)
    units = model.outputs[0].shape[-1]
    if len(labels) != units:
        raise ValueError(
            f"Expected one label per output unit ({units}). Received: {len(labels)} labels."
        )
    return labels


def _check_normalization(normalization):
    if normalization is None:
        return None
    if not isinstance(normalization, list | tuple) or len(normalization) != 2:
        raise ValueError(
            f"Expected `normalization` as (mean, std). Received: normalization={normalization!r}"
        )
    mean, std = (np.atleast_1d(np.asarray(value, dtype=np.float64)) for value in normalization)
    if np.any(std <= 0):
        raise ValueError(
            f"Expected every std in `normalization` > 0. Received: normalization={normalization!r}"
        )
    return [mean.tolist(), std.tolist()]


def _weight_nonzeros(model):
    total, nonzero = 0, 0
    for weight in model.weights:
        if len(weight.shape) >= 2:
            values = np.asarray(weight.numpy())
            total += values.size
            nonzero += int(np.count_nonzero(values))
    return total, nonzero


def _file_nonzeros(info):
    return sum(
        round(tensor.density * tensor.size)
        for tensor in info.tensors
        if tensor.constant and len(tensor.shape) >= 2 and tensor.density is not None
    )


def _notes(info, target, model):
    notes = []
    total, keras_nonzero = _weight_nonzeros(model)
    if total and keras_nonzero < total:
        file_nonzero = _file_nonzeros(info)
        kept = "kept" if file_nonzero <= keras_nonzero else "LOST (zeros became non-zero)"
        notes.append(
            f"sparsity {kept}: {100 * (1 - keras_nonzero / total):.1f}% of weights zero in "
            f"Keras, {100 * (1 - file_nonzero / total):.1f}% in the file"
        )
    densified = info.op_counts().get("DENSIFY", 0)
    if densified:
        notes.append(
            f"{densified} tensor(s) are stored sparse but densified at load (DENSIFY): "
            "smaller file, dense speed"
        )
    sparse_fc = [
        info.tensors[op.inputs[1]]
        for op in info.ops
        if op.name == "FULLY_CONNECTED" and info.tensors[op.inputs[1]].sparse
    ]
    if sparse_fc:
        notes.append(
            f"{len(sparse_fc)} FULLY_CONNECTED op(s) run LiteRT's sparse kernel "
            "(XNNPACK leaves them to the built-in kernels)"
        )
    if target.sparse_encoding and not info.sparse_tensors:
        notes.append(
            "no tensor was sparse-encoded: the converter needs >= 30% exact zeros in a "
            "rank-2/4 weight (prune the model first)"
        )
    return notes


def to_tflite(
    model,
    path,
    *,
    target="mobile",
    representative_data=None,
    labels=None,
    normalization=None,
    name=None,
    version="1",
    description="",
    verification_data=None,
    on_mismatch="raise",
    latency_runs=50,
):
    """Converts a Keras model to a verified `.tflite` file for phones or microcontrollers.

    keras_prune wrappers are stripped first. The file is run on the runtime of its target and
    compared with Keras before anything is written; `"mcu"` also writes `model_data.cc`,
    `model_data.h` (16-byte aligned C array, its length and arena size) and `model_data_ops.h`
    (registers exactly the model's ops) next to the `.tflite` file. Either every file is
    written or none is.

    Args:
        model: A built Keras model (TensorFlow backend) with one input of fixed shape and one
            output, pruned (wrapped or stripped) or not.
        path: Output `.tflite` path; its directory is created if missing.
        target: `"mobile"` (float32, sparse-encoded, XNNPACK), `"mobile-int8"` (full-integer,
            sparse-encoded) or `"mcu"` (full-integer, dense storage, TFLM).
        representative_data: Float array `(num_samples, *input_shape)` of typical inputs;
            required by the int8 targets (calibration, at most 500 samples used).
        labels: Class names, one per output unit (metadata; enables the label file).
        normalization: `(mean, std)` the app applies to raw inputs (metadata).
        name: Model name in the metadata; default: `model.name`.
        version: Model version in the metadata.
        description: Model description in the metadata.
        verification_data: Inputs compared with Keras; default: the first 64 rows of
            `representative_data`, or 64 standard-normal samples.
        on_mismatch: `"raise"` (default: raise `ExportVerificationError`, write nothing) or
            `"warn"` (write anyway; the result shows FAIL).
        latency_runs: Timed invocations per latency figure (median reported).

    Returns:
        An `ExportResult`.

    Example:

    ```python
    import keras, numpy as np
    import keras_prune as kp
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    x = np.random.rand(100, 8, 8, 1).astype("float32")
    result = kp.export.to_tflite(model, "build/model.tflite", target="mcu",
                                 representative_data=x)
    print(result)
    ```
    """
    import keras

    target = get_target(target)
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model. Received: {type(model).__name__}")
    _convert.check_backend()
    if on_mismatch not in ("raise", "warn"):
        raise ValueError(
            f'Expected `on_mismatch` "raise" or "warn". Received: on_mismatch={on_mismatch!r}'
        )
    if not isinstance(latency_runs, int) or latency_runs < 1:
        raise ValueError(f"Expected `latency_runs` >= 1. Received: latency_runs={latency_runs!r}")
    _convert.input_spec(model)
    if target.quantize and representative_data is None:
        raise ValueError(
            f"Expected `representative_data` for target={target.name!r}: full-integer "
            "quantization calibrates activation ranges on typical inputs. Pass an array of "
            "shape (num_samples, *input_shape), e.g. 100-500 training samples."
        )
    calibration = (
        None
        if representative_data is None
        else _check_data(representative_data, model, "representative_data")
    )
    if verification_data is not None:
        samples = _check_data(verification_data, model, "verification_data")
    elif calibration is not None:
        samples = calibration[:DEFAULT_VERIFICATION_SAMPLES]
    else:
        shape = (DEFAULT_VERIFICATION_SAMPLES, *model.inputs[0].shape[1:])
        samples = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    labels = _check_labels(labels, model)
    normalization = _check_normalization(normalization)
    path = check_writable(path)

    wrapped = model
    model, stripped = _convert.strip_wrappers(model)
    data = _convert.convert(model, target, calibration)
    info = read_model(data)
    if target.runtime == "tflm":
        missing = _mcu.unsupported_ops(info.op_names)
        if missing:
            raise ValueError(
                f"Expected only ops TensorFlow Lite Micro implements. The converted model uses "
                f"{', '.join(missing)}, which TFLM lacks. Replace the layers producing them "
                "(the op names appear in `keras-prune inspect`)."
            )

    record = _metadata.pruning_record(model, wrapped if stripped else None)
    data, metadata_status = _metadata.add_metadata(
        data,
        name=name or model.name,
        version=str(version),
        description=description,
        input_shape=(1, *model.inputs[0].shape[1:]),
        labels=labels,
        normalization=normalization,
        record=record,
    )
    info = read_model(data)

    # Called directly, not through model.predict: predict traces a new tf.function for every
    # model it sees, and TensorFlow warns about retracing after a few exports.
    expected = np.concatenate(
        [
            keras.ops.convert_to_numpy(model(samples[start : start + 256], training=False))
            for start in range(0, len(samples), 256)
        ]
    )
    input_tensor = info.tensors[info.inputs[0]]
    output_tensor = info.tensors[info.outputs[0]]
    output_scale = output_tensor.quantization["scale"][0] if target.quantize else None
    checks, arena = [], None
    for xnnpack in (True, False):
        outputs = predict(data, samples, runtime="litert", xnnpack=xnnpack)
        checks.append(
            _verify.compare(
                expected,
                outputs,
                runtime="litert+xnnpack" if xnnpack else "litert-builtin",
                quantized=target.quantize,
                output_scale=output_scale,
            )
        )
    if target.runtime == "tflm":
        arena = find_min_arena(data)
        outputs = predict(data, samples, runtime="tflm", arena_bytes=arena)
        checks.append(
            _verify.compare(
                expected,
                outputs,
                runtime="tflm",
                quantized=True,
                output_scale=output_scale,
            )
        )
    latency = {
        "xnnpack": measure_latency(data, xnnpack=True, runs=latency_runs),
        "builtin": measure_latency(data, xnnpack=False, runs=latency_runs),
    }

    files = {path: data}
    if target.runtime == "tflm":
        directory = os.path.dirname(path)
        for file_name, text in _mcu.c_sources(data, info.op_names, arena_bytes=arena).items():
            files[os.path.join(directory, file_name)] = text
    result = ExportResult(
        path=path,
        target=target.name,
        target_description=target.description,
        file_bytes=info.file_bytes,
        gzip_bytes=info.gzip_bytes,
        size_breakdown=info.size_breakdown(),
        ops=info.op_counts(),
        sparse_tensors=[
            {"name": t.name, "shape": list(t.shape), "encoding": t.encoding, "density": t.density}
            for t in info.sparse_tensors
        ],
        input_quantization=input_tensor.quantization if target.quantize else None,
        output_quantization=output_tensor.quantization if target.quantize else None,
        checks=checks,
        latency_us=latency,
        arena_bytes=arena,
        extra_files=[file for file in files if file != path],
        stripped_wrappers=stripped,
        metadata=metadata_status,
        notes=_notes(info, target, model),
    )
    if not result.passed and on_mismatch == "raise":
        raise ExportVerificationError(
            "The exported model disagrees with Keras beyond tolerance; no file was written. "
            "Pass on_mismatch='warn' to write it anyway.\n" + str(result),
            result,
        )
    write_atomically(files)
    return result
