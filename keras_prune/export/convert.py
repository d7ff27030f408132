"""Keras model -> TFLite bytes, with the converter settings each target needs.

The model goes through a SavedModel written by `keras.export.ExportArchive` with a batch-1
signature that names every input and output (see `signature.py`), then
`TFLiteConverter.from_saved_model`: the supported path that freezes the weights into
constants. (Converting a concrete function together with the model keeps the weights as
resource variables, so Dense becomes READ_VARIABLE + BATCH_MATMUL and nothing is sparse-encoded;
without the model it freezes, but through a path TensorFlow deprecates.) Only TFLite builtin ops
are allowed: a file needing TensorFlow's Select ops would run neither on TFLM nor on a plain
LiteRT build.
"""

import json
import os
import re

import keras
import numpy as np

from keras_prune.export import isolation
from keras_prune.export.errors import ConversionError
from keras_prune.export.files import temporary_directory
from keras_prune.export.signature import Signature
from keras_prune.pruning.prune_strip import strip

# Calibration uses at most this many samples: more changes the int8 ranges very little and
# costs conversion time linearly.
MAX_CALIBRATION_SAMPLES = 500


def check_backend():
    """Raises a `RuntimeError` unless Keras runs on the TensorFlow backend (TFLite needs it)."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            "Exporting to TFLite needs the TensorFlow backend. Received: Keras backend "
            f"{backend!r}. Save the model (`model.save('model.keras')`) and export it in a "
            "process started with KERAS_BACKEND=tensorflow, e.g. `KERAS_BACKEND=tensorflow "
            "keras-prune export model.keras --target mobile --out build/`."
        )


def all_layers(model):
    """Every layer of `model`, nested models' layers included (the nested models too)."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def keras_prune_layers(model):
    """Names of the layers in `model` (nested models included) that are keras_prune classes."""
    return [
        layer.name
        for layer in all_layers(model)
        if type(layer).__module__.split(".")[0] == "keras_prune"
    ]


def strip_wrappers(model):
    """`(model, stripped)`: `model` with keras_prune wrappers removed, and whether any were."""
    if not keras_prune_layers(model):
        return model, False
    return strip(model), True


def fixed_signature(signature, *data):
    """`signature` with every open input dimension fixed by the first of `data` given.

    Args:
        signature: The model's `Signature`.
        *data: Flat lists of arrays (or None), e.g. representative then verification data.

    Raises:
        ValueError: a dimension stays open (TFLM and XNNPACK plan memory ahead).
    """
    for flat in data:
        if flat is not None and signature.open_dimensions:
            signature = signature.with_shapes(flat)
    if signature.open_dimensions:
        ports = ", ".join(port.describe() for port in signature.open_dimensions)
        raise ValueError(
            "Expected a fixed input shape (TFLM and XNNPACK plan memory ahead). Received open "
            f"dimensions in: {ports}. Pass `calibration_data` or `verification_data` shaped "
            "as the model will run (their shape fixes the open dimensions), or rebuild the "
            "model with `keras.Input(shape=...)` giving every dimension."
        )
    return signature


def write_saved_model(model, signature, directory):
    """Writes `model` as a SavedModel whose `serve` signature takes one sample (batch 1) per
    input and names its inputs and outputs after `signature`."""
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    specs = [
        tf.TensorSpec((1, *port.shape), tf.as_dtype(port.dtype), name=port.name)
        for port in signature.inputs
    ]

    def serve(*inputs):
        return signature.name_outputs(model(signature.pack(inputs), training=False))

    archive.add_endpoint("serve", serve, input_signature=specs)
    archive.write_out(directory, verbose=False)


def flex_ops(message):
    """The TensorFlow op names a converter error says need Select ops, or None."""
    found = re.search(r"TF Select ops: ([^\n]+)", message)
    return found.group(1).strip() if found else None


def _log_tail(path, lines=3):
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8", errors="replace") as handle:
        found = [
            line.strip()
            for line in handle
            if line.strip() and not line.startswith(("WARNING:", "I0000", "W0000"))
        ]
    return " | ".join(found[-lines:])


