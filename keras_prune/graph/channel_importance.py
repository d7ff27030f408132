"""How important each channel of a dependency group is, by any criterion.

A group's channels are ranked together: a channel's score gathers what it owns in every member
of the group (the output columns of all the layers that create it, its depthwise filters, its
BatchNormalization scale), so residual partners lose the same channels. Which weights count and
how they add up is the criterion's to say (`Criterion.channel_weights`,
`Criterion.channel_reduction`), so unstructured and channel pruning share one vocabulary:
"magnitude" (the L2 or L1 norm of each channel's weights), "taylor" (|sum of w * dL/dw|),
"bn_scale" (|gamma|), or any criterion of your own.
"""

import keras
import numpy as np
from keras import ops

from keras_prune.core import criteria as criteria_lib
from keras_prune.core import validation
from keras_prune.graph import groups as groups_lib


def by_channel(member, group, per_entry):
    """`per_entry` (one value per index of the member's channel axis) arranged as
    `(member.repeat, group.size)`: the entries each channel of `group` owns."""
    return per_entry[member.indices(np.arange(group.size))].reshape(member.repeat, group.size)


def _is_scale(member):
    layer = groups_lib.unwrap(member.layer)
    return isinstance(layer, keras.layers.BatchNormalization) and member.variable is layer.gamma


def _members(group, kind, needs_statistics, statistics):
    chosen = []
    for member in group.members:
        if member.role == "input":
            continue
        if kind == "kernels" and len(member.variable.shape) < 2:
            continue
        if kind == "trainable" and not member.variable.trainable:
            continue
        if kind == "scales" and not _is_scale(member):
            continue
        if needs_statistics and id(member.variable) not in statistics:
            continue  # no gradient was collected for this weight
        chosen.append(member)
    return chosen


def channel_scores(group, criterion="magnitude", norm="l2", statistics=None):
    """Importance of each channel of `group` (a float array of length `group.size`).

    Args:
        group: a `Group` from `kp.graph.channel_groups`.
        criterion: a `kp.criteria` name or instance: "magnitude" (default), "bn_scale",
            "taylor", ... A group without BatchNormalization falls back from "bn_scale" to
            "magnitude".
        norm: "l2" or "l1": how per-entry values add up within a channel for criteria that
            follow the norm.
        statistics: `{id(variable): GradientStatistics}` for gradient criteria, e.g. from
            `kp.engine.gradient_statistics(model, calibration_data)`.

    Example:

    ```python
    group = kp.graph.channel_groups(model)[0]
    kp.graph.channel_scores(group, "magnitude", norm="l1")
    ```
    """
    criterion = criteria_lib.get(criterion)
    validation.check_choice("norm", norm, {"l1", "l2"})
    statistics = statistics or {}
    if criterion.needs_gradients and not statistics:
        raise ValueError(
            f"Criterion {criterion!r} ranks channels by their gradients: pass `statistics=` "
            "from `kp.engine.gradient_statistics(model, calibration_data)`."
        )
    members = _members(group, criterion.channel_weights, criterion.needs_gradients, statistics)
    if not members and criterion.channel_weights == "scales":
        return channel_scores(group, "magnitude", norm)
    reduction = criterion.channel_reduction
    if reduction == "norm":
        reduction = norm
    scores = np.zeros(group.size, np.float64)
    for member in members:
        values = criterion.channel_values(member.variable, statistics.get(id(member.variable)))
        values = np.asarray(ops.convert_to_numpy(values), np.float64)
        moved = np.moveaxis(values, member.axis, 0).reshape(values.shape[member.axis], -1)
        if reduction == "abs_sum":
            per_entry = moved.sum(1)
        elif reduction == "l1":
            per_entry = np.abs(moved).sum(1)
        else:
            per_entry = np.square(moved).sum(1)
        scores += by_channel(member, group, per_entry).sum(0)
    if reduction == "abs_sum":
        return np.abs(scores)
    return np.sqrt(scores) if reduction == "l2" else scores
