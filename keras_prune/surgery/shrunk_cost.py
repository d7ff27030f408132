"""`ShrunkCost`: the MACs and parameters a model would have after `shrink`, for any number of
channels kept per group, counted from the channel analysis without building the smaller model.

`prune_channels` bisects on it to meet `target_macs` / `target_params`; `kp.search` prices every
candidate of a channel search with it.
"""

import numpy as np

from keras_prune.graph import tracing
from keras_prune.reporting import macs as macs_lib


class ShrunkCost:
    """MACs per example and parameter count of the shrunk model, per channels kept per group.

    Every weight axis indexed by a group's channels takes the group's kept count (times the
    member's repeat, e.g. a Flatten); every other axis keeps its size. MACs are counted as
    `kp.reporting.macs.count` counts them, layer call by layer call, at those sizes.

    Args:
        analysis: the `kp.graph.Analysis` of the model (`kp.graph.analyze(model)`).
        groups: the groups the kept counts refer to (default: `analysis.groups()`).

    Example:

    ```python
    analysis = kp.graph.analyze(model)
    groups = analysis.groups()
    shrunk = kp.surgery.ShrunkCost(analysis, groups)
    full = shrunk.cost({group.index: group.size for group in groups})
    counted = kp.reporting.macs.count(model)
    print(full["macs"] == counted["macs"], full["params"] == counted["params"])   # True True
    half = shrunk.cost({group.index: group.size // 2 for group in groups if group.prunable})
    print(half["macs"] < full["macs"])    # True
    ```
    """

    def __init__(self, analysis, groups=None):
        self.analysis = analysis
        self.groups = analysis.groups() if groups is None else groups
        self.calls = tracing.trace(analysis.model).calls
        group_of_root = {group.root: group for group in self.groups}
        # id(variable) -> {axis: [(group or None, repeat, size)]}
        self.axes = {}
        for atom, member in analysis.members:
            root = analysis.atoms.root(atom)
            entry = (group_of_root.get(root), member.repeat, analysis.atoms.size[root])
            self.axes.setdefault(id(member.variable), {}).setdefault(member.axis, []).append(entry)
        self.weights = analysis.model.weights

    def size_function(self, kept):
        """A function `variable -> number of entries` after keeping `kept[group.index]`
        channels of every group (`kept`: `{group index: channels kept}`; a group left out keeps
        all its channels).

        Example:

        ```python
        analysis = kp.graph.analyze(model)
        size_of = kp.surgery.ShrunkCost(analysis).size_function({0: 4})
        print([size_of(weight) for weight in model.weights][:2])   # conv1 keeps 4 of 8 filters
        ```
        """

        def size_of(variable):
            shape = list(variable.shape)
            for axis, entries in self.axes.get(id(variable), {}).items():
                shape[axis] = sum(
                    repeat * (kept.get(group.index, size) if group is not None else size)
                    for group, repeat, size in entries
                )
            return int(np.prod(shape, dtype=np.int64))

        return size_of

    def cost(self, kept):
        """`{"macs": MACs per example, "params": parameters}` after keeping `kept[group.index]`
        channels of every group (`{group index: channels kept}`; a group left out keeps all).

        Example:

        ```python
        shrunk = kp.surgery.ShrunkCost(kp.graph.analyze(model))
        print(shrunk.cost({}))   # nothing removed: {"macs": ..., "params": ...}
        ```
        """
        size_of = self.size_function(kept)
        macs = sum(macs_lib.call_macs(call, size_of)[0] for call in self.calls)
        params = sum(size_of(weight) for weight in self.weights)
        return {"macs": macs, "params": params}
