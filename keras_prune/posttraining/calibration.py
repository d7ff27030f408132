"""Calibration data: the examples a post-training method runs through the model to see its
activations, cut into batches and checked against the model's inputs.

Accepted, as Keras's `fit` accepts them: an array (or a list / dict of arrays for a model with
several inputs), a tuple `(x, y)` or `(x, y, sample_weight)` (only `x` is used), or any other
iterable of batches (a `tf.data.Dataset`, a generator, a `keras.utils.PyDataset`) whose elements
are `x` or `(x, y, ...)`.
"""

import dataclasses
import numbers

import keras
import numpy as np

from keras_prune.graph import tracing


def _is_array(value):
    # Tensors of another framework count too: Keras' fit reads a tf.data.Dataset on every
    # backend, so its batches are TensorFlow tensors on JAX or torch.
    return (
        isinstance(value, np.ndarray)
        or keras.ops.is_tensor(value)
        or all(hasattr(value, name) for name in ("__array__", "shape", "dtype"))
    )


def _is_structure(value):
    """An `x` Keras would take as is: an array, or a list / dict of arrays."""
    if _is_array(value):
        return True
    if isinstance(value, dict):
        return bool(value) and all(_is_array(item) for item in value.values())
    if isinstance(value, list):
        return bool(value) and all(_is_array(item) for item in value)
    return False


def _inputs_of(element):
    """`x` of one element of a dataset or of the data itself: `(x, y, ...)` -> x."""
    if isinstance(element, tuple) and element:
        return element[0]
    return element


def _numpy(x):
    return keras.tree.map_structure(lambda value: np.asarray(keras.ops.convert_to_numpy(value)), x)


def _first_size(x):
    return int(keras.tree.flatten(x)[0].shape[0])


@dataclasses.dataclass
class Calibration:
    """Calibration data cut into batches.

    Attributes:
        batches: the batches, each an `x` structured as the model's input (NumPy arrays).
        num_samples: examples in all batches.
    """

    batches: list
    num_samples: int

    def flat(self, index):
        """Batch `index` as a flat list of arrays, in the order of the model's inputs."""
        return keras.tree.flatten(self.batches[index])


def _expected_inputs(model):
    """`model.input` (the structure of its symbolic inputs), or None for a model without one."""
    if not tracing.is_graph_model(model):
        return None
    try:
        return model.input
    except (AttributeError, ValueError):
        # A Sequential that was never called has `inputs` but no `input` structure.
        inputs = list(getattr(model, "inputs", None) or [])
        if not inputs:
            return None
        return inputs[0] if len(inputs) == 1 else inputs


def _check_structure(x, expected, model, caller):
    """Raise, naming the input, if `x` does not fit `expected` (the model's symbolic inputs)."""
    if isinstance(expected, dict):
        if not isinstance(x, dict):
            raise ValueError(
                f"{caller}: model {model.name!r} takes a dict of inputs {sorted(expected)}; "
                f"`calibration_data` must give one too. Received: {type(x).__name__}"
            )
        missing, extra = sorted(set(expected) - set(x)), sorted(set(x) - set(expected))
        if missing or extra:
            raise ValueError(
                f"{caller}: `calibration_data` must have the keys of model {model.name!r}'s "
                f"inputs {sorted(expected)}. Missing: {missing}; not inputs of the model: {extra}"
            )
        pairs = [(key, x[key], expected[key]) for key in sorted(expected)]
    else:
        specs = keras.tree.flatten(expected)
        given = keras.tree.flatten(x)
        if len(given) != len(specs):
            raise ValueError(
                f"{caller}: model {model.name!r} takes {len(specs)} input(s); `calibration_data` "
                f"gives {len(given)} array(s) per batch. Pass x as the model's `predict` takes it."
            )
        pairs = [(spec.name, array, spec) for spec, array in zip(specs, given, strict=True)]
    for name, array, spec in pairs:
        wanted = tuple(spec.shape)
        shape = tuple(array.shape)
        fits = len(shape) == len(wanted) and all(
            want is None or want == have for want, have in zip(wanted[1:], shape[1:], strict=True)
        )
        if not fits:
            described = "(batch, " + ", ".join("any" if d is None else str(d) for d in wanted[1:])
            raise ValueError(
                f"{caller}: `calibration_data` of the wrong shape for input {name!r} of model "
                f"{model.name!r}: expected {described}), received {shape}."
            )


def calibration_batches(
    calibration_data, model, batch_size=32, caller="kp.posttraining.prune_posttraining"
):
    """Cut `calibration_data` into batches of `model`'s inputs, checking their structure and
    shapes.

    Args:
        calibration_data: x, `(x, y)`, or an iterable of batches (see the module docstring).
        model: the model the batches will be fed to.
        batch_size: examples per batch when `calibration_data` holds arrays.
        caller: the function name errors start with.

    Returns:
        A `Calibration`.

    Example:

    ```python
    calibration = kp.posttraining.calibration_batches(x, model, batch_size=32)
    len(calibration.batches)   # 2
    ```
    """
    if calibration_data is None:
        raise ValueError(
            f"{caller} needs `calibration_data`: examples of the model's inputs (e.g. 128 "
            "training examples) to measure the activations it prunes by. Received: "
            "calibration_data=None"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise ValueError(
            f"Expected `batch_size` to be a positive integer. Received: batch_size={batch_size!r}"
        )
    if batch_size < 1:
        raise ValueError(
            f"Expected `batch_size` to be a positive integer. Received: batch_size={batch_size}"
        )
    expected = _expected_inputs(model)
    x = _inputs_of(calibration_data)
    if _is_structure(x):
        x = _numpy(x)
        size = _first_size(x)
        batches = [
            keras.tree.map_structure(lambda array, s=start: array[s : s + batch_size], x)
            for start in range(0, size, batch_size)
        ]
    elif isinstance(calibration_data, (str, bytes, numbers.Number)) or not hasattr(
        calibration_data, "__iter__"
    ):
        raise TypeError(
            f"{caller}: expected `calibration_data` to be an array, a list or dict of arrays, a "
            "tuple (x, y), or an iterable of batches such as a tf.data.Dataset. Received: "
            f"calibration_data={calibration_data!r} (of type {type(calibration_data).__name__})"
        )
    else:
        batches = []
        for element in calibration_data:
            inputs = _inputs_of(element)
            if not _is_structure(inputs):
                raise TypeError(
                    f"{caller}: every batch of `calibration_data` must be x or (x, y) with x an "
                    "array or a list / dict of arrays. Received a batch of type "
                    f"{type(inputs).__name__}"
                )
            batches.append(_numpy(inputs))
    batches = [batch for batch in batches if _first_size(batch) > 0]
    if not batches:
        raise ValueError(
            f"{caller}: `calibration_data` holds no examples. Pass at least one (typically "
            "64-512) example of the model's inputs."
        )
    if expected is not None:
        for batch in batches:
            _check_structure(batch, expected, model, caller)
    return Calibration(batches, sum(_first_size(batch) for batch in batches))
