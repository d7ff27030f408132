"""Evaluation data for the automated tools: `(x, y)` arrays checked against the model and
sampled to a fixed number of examples (sensitivity curves and search trials evaluate often, so
they use a sample, the same one every time)."""

import keras
import numpy as np

from keras_prune.core import validation


def _as_arrays(value):
    return keras.tree.map_structure(lambda item: np.asarray(item), value)


def _first_dimension(structure):
    return len(keras.tree.flatten(structure)[0])


def _gather(batches, limit):
    """Concatenates `(x, y)` batches of an iterable (tf.data, generator) up to `limit` examples."""
    xs, ys, count = [], [], 0
    for batch in batches:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError(
                "Expected `validation_data` batches of (x, y). Received a batch of type "
                f"{type(batch).__name__}."
            )
        x, y = _as_arrays(batch[0]), _as_arrays(batch[1])
        xs.append(x)
        ys.append(y)
        count += _first_dimension(x)
        if limit is not None and count >= limit:
            break
    if not xs:
        raise ValueError("Expected at least one batch in `validation_data`. Received none.")

    def concatenate(*parts):
        return np.concatenate(parts)

    return keras.tree.map_structure(concatenate, *xs), keras.tree.map_structure(concatenate, *ys)


def _check_inputs(model, x, name):
    """Raises a ValueError naming `name` when `x` does not match the model's inputs."""
    flat = keras.tree.flatten(x)
    expected = [tuple(tensor.shape) for tensor in model.inputs]
    if len(flat) != len(expected):
        raise ValueError(
            f"Expected `{name}` to hold {len(expected)} input array(s) for model "
            f"{model.name!r}. Received: {len(flat)}"
        )
    for array, shape in zip(flat, expected, strict=True):
        received = tuple(np.shape(array))
        fits = len(received) == len(shape) and all(
            want is None or want == got for want, got in zip(shape[1:], received[1:], strict=True)
        )
        if not fits:
            wanted = "(num_samples, " + ", ".join(str(d) for d in shape[1:]) + ")"
            raise ValueError(
                f"Expected `{name}` inputs of shape {wanted} for model {model.name!r}. "
                f"Received: an array of shape {received}"
            )


def evaluation_arrays(model, data, *, name="validation_data", samples=None, seed=0):
    """`(x, y)` NumPy arrays from `data`, checked against `model`'s inputs, with at most
    `samples` examples (a fixed random subset).

    Args:
        model: the model the data is for.
        data: `(x, y)` arrays, or an iterable / `tf.data.Dataset` of `(x, y)` batches.
        name: the argument's name, for error messages.
        samples: keep at most this many examples (None: all).
        seed: which subset.

    Example:

    ```python
    x, y = evaluation_arrays(model, (x_test, y_test), samples=256)
    ```
    """
    if samples is not None:
        samples = validation.check_int("samples", samples, minimum=1)
    if isinstance(data, (tuple, list)) and len(data) == 2 and not _looks_like_batches(data):
        x, y = _as_arrays(data[0]), _as_arrays(data[1])
    elif isinstance(data, (tuple, list, np.ndarray)) or data is None:
        raise ValueError(
            f"Expected `{name}` to be a pair (x, y) of arrays or a dataset of (x, y) batches. "
            f"Received: {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else "")
        )
    else:
        x, y = _gather(data, samples)
    _check_inputs(model, x, name)
    count = _first_dimension(x)
    if count == 0 or _first_dimension(y) != count:
        raise ValueError(
            f"Expected `{name}` to hold as many targets as inputs (and at least one). "
            f"Received: {count} inputs, {_first_dimension(y)} targets"
        )
    if samples is not None and count > samples:
        chosen = np.sort(np.random.default_rng(seed).choice(count, samples, replace=False))
        x = keras.tree.map_structure(lambda array: array[chosen], x)
        y = keras.tree.map_structure(lambda array: array[chosen], y)
    return x, y


def _looks_like_batches(data):
    """A list of two (x, y) tuples is two batches, not one (x, y) pair."""
    return all(isinstance(item, tuple) and len(item) == 2 for item in data)


def digest_arrays(*structures):
    """A short hash of arrays' shapes, dtypes and bytes (cache keys)."""
    import hashlib

    digest = hashlib.sha256()
    for structure in structures:
        for array in keras.tree.flatten(structure):
            array = np.ascontiguousarray(array)
            digest.update(str((array.shape, array.dtype.str)).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:16]
