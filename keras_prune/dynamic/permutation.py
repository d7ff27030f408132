"""Reorder a model's channels by importance without changing what it computes.

Permuting the channels of a dependency group consistently across all its members (the output
columns and biases of the layers that create the channels, BatchNormalization and depthwise
weights, the input rows of every consumer, several rows per channel after a Flatten) gives a
model with the same outputs. Sorting every prunable group by importance this way puts the most
important channels first, so the first `k` channels of every group form the best sub-network of
that width: the starting point of a slimmable model trained from a pretrained one.
"""

import numpy as np
from keras import ops

from keras_prune.graph import channel_importance
from keras_prune.graph import groups as groups_lib


def permuted_values(groups, permutations, values):
    """New weight values with the channels of each group reordered (a pure function).

    Args:
        groups: `Group`s from `kp.graph.channel_groups`.
        permutations: `{group index: order}`: channel `c` of the result is channel `order[c]`
            of the input (a permutation of `range(group.size)`); groups left out keep their
            order.
        values: `{id(variable): array}` holding every member weight of those groups.

    Returns:
        `{id(variable): array}` for the weights that changed (new arrays; `values` is left
        alone).
    """
    result = {}
    for group in groups:
        order = permutations.get(group.index)
        if order is None:
            continue
        order = np.asarray(order, dtype=np.int64)
        if sorted(order.tolist()) != list(range(group.size)):
            raise ValueError(
                f"Expected a permutation of range({group.size}) for group {group.index}. "
                f"Received: {order.tolist()}"
            )
        for member in group.members:
            key = id(member.variable)
            # Later members read what earlier ones wrote: a kernel is permuted along its input
            # axis by one group and along its output axis by another.
            target = result.setdefault(key, np.array(values[key], copy=True))
            source = target.copy()
            index_new = [slice(None)] * target.ndim
            index_old = [slice(None)] * target.ndim
            index_new[member.axis] = member.indices(np.arange(group.size))
            index_old[member.axis] = member.indices(order)
            target[tuple(index_new)] = source[tuple(index_old)]
    return result


def permute_channels(model, permutations, groups=None):
    """Reorder the channels of `model`'s groups in place; its outputs do not change.

    Args:
        model: a built Sequential or Functional model.
        permutations: `{group index: order}` (see `permuted_values`).
        groups: the model's `kp.graph.channel_groups` if already computed.

    Example:

    ```python
    groups = kp.graph.channel_groups(model)
    kp.dynamic.permute_channels(model, {0: list(reversed(range(groups[0].size)))})
    ```
    """
    groups = groups_lib.channel_groups(model) if groups is None else groups
    values = {}
    for group in groups:
        for member in group.members:
            values[id(member.variable)] = np.asarray(ops.convert_to_numpy(member.variable))
    variables = {id(m.variable): m.variable for g in groups for m in g.members}
    for key, value in permuted_values(groups, permutations, values).items():
        variables[key].assign(value)


def order_channels(model, criterion="magnitude", *, norm="l2", groups=None):
    """Sort every prunable group's channels by importance, most important first, in place.

    Args:
        model: a built Sequential or Functional model; its outputs do not change.
        criterion: how channels are ranked, a `kp.criteria` name or instance (see
            `kp.graph.channel_scores`): "magnitude" (default), "bn_scale", ...
        norm: "l2" (default) or "l1": how a channel's weights add up for "magnitude".
        groups: the model's `kp.graph.channel_groups` if already computed.

    Returns:
        `{group index: order}` applied (channel `c` is now the former channel `order[c]`).

    Example:

    ```python
    kp.dynamic.order_channels(model)   # then kp.dynamic.SlimmableModel(model)
    ```
    """
    groups = groups_lib.channel_groups(model) if groups is None else groups
    permutations = {
        group.index: np.argsort(
            -channel_importance.channel_scores(group, criterion, norm), kind="stable"
        )
        for group in groups
        if group.prunable
    }
    permute_channels(model, permutations, groups)
    return permutations
