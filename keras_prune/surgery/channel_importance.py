"""How important each channel of a dependency group is, and zeroing the channels that go.

A group's channels are ranked together: a channel's score gathers every weight it owns in
every member of the group (the output columns of all the layers that create it, its depthwise
filters, its BatchNormalization scale), so residual partners lose the same channels.
"""

import keras
import numpy as np
from keras import ops

from keras_prune.graph import groups as groups_lib

CRITERIA = ("l1", "l2", "bn_scale", "taylor")


def _numpy(variable):
    return np.asarray(ops.convert_to_numpy(variable))


def by_channel(member, group, per_entry):
    """`per_entry` (one value per index of the member's channel axis) arranged as
    `(member.repeat, group.size)`: the entries each channel of `group` owns."""
    return per_entry[member.indices(np.arange(group.size))].reshape(member.repeat, group.size)


def _member_norms(member, norm, values=None):
    """Per-entry L1 norm or squared L2 norm of `values` (default: the member's weights) along
    the member's channel axis."""
    value = _numpy(member.variable) if values is None else values
    moved = np.moveaxis(value, member.axis, 0)
    moved = moved.reshape(moved.shape[0], -1)
    return np.abs(moved).sum(1) if norm == "l1" else np.square(moved).sum(1)


def _taylor_scores(group, gradients):
    """|sum of w * dL/dw| over every weight removing a channel zeroes: the first-order change
    of the loss when the channel goes (Molchanov et al. 2019, per group)."""
    scores = np.zeros(group.size, np.float64)
    for member in group.members:
        if member.role == "input" or id(member.variable) not in gradients:
            continue
        product = _numpy(member.variable).astype(np.float64) * gradients[id(member.variable)]
        moved = np.moveaxis(product, member.axis, 0)
        scores += by_channel(member, group, moved.reshape(moved.shape[0], -1).sum(1)).sum(0)
    return np.abs(scores)


def _is_batch_norm_scale(member):
    layer = groups_lib.unwrap(member.layer)
    return isinstance(layer, keras.layers.BatchNormalization) and member.variable is layer.gamma


def group_scores(group, criterion="l2", gradients=None):
    """Importance of each channel of `group` (a float array of length `group.size`).

    Args:
        group: a `Group` from `channel_groups`.
        criterion: "l1" or "l2": the norm of every kernel entry the channel owns (output
            columns and depthwise filters of all members, summed over the group);
            "bn_scale": the sum of |gamma| of the group's BatchNormalizations (network
            slimming, Liu et al. 2017; falls back to "l2" if the group has none); or
            "taylor": |sum of w * dL/dw| over every weight the channel owns, BatchNorm gamma
            and beta included (first-order Taylor estimate of the loss change when the
            channel is removed; needs `gradients`).
        gradients: for "taylor": `{id(variable): gradient array}`, e.g. from
            `kp.channel_pruning.loss_gradients(model, x, y, loss)`.

    Example:

    ```python
    scores = kp.group_scores(kp.channel_groups(model)[0], "l1")
    ```
    """
    if criterion not in CRITERIA:
        raise ValueError(
            f"Expected `criterion` to be one of {list(CRITERIA)}. Received: criterion={criterion!r}"
        )
    if criterion == "taylor":
        if gradients is None:
            raise ValueError(
                "criterion='taylor' needs the loss gradients: pass "
                "`gradients=kp.channel_pruning.loss_gradients(model, x, y, loss)`."
            )
        return _taylor_scores(group, gradients)
    scores = np.zeros(group.size, np.float64)
    if criterion == "bn_scale":
        scales = [member for member in group.members if _is_batch_norm_scale(member)]
        for member in scales:
            scores += by_channel(member, group, np.abs(_numpy(member.variable))).sum(0)
        if scales:
            return scores
        criterion = "l2"
    for member in group.members:
        if member.role == "input" or len(member.variable.shape) < 2:
            continue
        scores += by_channel(member, group, _member_norms(member, criterion)).sum(0)
    return np.sqrt(scores) if criterion == "l2" else scores


def zero_group_channels(group, channels):
    """Set every weight of `group` that creates or scales `channels` to exactly zero, in place.

    Kernel output columns, biases, BatchNormalization gamma and beta and depthwise filters are
    zeroed, so those channels are exactly zero wherever they are consumed and `kp.shrink` can
    remove them. Input rows of consumers and BatchNormalization statistics are left alone.

    Example:

    ```python
    group = kp.channel_groups(model)[0]
    kp.zero_group_channels(group, [0, 3])
    small = kp.shrink(model)
    ```
    """
    channels = np.asarray(channels, dtype=np.int64)
    if channels.size == 0:
        return
    if channels.min() < 0 or channels.max() >= group.size:
        raise ValueError(
            f"Expected channel indices in [0, {group.size}) for group {group.index}. "
            f"Received: channels={channels.tolist()}"
        )
    for member in group.members:
        layer = groups_lib.unwrap(member.layer)
        if member.role == "input":
            continue
        if isinstance(layer, keras.layers.BatchNormalization) and not (
            member.variable is layer.gamma or member.variable is layer.beta
        ):
            continue
        value = _numpy(member.variable).copy()
        index = [slice(None)] * value.ndim
        index[member.axis] = member.indices(channels)
        value[tuple(index)] = 0
        member.variable.assign(value)
