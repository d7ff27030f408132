"""Call specs: a JSON-able record of the arguments a `PruneWrapper` was first called with.

The wrapper saves it as its build config, so a reloaded wrapper builds its layer on the same
kinds of inputs (several tensors, keywords, flags) before its weights are loaded.
"""

import keras

# Call arguments that configure a call rather than feed it: not part of the build spec.
_CALL_CONTEXT = ("training", "mask")


def _spec_of(value):
    if keras.ops.is_tensor(value) or isinstance(value, keras.KerasTensor):
        shape = [None if dim is None else int(dim) for dim in value.shape]
        return {
            "__tensor__": {"shape": shape, "dtype": keras.backend.standardize_dtype(value.dtype)}
        }
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None


def call_spec(args, kwargs):
    """A JSON-able description of a call's arguments: tensors become their shape and dtype."""
    kwargs = {key: value for key, value in kwargs.items() if key not in _CALL_CONTEXT}
    return {
        "args": keras.tree.map_structure(_spec_of, list(args)),
        "kwargs": keras.tree.map_structure(_spec_of, kwargs),
    }


def symbolic(spec):
    """The symbolic arguments (`keras.KerasTensor`s) a `call_spec` describes."""
    if isinstance(spec, dict) and set(spec) == {"__tensor__"}:
        tensor = spec["__tensor__"]
        return keras.KerasTensor(tuple(tensor["shape"]), dtype=tensor["dtype"])
    if isinstance(spec, dict):
        return {key: symbolic(value) for key, value in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [symbolic(value) for value in spec]
    return spec
