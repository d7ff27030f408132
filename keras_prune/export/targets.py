"""Deployment targets for `keras_prune.export.to_tflite`.

A target fixes how the converter is driven (float or full-integer, sparse encoding or not) and
which runtime checks the file. The facts behind each choice are in NOTES.md: the converter's
sparse encoding only pays off where a runtime has sparse kernels (LiteRT's FULLY_CONNECTED), and
TensorFlow Lite Micro has no DENSIFY op, so an MCU file must store its weights dense.
"""

import dataclasses

from keras_prune.core import validation


@dataclasses.dataclass(frozen=True)
class Target:
    """How one deployment target is converted and verified.

    Args:
        name: The string users pass as `target=`.
        description: One line shown in errors and reports.
        quantize: Full-integer int8 quantization (weights, activations, inputs and outputs).
            Needs representative data.
        sparse_encoding: Ask the converter to re-encode tensors with at least 30% zeros in its
            sparse format (`tf.lite.Optimize.EXPERIMENTAL_SPARSITY`).
        runtime: `"litert"` (ai-edge-litert interpreter, with and without XNNPACK) or `"tflm"`
            (TensorFlow Lite Micro's interpreter, with the smallest arena that works).

    Example:

    ```python
    from keras_prune.export.targets import get_target
    get_target("mcu").quantize  # True
    ```
    """

    name: str
    description: str
    quantize: bool
    sparse_encoding: bool
    runtime: str


TARGETS = {
    "mobile": Target(
        name="mobile",
        description="float32, sparse-encoded weights, LiteRT with XNNPACK",
        quantize=False,
        sparse_encoding=True,
        runtime="litert",
    ),
    "mobile-int8": Target(
        name="mobile-int8",
        description="full-integer int8, sparse-encoded where kernels exist, LiteRT",
        quantize=True,
        sparse_encoding=True,
        runtime="litert",
    ),
    "mcu": Target(
        name="mcu",
        description="full-integer int8, dense storage, TensorFlow Lite Micro",
        quantize=True,
        sparse_encoding=False,
        runtime="tflm",
    ),
}


def get_target(name):
    """Returns the `Target` called `name`, or raises a `ValueError` listing the valid names.

    Args:
        name: One of `"mobile"`, `"mobile-int8"`, `"mcu"` (or a `Target`, returned as is).

    Example:

    ```python
    get_target("mobile").sparse_encoding  # True
    ```
    """
    if isinstance(name, Target):
        return name
    if not isinstance(name, str) or name not in TARGETS:
        valid = ", ".join(f'"{key}"' for key in TARGETS)
        raise ValueError(
            f"Expected `target` to be one of {valid}. Received: target={name!r}."
            + validation.did_you_mean(name, TARGETS)
        )
    return TARGETS[name]
