"""How a `PruneWrapper` stores its binary masks: one byte per weight, exactly 0 or 1, and the
variable constraint that keeps masked weights at zero after each optimizer step."""

import keras
from keras import ops


class HoldMasked:
    """Variable constraint: the layer's own constraint, then zero what the mask removes.

    Keras optimizers apply `variable.constraint` after every update, so masked weights are exactly
    zero after each step whatever the optimizer's momentum holds. Not on JAX: there `fit` runs
    the optimizer on a copy of the state in which the masks are not readable, so the forward pass
    applies the masks instead (see `PruneWrapper.masks_in_forward_pass`).
    """

    def __init__(self, mask, original=None):
        self.mask = mask
        self.original = original

    def __call__(self, value):
        if self.original is not None:
            value = self.original(value)
        return value * ops.cast(self.mask, value.dtype)


#: The dtype of the mask variables: one byte per weight, holding exactly 0 or 1. Every reader
#: casts them to the dtype of the weight they multiply.
MASK_DTYPE = "uint8"


def stored_mask(mask):
    """`mask` as a wrapper stores it: `MASK_DTYPE`, 1 wherever `mask` is not zero (masks come as
    0/1 floats, booleans or integers; a fraction such as 0.5 keeps the weight, never rounds it
    away)."""
    mask = ops.convert_to_tensor(mask)
    if keras.backend.standardize_dtype(mask.dtype) == MASK_DTYPE:
        return mask
    return ops.cast(ops.not_equal(mask, 0), MASK_DTYPE)
