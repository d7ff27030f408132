"""Keras model -> TFLite bytes, with the converter settings each target needs.

The model goes through a SavedModel written by `keras.export.ExportArchive` with a batch-1
signature, then `TFLiteConverter.from_saved_model`: the supported path that freezes the
weights into constants. (Converting a concrete function together with the model keeps the
weights as resource variables, so Dense becomes READ_VARIABLE + BATCH_MATMUL and nothing is
sparse-encoded; without the model it freezes, but through a path TensorFlow deprecates.)
Only TFLite builtin ops are allowed: a file needing TensorFlow's Select ops would run neither
on TFLM nor on a plain LiteRT build.
"""

import re
import tempfile

import keras
import numpy as np

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


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def keras_prune_layers(model):
    """Names of the layers in `model` (nested models included) that are keras_prune classes."""
    return [
        layer.name
        for layer in _all_layers(model)
        if type(layer).__module__.split(".")[0] == "keras_prune"
    ]


def strip_wrappers(model):
    """`(model, stripped)`: `model` with keras_prune wrappers removed, and whether any were.

    `keras_prune.strip` is imported here, not at module level, so the exporter stays usable
    (for plain models) without the pruning modules.
    """
    if not keras_prune_layers(model):
        return model, False
    from keras_prune.pruning import strip

    return strip(model), True


def input_spec(model):
    """The batch-1 `tf.TensorSpec` of the model's single input."""
    import tensorflow as tf

    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            "Expected a built model with known inputs (a Sequential with `keras.Input`, or a "
            f"Functional model). Received: {type(model).__name__} without `inputs`. Build it "
            "with `keras.Input(shape)` or call it once on data before exporting."
        )
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            "Expected a model with one input and one output. Received: "
            f"{len(inputs)} inputs and {len(model.outputs)} outputs."
        )
    shape = tuple(inputs[0].shape[1:])
    if any(dim is None for dim in shape):
        raise ValueError(
            "Expected a fixed input shape (TFLM and XNNPACK plan memory ahead). Received: "
            f"input shape (batch, {', '.join(str(d) for d in shape)}). Rebuild the model with "
            "`keras.Input(shape=...)` giving every dimension."
        )
    return tf.TensorSpec((1, *shape), tf.float32, name="input")


def _flex_ops(message):
    found = re.search(r"TF Select ops: ([^\n]+)", message)
    return found.group(1).strip() if found else None


def convert(model, target, representative_data=None):
    """Converts a plain Keras model to TFLite bytes for `target` (a `Target`).

    Args:
        model: Keras model without keras_prune wrappers, TensorFlow backend.
        target: A `keras_prune.export.targets.Target`.
        representative_data: Float array `(num_samples, *input_shape)`; required when
            `target.quantize`.

    Example:

    ```python
    from keras_prune.export.targets import get_target
    tflite_bytes = convert(model, get_target("mobile"))
    ```
    """
    import tensorflow as tf

    spec = input_spec(model)
    with tempfile.TemporaryDirectory() as saved_model:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda x: model(x, training=False), input_signature=[spec])
        archive.write_out(saved_model, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model)
        _configure(converter, target, representative_data)
        try:
            return converter.convert()
        except Exception as error:  # The converter raises its own ConverterError class.
            flex = _flex_ops(str(error))
            if flex:
                raise ValueError(
                    f"The model uses TensorFlow ops with no TFLite builtin kernel: {flex}. "
                    "Replace the layers producing them; TFLite Select ops are not exported "
                    "since neither TFLM nor a plain LiteRT build can run them."
                ) from None
            raise


def _configure(converter, target, representative_data):
    import tensorflow as tf

    optimizations = []
    if target.quantize:
        samples = np.asarray(representative_data, dtype=np.float32)[:MAX_CALIBRATION_SAMPLES]

        def calibration():
            for sample in samples:
                yield [sample[None]]

        optimizations.append(tf.lite.Optimize.DEFAULT)
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    else:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if target.sparse_encoding:
        optimizations.append(tf.lite.Optimize.EXPERIMENTAL_SPARSITY)
    converter.optimizations = optimizations
