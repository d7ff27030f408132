"""The named inputs and outputs of a Keras model, as they appear in its TFLite signature.

A Keras model may take one array, a list of arrays or a dict of arrays (keras-hub backbones
take `{"token_ids": ..., "padding_mask": ...}`) and return the same kinds of structure. The
converter orders a file's input and output tensors as it likes, so the exporter names every
input and output in the SavedModel signature and matches tensors by those names, never by
position. `Signature` holds the names, shapes and dtypes, validates user data against them
and packs flat arrays back into the structure the Keras model is called with.
"""

import dataclasses
import re

import keras
import numpy as np

# Generated integer inputs are drawn from {0, ..., _GENERATED_INT_HIGH - 1}: valid token ids,
# segment ids, masks and class indices whatever the vocabulary size.
_GENERATED_INT_HIGH = 2


@dataclasses.dataclass(frozen=True)
class Port:
    """One input or output of the model.

    Args:
        name: Name in the TFLite signature (a valid identifier, unique among the inputs or
            among the outputs).
        key: Name the user knows it by: the dict key, or the `keras.Input` name.
        shape: Shape without the batch dimension (None where the model leaves it open).
        dtype: Element type, e.g. `"float32"`, `"int32"`, `"bool"`.
    """

    name: str
    key: str
    shape: tuple
    dtype: str

    @property
    def is_float(self):
        return np.dtype(self.dtype).kind == "f"

    def describe(self):
        shape = ", ".join("None" if d is None else str(d) for d in self.shape)
        return f"{self.key!r} (num_samples, {shape}) {self.dtype}"


def _identifier(name, fallback):
    identifier = re.sub(r"\W", "_", str(name)).strip("_") or fallback
    return identifier if identifier[0].isalpha() else f"{fallback}_{identifier}"


def _unique(names):
    seen, unique = set(), []
    for name in names:
        candidate, suffix = name, 1
        while candidate in seen:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        seen.add(candidate)
        unique.append(candidate)
    return unique


def _structure(model, attribute):
    """`model.input` / `model.output` (dict, list or tensor); a Sequential's single tensor."""
    flat = getattr(model, attribute + "s")
    if isinstance(model, keras.Sequential):
        return flat[0]
    try:
        return getattr(model, attribute)
    except (AttributeError, ValueError):
        return flat[0] if len(flat) == 1 else list(flat)


def _keys(structure, tensors, default_prefix, layer_names=None):
    paths = [path for path, _ in keras.tree.flatten_with_path(structure)]
    keys = []
    for i, (path, tensor) in enumerate(zip(paths, tensors, strict=True)):
        if isinstance(structure, dict):
            keys.append(".".join(str(part) for part in path))
        elif layer_names and len(layer_names) == len(tensors):
            keys.append(layer_names[i])
        elif tensor.name and not tensor.name.startswith("keras_tensor"):
            keys.append(tensor.name)
        else:
            keys.append(default_prefix if len(tensors) == 1 else f"{default_prefix}_{i}")
    return keys


