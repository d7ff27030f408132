"""Widths of a slimmable model: how many channels of every group a width keeps.

A width `w` in (0, 1] keeps the first `ceil(w * size)` channels of every prunable channel group
(at least one; with `round_to`, a multiple of `round_to` channels, never more than the group
has). Groups that must be kept whole (model inputs and outputs, layers the channel analysis
does not understand) keep every channel at every width. Training masks, `kp.shrink(model,
width=...)` and the exported files all count channels with `width_channels`, so the trained
sub-network and the materialised one are the same network.
"""

import math

import numpy as np

from keras_prune.core import validation


def check_width(width, name="width"):
    """A width in (0, 1], as a float."""
    return validation.check_real(
        name,
        width,
        low=0.0,
        high=1.0,
        low_open=True,
        hint="A width is the fraction of every channel group kept, e.g. 0.5 for half.",
    )


def check_widths(widths):
    """Distinct widths in (0, 1], sorted, including 1.0 (the full model is the teacher of the
    in-place distillation), as a tuple of floats."""
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise ValueError(
            f"Expected `widths` to be a list of fractions in (0, 1], e.g. [0.25, 0.5, 0.75, 1.0]. "
            f"Received: widths={widths!r}"
        )
    values = sorted({check_width(width, f"widths[{i}]") for i, width in enumerate(widths)})
    if not values or values[-1] != 1.0:
        raise ValueError(
            "Expected `widths` to include 1.0 (the full model teaches the narrower ones). "
            f"Received: widths={list(widths)!r}"
        )
    return tuple(values)


def check_trained_width(width, widths):
    """`width` if it is one of `widths` (the trained set), else a ValueError naming both."""
    width = check_width(width)
    for trained in widths:
        if math.isclose(width, trained, abs_tol=1e-9):
            return trained
    raise ValueError(
        f"Expected `width` to be one of the trained widths {list(widths)}. Received: "
        f"width={width!r}. Sub-networks only work at the widths they were trained at; "
        "train with this width in `widths` to use it."
    )


def width_channels(size, width, round_to=None):
    """Channels a group of `size` keeps at `width`: `ceil(width * size)`, at least 1, rounded
    up to a multiple of `round_to` (capped at `size`).

    Example:

    ```python
    kp.dynamic.width_channels(24, 0.25)               # 6
    kp.dynamic.width_channels(24, 0.25, round_to=8)   # 8
    ```
    """
    count = max(1, math.ceil(round(width * size, 6)))
    if round_to:
        count = -(-count // round_to) * round_to
    return int(min(size, count))


def prunable_groups(groups, model_name="model"):
    """The prunable groups of `groups`, or a ValueError naming the model if there are none."""
    prunable = [group for group in groups if group.prunable]
    if not prunable:
        reasons = sorted({group.reason for group in groups if group.reason})
        detail = (
            f" Groups found: {len(groups)}, all kept whole ({'; '.join(reasons)})."
            if groups
            else ""
        )
        raise ValueError(
            f"Model {model_name!r} has no channel groups that can be narrowed, so it has no "
            f"sub-networks of smaller width.{detail} Use a model with Conv / Dense layers whose "
            "channels do not feed its outputs directly (see kp.graph.channel_groups)."
        )
    return prunable


def kept_channels(groups, width, round_to=None):
    """`{group index: channels kept at width}`: the first `width_channels` of every prunable
    group, every channel of the others."""
    return {
        group.index: np.arange(
            width_channels(group.size, width, round_to) if group.prunable else group.size
        )
        for group in groups
    }


def axis_masks(groups, width, round_to=None):
    """`{id(variable): {axis: 0/1 float32 vector}}` for every weight axis a width narrows.

    Every member axis of a prunable group (kernel output columns, biases, consumers' input
    rows, BatchNormalization and depthwise weights) is zero past the group's first
    `width_channels` channels, so the masked model computes exactly the narrow sub-network.
    Weights no group narrows at this width are left out. A pure function of the groups.
    """
    masks = {}
    for group in groups:
        if not group.prunable:
            continue
        keep = width_channels(group.size, width, round_to)
        if keep == group.size:
            continue
        dropped = np.arange(keep, group.size)
        for member in group.members:
            variable = member.variable
            axes = masks.setdefault(id(variable), {})
            if member.axis not in axes:
                axes[member.axis] = np.ones(int(variable.shape[member.axis]), dtype="float32")
            axes[member.axis][member.indices(dropped)] = 0.0
    return masks


def weight_mask(shape, axes):
    """The full 0/1 mask of a weight of `shape` from its per-axis vectors (`axis_masks`)."""
    mask = np.ones(shape, dtype="float32")
    for axis, vector in axes.items():
        broadcast = [1] * len(shape)
        broadcast[axis] = len(vector)
        mask = mask * vector.reshape(broadcast)
    return mask
