"""Mixed-precision models exported as float32 copies.

Under `mixed_float16` / `mixed_bfloat16` a model computes in half precision, so its SavedModel
holds float16 / bfloat16 Conv2D, MatMul, BiasAdd and Relu ops, which the converter's builtin
op set does not take ("uses TensorFlow ops with no TFLite builtin kernel"). The variables are
float32 under those policies, so a copy rebuilt from the config with a float32 policy per
layer, given the same weights, is the same model computed in float32: that copy is exported.
"""

import keras
import numpy as np

from keras_prune.export.convert import all_layers
from keras_prune.export.errors import ConversionError

_HALF = ("float16", "bfloat16")


def _half_precision_policies(model):
    names = set()
    for layer in all_layers(model):
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and (policy.compute_dtype in _HALF or policy.variable_dtype in _HALF):
            names.add(policy.name)
    return sorted(names)


def _float32_config(config):
    """`config` with every half-precision dtype policy replaced by "float32"."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            name = config.get("config", {}).get("name", "")
            if any(half in name for half in _HALF):
                return "float32"
        return {key: _float32_config(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_config(value) for value in config]
    if isinstance(config, str) and config in ("mixed_float16", "mixed_bfloat16", *_HALF):
        return "float32"
    return config


def float32_copy(model):
    """`(model, note)`: `model` itself when it computes in float32, else a float32 copy with
    the same weights and a note saying so.

    Args:
        model: A Keras model without keras_prune wrappers.

    Raises:
        ConversionError: the model cannot be rebuilt from its config (the message says how to
            make the copy by hand).

    Example:

    ```python
    keras.config.set_dtype_policy("mixed_float16")
    model = build_model()
    copy, note = float32_copy(model)  # note: "computes in mixed_float16: exported ..."
    ```
    """
    policies = _half_precision_policies(model)
    if not policies:
        return model, None
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = type(model).from_config(_float32_config(model.get_config()))
        copy.set_weights([np.asarray(w, dtype=np.float32) for w in model.get_weights()])
    except Exception as error:  # from_config / set_weights of arbitrary user layers.
        raise ConversionError(
            f"The model computes in {', '.join(policies)}, which TFLite's float kernels do not "
            "take, and rebuilding it in float32 from its config failed "
            f"({type(error).__name__}: {error}). Build the same model after "
            "`keras.config.set_dtype_policy('float32')`, copy the weights with "
            "`set_weights(model.get_weights())` and export that copy."
        ) from None
    finally:
        keras.config.set_dtype_policy(previous)
    remaining = _half_precision_policies(copy)
    if remaining:
        raise ConversionError(
            f"The model computes in {', '.join(policies)}; its float32 copy still has layers "
            f"in {', '.join(remaining)} (set by the layers themselves). Build it under "
            "`keras.config.set_dtype_policy('float32')` and export that copy."
        )
    changed = sum(
        1
        for layer in all_layers(model)
        if getattr(layer, "dtype_policy", None) is not None and layer.dtype_policy.name in policies
    )
    return copy, (
        f"the model computes in {', '.join(policies)} ({changed} layers): exported as a float32 "
        "copy with the same weights (TFLite float kernels are float32); checks compare the "
        "file with that copy"
    )