def _crash_cause(target):
    if target.quantize:
        return (
            "With int8 calibration this usually means an op the int8 converter cannot quantize "
            "(such as LSTM or another recurrent layer) or calibration data it cannot handle. "
            "Export this model with target='mobile' (float), or replace the layer."
        )
    return (
        "The model uses something the converter cannot handle; export parts of the model to "
        "find the layer, and report it to TensorFlow."
    )


def _converter_error(target, job, returncode):
    error_path = os.path.join(job, "error.json")
    if returncode == 0 and os.path.exists(os.path.join(job, "model.tflite")):
        return None
    if returncode > 0 and os.path.exists(error_path):
        with open(error_path, encoding="utf-8") as handle:
            message = json.load(handle)["message"]
        flex = flex_ops(message)
        if flex:
            return ConversionError(
                f"The model uses TensorFlow ops with no TFLite builtin kernel: {flex}. "
                "Replace the layers producing them; TFLite Select ops are not exported "
                "since neither TFLM nor a plain LiteRT build can run them."
            )
        lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
        return ConversionError(
            "TensorFlow's TFLite converter refused the model: "
            + (" | ".join(lines[-3:]) if lines else "no message")
        )
    log = _log_tail(os.path.join(job, "converter.log"))
    ended = isolation.describe_exit(returncode)
    if returncode < 0:
        return ConversionError(
            f"TensorFlow's TFLite converter crashed ({ended}) converting for target "
            f"{target.name!r} (stage convert; your process was not affected). "
            f"{_crash_cause(target)}" + (f" Converter log: {log}" if log else ""),
            signal=-returncode,
        )
    return ConversionError(
        f"TensorFlow's TFLite converter failed ({ended})" + (f": {log}" if log else ".")
    )


def convert(model, target, calibration_data=None, *, signature=None):
    """Converts a plain Keras model to TFLite bytes for `target` (a `Target`).

    The SavedModel is written here; TensorFlow's converter runs in a child process, so a crash
    in it (SIGSEGV on some int8 conversions) raises `ConversionError` instead of ending this
    process.

    Args:
        model: Keras model without keras_prune wrappers, TensorFlow backend.
        target: A `keras_prune.export.targets.Target`.
        calibration_data: Typical inputs (array, list or dict, like the model's inputs);
            required when `target.quantize`.
        signature: The model's `Signature` (default: read from the model); open dimensions are
            fixed by `calibration_data`.

    Raises:
        ConversionError: the converter refused the model or crashed.

    Example:

    ```python
    from keras_prune.export.targets import get_target
    tflite_bytes = convert(model, get_target("mobile"))
    ```
    """
    signature = signature or Signature(model)
    calibration = None
    if calibration_data is not None:
        calibration = signature.flatten(calibration_data, "calibration_data")
    signature = fixed_signature(signature, calibration)
    if target.quantize and calibration is None:
        raise ValueError(f"Expected `calibration_data` for target={target.name!r}.")
    return convert_checked(model, target, calibration, signature)


def convert_checked(model, target, calibration, signature):
    """`convert` for data already validated: `calibration` is one array per input of
    `signature` (fixed shapes), or None for float targets."""
    isolation.start_converter()
    with temporary_directory() as job:
        write_saved_model(model, signature, os.path.join(job, "saved_model"))
        settings = {
            "quantize": target.quantize,
            "sparse_encoding": target.sparse_encoding,
            "input_names": [port.name for port in signature.inputs],
        }
        with open(os.path.join(job, "settings.json"), "w", encoding="utf-8") as handle:
            json.dump(settings, handle)
        if target.quantize:
            np.savez(
                os.path.join(job, "calibration.npz"),
                **{f"i{i}": a[:MAX_CALIBRATION_SAMPLES] for i, a in enumerate(calibration)},
            )
        error = _converter_error(target, job, isolation.run_converter(job))
        if error is not None:
            raise error
        with open(os.path.join(job, "model.tflite"), "rb") as handle:
            return handle.read()


def as_numpy(values):
    """A Keras or TensorFlow tensor as a NumPy array."""
    return np.asarray(keras.ops.convert_to_numpy(values))
