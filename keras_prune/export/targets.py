"""Deployment targets for `keras_prune.export.to_tflite`.

A target fixes how the converter is driven (float or full-integer, sparse encoding or not) and
which runtime checks the file. The converter's sparse encoding only pays off where a runtime has
sparse kernels (LiteRT's FULLY_CONNECTED; other ops get a DENSIFY op in front: a smaller file, a
dense run), and TensorFlow Lite Micro has no DENSIFY op (a sparse-encoded file fails to
allocate), so an MCU file stores its weights dense. docs/export.md has the measurements.
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
    kp.export.get_target("mcu").quantize  # True
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
"""The deployment targets by name: what `to_tflite(target=...)` and `keras-prune export
--target` accept.

Example:

```python
sorted(kp.export.TARGETS)  # ['mcu', 'mobile', 'mobile-int8']
```
"""


def get_target(name):
    """Returns the `Target` called `name`, or raises a `ValueError` listing the valid names.

    Args:
        name: One of `"mobile"`, `"mobile-int8"`, `"mcu"` (or a `Target`, returned as is).

    Example:

    ```python
    kp.export.get_target("mobile").sparse_encoding  # True
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
