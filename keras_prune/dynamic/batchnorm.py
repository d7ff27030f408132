"""Re-estimate BatchNormalization statistics of a model on calibration data.

A narrower sub-network sees different activation statistics than the full network it shares
weights with, so each materialised width needs its own moving mean and variance (universally
slimmable networks, Yu & Huang 2019, "BN calibration"). The statistics are set to the average
of the batch statistics over the calibration data: the model runs in training mode with each
layer's momentum set to `1 - 1/i` at batch `i` (a cumulative average), then the momenta are
restored. Only moving statistics change; trainable weights are untouched.
"""

import keras
import numpy as np


def calibration_batches(calibration_data, batch_size=64):
    """Input batches from `calibration_data`: an array (`x`), a tuple `(x, y)` / `(x, y, w)`
    or an iterable of such batches (a tf.data.Dataset)."""
    if isinstance(calibration_data, tuple) and calibration_data:
        calibration_data = calibration_data[0]
    if isinstance(calibration_data, (np.ndarray, list)) or hasattr(calibration_data, "shape"):
        array = np.asarray(calibration_data)
        if array.ndim == 0 or len(array) == 0:
            raise ValueError(
                "Expected `calibration_data` to hold at least one sample. "
                f"Received an array of shape {array.shape}."
            )
        for start in range(0, len(array), batch_size):
            yield array[start : start + batch_size]
        return
    if calibration_data is None or not hasattr(calibration_data, "__iter__"):
        raise ValueError(
            "Expected `calibration_data` as inputs `x`, `(x, y)` or an iterable of batches. "
            f"Received: calibration_data={calibration_data!r}"
        )
    for batch in calibration_data:
        yield batch[0] if isinstance(batch, tuple) else batch


def _batchnorms(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _batchnorms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def recalibrate_batchnorm(model, calibration_data, *, batch_size=64):
    """Set every BatchNormalization's moving statistics to their average over the data.

    Args:
        model: a Keras model (changed in place).
        calibration_data: `x`, `(x, y)` or an iterable of batches, e.g. 1000 training samples.
        batch_size: batch size for arrays (the batch statistics are averaged per batch).

    Returns:
        The number of BatchNormalization layers re-estimated.

    Example:

    ```python
    pretrained = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    slim = kp.dynamic.SlimmableModel(pretrained, widths=[0.25, 0.5, 1.0])
    slim.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    slim.fit(x, y, epochs=1, verbose=0)
    half = kp.shrink(slim, width=0.5)
    kp.dynamic.recalibrate_batchnorm(half, x)
    ```
    """
    layers = list(_batchnorms(model))
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    try:
        for number, batch in enumerate(calibration_batches(calibration_data, batch_size), 1):
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / number
            model(batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return len(layers)