class Signature:
    """Names, shapes and dtypes of a Keras model's inputs and outputs, in `model.inputs` /
    `model.outputs` order.

    Args:
        model: A built Keras model with known inputs.
        inputs: `Port`s for the inputs (default: read from the model).

    Example:

    ```python
    signature = Signature(bert_backbone)
    [port.key for port in signature.inputs]  # ['padding_mask', 'segment_ids', 'token_ids']
    ```
    """

    def __init__(self, model, inputs=None):
        tensors = getattr(model, "inputs", None)
        if not tensors:
            raise ValueError(
                "Expected a built model with known inputs (a Sequential with `keras.Input`, or "
                f"a Functional model). Received: {type(model).__name__} without `inputs`. Build "
                "it with `keras.Input(shape)`, call it once on data, or pass "
                "`verification_data` (its shape gives the input's)."
            )
        self.input_structure = _structure(model, "input")
        self.output_structure = _structure(model, "output")
        if inputs is None:
            keys = _keys(self.input_structure, tensors, "input")
            names = _unique(_identifier(key, "input") for key in keys)
            inputs = [
                Port(name, key, tuple(t.shape[1:]), str(t.dtype))
                for name, key, t in zip(names, keys, tensors, strict=True)
            ]
        self.inputs = list(inputs)
        outputs = model.outputs
        layer_names = getattr(model, "output_names", None)
        keys = _keys(self.output_structure, outputs, "output", layer_names)
        names = _unique(_identifier(key, "output") for key in keys)
        self.outputs = [
            Port(name, key, tuple(t.shape[1:]), str(t.dtype))
            for name, key, t in zip(names, keys, outputs, strict=True)
        ]

    @property
    def open_dimensions(self):
        """Inputs with a dimension left open (None) besides the batch."""
        return [port for port in self.inputs if any(d is None for d in port.shape)]

    def with_shapes(self, flat):
        """A copy whose open input dimensions take the sizes of the arrays in `flat`."""
        inputs = [
            dataclasses.replace(port, shape=tuple(array.shape[1:]))
            for port, array in zip(self.inputs, flat, strict=True)
        ]
        copy = object.__new__(Signature)
        copy.__dict__.update(self.__dict__, inputs=inputs)
        return copy

    def flatten(self, data, argument):
        """User data (array, list or dict) -> one validated array per input, in input order.

        Float inputs become float32 and must be finite; integer and boolean inputs keep their
        kind and must fit the input's dtype. Every array needs the same number of samples and
        the input's shape (open dimensions take any size).

        Args:
            data: One array (single-input models), a list in `model.inputs` order, or a dict
                keyed by input name (dict key or `keras.Input` name).
            argument: The argument's name, for error messages.
        """
        expected = "; ".join(port.describe() for port in self.inputs)
        if isinstance(data, dict):
            arrays = []
            for port in self.inputs:
                for key in (port.key, port.name):
                    if key in data:
                        arrays.append(data[key])
                        break
                else:
                    raise ValueError(
                        f"Expected `{argument}` to have an entry for every input: {expected}. "
                        f"Received keys: {sorted(map(str, data))}"
                    )
        elif isinstance(data, list | tuple):
            if len(data) != len(self.inputs):
                raise ValueError(
                    f"Expected `{argument}` as {len(self.inputs)} arrays, one per input in "
                    f"`model.inputs` order: {expected}. Received {len(data)} arrays."
                )
            arrays = list(data)
        elif len(self.inputs) == 1:
            arrays = [data]
        else:
            raise ValueError(
                f"Expected `{argument}` as a dict or list of {len(self.inputs)} arrays (the model "
                f"has several inputs: {expected}). Received: {type(data).__name__}"
            )
        flat = [
            _check_array(array, port, argument, len(self.inputs) > 1)
            for array, port in zip(arrays, self.inputs, strict=True)
        ]
        counts = {port.key: len(array) for port, array in zip(self.inputs, flat, strict=True)}
        if len(set(counts.values())) > 1:
            raise ValueError(
                f"Expected the same number of samples for every input in `{argument}`. "
                f"Received: {counts}"
            )
        return flat

    def generate(self, count, seed=0):
        """`count` generated samples per input: standard-normal floats, integers drawn from
        {0, 1} (valid token ids, segment ids and masks for any vocabulary), random booleans."""
        rng = np.random.default_rng(seed)
        flat = []
        for port in self.inputs:
            shape = (count, *port.shape)
            if port.is_float:
                flat.append(rng.standard_normal(shape).astype(port.dtype))
            elif port.dtype == "bool":
                flat.append(rng.integers(0, 2, shape).astype(bool))
            else:
                flat.append(rng.integers(0, _GENERATED_INT_HIGH, shape).astype(port.dtype))
        return flat

    def pack(self, flat):
        """Flat arrays or tensors (input order) -> the structure the Keras model is called with."""
        return keras.tree.pack_sequence_as(self.input_structure, list(flat))

    def name_outputs(self, outputs):
        """The model's output structure -> `{signature name: output}`."""
        flat = keras.tree.flatten(outputs)
        return {port.name: value for port, value in zip(self.outputs, flat, strict=True)}


def _check_array(data, port, argument, several):
    where = f"`{argument}`" + (f" for input {port.key!r}" if several else "")
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Expected {where} to be an array. Received: {error}") from None
    if array.dtype.kind not in "fiub":
        raise ValueError(
            f"Expected {where} to hold real numbers (float or integer). "
            f"Received: dtype={array.dtype}"
        )
    shape_ok = array.ndim == len(port.shape) + 1 and all(
        expected is None or expected == actual
        for expected, actual in zip(port.shape, array.shape[1:], strict=False)
    )
    if not shape_ok or not len(array):
        shape = ", ".join("None" if d is None else str(d) for d in port.shape)
        raise ValueError(
            f"Expected {where} of shape (num_samples, {shape}) with num_samples >= 1. "
            f"Received: shape={array.shape}"
        )
    if port.is_float:
        array = array.astype(np.float32)
        finite = np.isfinite(array)
        if not finite.all():
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ValueError(
                f"Expected finite values in {where}. Received: {array[first]} at index {first}. "
                "Non-finite inputs make int8 calibration fail (and crash TensorFlow's "
                "converter); remove or replace those samples."
            )
        return array
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or np.any(array != np.round(array)):
            raise ValueError(
                f"Expected whole numbers in {where} (the input is {port.dtype}). Received "
                f"non-integral values, e.g. {array[array != np.round(array)].flat[0]}."
            )
    if port.dtype == "bool":
        if array.dtype.kind != "b" and not np.isin(array, (0, 1)).all():
            raise ValueError(f"Expected 0/1 or booleans in {where} (the input is bool).")
        return array.astype(bool)
    info = np.iinfo(port.dtype)
    if array.size and (array.min() < info.min or array.max() > info.max):
        raise ValueError(
            f"Expected values in {where} within {port.dtype}'s range [{info.min}, {info.max}]. "
            f"Received values in [{array.min()}, {array.max()}]."
        )
    return array.astype(port.dtype)
