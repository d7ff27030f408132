"""Sparsity-inducing penalties as Keras regularizers.

- `L1`: `strength * sum |w|`, shrinks single weights to zero.
- `GroupLasso`: `strength * sum_g sqrt(|g|) * ||w_g||_2` over output channels (neurons, filters)
  or input channels, shrinks whole groups to zero so they can be removed.
- `GateL0`: `strength * sum sigmoid(s / temperature)`, the expected number of open gates of a
  `kp.mask_types.SigmoidGateMask` (an L0 relaxation); with `kp.methods.penalize_masks`.

Penalties shrink but rarely reach exactly zero: follow them with
`kp.prune_once(model, 0.0, allocation=kp.allocation.ThresholdAllocation(t))` (or a
`PruningCallback` with
`ThresholdAllocation`) to zero what they shrank.
"""

import keras
from keras import ops

from keras_prune.core import validation

__all__ = [
    "GateL0",
    "GroupLasso",
    "L1",
]


def _check_strength(strength):
    return validation.check_real("strength", strength, low=0)


@keras.saving.register_keras_serializable(package="keras_prune")
class L1(keras.regularizers.Regularizer):
    """`strength * sum(|w|)`.

    Args:
        strength: penalty weight, >= 0.

    Example:

    ```python
    keras.layers.Dense(64, kernel_regularizer=kp.regularizers.L1(1e-5))
    ```
    """

    def __init__(self, strength=1e-4):
        self.strength = _check_strength(strength)

    def __call__(self, weight):
        return self.strength * ops.sum(ops.abs(weight))

    def get_config(self):
        return {"strength": self.strength}


@keras.saving.register_keras_serializable(package="keras_prune")
class GroupLasso(keras.regularizers.Regularizer):
    """`strength * sum_g sqrt(size_g) * ||w_g||_2`, groups taken along one axis of the kernel.

    With `groups="output"` (default) a group is everything feeding one output channel: a Dense
    neuron (a kernel column) or a Conv filter (the kernel's last axis); the matching
    `kp.granularity.Channel` granularity then removes the channels the penalty emptied.
    `groups="input"`
    groups by input channel (the second-to-last axis).

    Args:
        strength: penalty weight, >= 0.
        groups: "output" or "input".

    Example:

    ```python
    keras.layers.Conv2D(32, 3, kernel_regularizer=kp.regularizers.GroupLasso(1e-3))
    ```
    """

    def __init__(self, strength=1e-4, groups="output"):
        self.strength = _check_strength(strength)
        validation.check_choice("groups", groups, {"output", "input"})
        self.groups = groups

    def group_norms(self, weight):
        """The L2 norm of every group of `weight` (a vector)."""
        rank = len(ops.shape(weight))
        axis = -1 if self.groups == "output" or rank < 2 else -2
        moved = ops.moveaxis(weight, axis, 0)
        flat = ops.reshape(moved, (ops.shape(moved)[0], -1))
        return ops.sqrt(ops.sum(ops.square(flat), axis=1) + 1e-12)

    def __call__(self, weight):
        norms = self.group_norms(weight)
        group_size = ops.size(weight) // ops.shape(norms)[0]
        return self.strength * ops.sqrt(ops.cast(group_size, "float32")) * ops.sum(norms)

    def get_config(self):
        return {"strength": self.strength, "groups": self.groups}


@keras.saving.register_keras_serializable(package="keras_prune")
class GateL0(keras.regularizers.Regularizer):
    """`strength * sum(sigmoid(scores / temperature))`: expected number of open gates.

    For the scores of `kp.mask_types.SigmoidGateMask(temperature)` masks (use the same
    temperature), set
    with `kp.methods.penalize_masks(model, kp.regularizers.GateL0(...))`.

    Args:
        strength: penalty weight, >= 0.
        temperature: > 0, as in the mask.

    Example:

    ```python
    gated = kp.prune(model, mask="sigmoid")
    kp.methods.penalize_masks(gated, kp.regularizers.GateL0(1e-5, temperature=1.0))
    ```
    """

    def __init__(self, strength=1e-5, temperature=1.0):
        self.strength = _check_strength(strength)
        self.temperature = validation.check_real("temperature", temperature, low=0, low_open=True)

    def __call__(self, scores):
        return self.strength * ops.sum(ops.sigmoid(scores / self.temperature))

    def get_config(self):
        return {"strength": self.strength, "temperature": self.temperature}
