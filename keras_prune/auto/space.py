"""What a search chooses: one sparsity per removable channel group or per prunable layer, the
costs that follow from a choice without running the model, and the pruned model itself.

- `granularity="channel"`: variable `i` is the sparsity of channel group `i` (the share of its
  channels removed, the lowest ranked by the "magnitude" criterion, as `kp.prune_channels`);
  the model is then shrunk (`kp.shrink`): fewer MACs, parameters, bytes and milliseconds.
- `granularity="unstructured"`: variable `i` is the sparsity of layer `i`'s weights (magnitude,
  `kp.prune_once`). Latency does not change on LiteRT's dense kernels (XNNPACK's sparse path
  is off on x86 and needs a special model structure on ARM, see NOTES.md); the file shrinks
  when the converter sparse-encodes weights with >= 30% zeros; MACs are counted on non-zero
  weights.
"""

import math

import numpy as np

from keras_prune.auto import latency_table, selection
from keras_prune.graph import channel_importance, tracing
from keras_prune.graph import groups as groups_lib
from keras_prune.layers import layouts
from keras_prune.reporting import macs as macs_lib
from keras_prune.surgery import zeros
from keras_prune.surgery.shrink import shrink
from keras_prune.surgery.shrunk_cost import ShrunkCost

# The TFLite converter sparse-encodes a weight only from this fraction of exact zeros on.
SPARSE_ENCODING_FROM = 0.3


class Variable:
    """One searched sparsity: a channel group or a layer."""

    def __init__(self, name, size, index=None, layer=None, macs=0, itemsize=4, dims=(1, 1)):
        self.name, self.size, self.index, self.layer = name, size, index, layer
        self.macs, self.itemsize, self.dims = macs, itemsize, dims


def removed_channels(size, sparsity):
    """Channels removed from a group of `size` at `sparsity` (at least one stays)."""
    return min(int(round(size * sparsity)), size - 1)


class SearchSpace:
    """The variables of a search over `model` and the costs of a choice.

    Args:
        model: the working copy (plain Keras, no wrappers) searched over.
        granularity: "channel" or "unstructured".
        filters: which layers may be pruned (see `kp.prune`).
        max_sparsity, step: each variable takes the values 0, step, 2 * step, ... up to
            `max_sparsity`.
        profile: a `Profile` of `model` for latency, file bytes and arena, or None.
        target: the deployment target's name (its weight width sizes the file estimate).
        criterion: how the pruned model ranks weights or channels (a `kp.criteria` name or
            instance that needs no gradients).
    """

    def __init__(
        self,
        model,
        granularity,
        filters,
        max_sparsity,
        step,
        profile,
        target,
        criterion="magnitude",
    ):
        self.model, self.granularity, self.criterion = model, granularity, criterion
        self.max_sparsity, self.step, self.profile = max_sparsity, step, profile
        self.itemsize = 1 if target in ("mcu", "mobile-int8") else 4
        self.sparse_encoding = target in ("mobile", "mobile-int8")
        selected = selection.layer_filter(filters)
        self.base = macs_lib.count(model)
        if granularity == "channel":
            self.analysis = groups_lib.analyze(model)
            self.groups = self.analysis.groups()
            self.estimator = ShrunkCost(self.analysis, self.groups)
            self.variables = []
            for group in self.groups:
                creators = [
                    m for m in group.members if m.role == "output" and len(m.variable.shape) > 1
                ]
                if not group.prunable or not creators or group.size < 2:
                    continue
                if not all(selected(groups_lib.unwrap(m.layer)) for m in creators):
                    continue
                self.variables.append(
                    Variable(f"{group.index}:{creators[0].layer.name}", group.size, group.index)
                )
        else:
            costs = {cost.name: cost for cost in macs_lib.layer_costs(model)}
            self.variables = []
            for layer in tracing.trace(model).layers():
                weights = layouts.prunable_weights(layer)
                if not weights or not selected(layer):
                    continue
                size = int(sum(np.prod(w.variable.shape) for w in weights))
                dims = tuple(weights[0].variable.shape)
                macs = costs[layer.name].macs if layer.name in costs else 0
                self.variables.append(Variable(layer.name, size, layer=layer, macs=macs, dims=dims))
        if not self.variables:
            what = "removable channel group" if granularity == "channel" else "prunable layer"
            raise ValueError(
                f"Model {model.name!r} has no {what} to search over"
                + (f" (filters={filters!r})" if filters is not None else "")
                + "."
            )

    @property
    def names(self):
        return [variable.name for variable in self.variables]

    def values(self):
        """The values each variable may take."""
        count = int(math.floor(self.max_sparsity / self.step + 1e-9))
        return [round(i * self.step, 6) for i in range(count + 1)]

    def suggest(self, trial):
        """`{variable name: sparsity}` drawn by an Optuna trial."""
        top = self.values()[-1]
        return {
            name: trial.suggest_float(f"s:{name}", 0.0, top, step=self.step) for name in self.names
        }

    def uniform(self, sparsity):
        """Every variable at the largest allowed value not above `sparsity`."""
        value = max(v for v in self.values() if v <= sparsity + 1e-9)
        return {name: value for name in self.names}

    # -- costs -----------------------------------------------------------------------------

    def kept(self, sparsities):
        """`{group index: channels kept}` (channel granularity)."""
        kept = {group.index: group.size for group in self.groups}
        for variable in self.variables:
            sparsity = sparsities.get(variable.name, 0.0)
            kept[variable.index] = variable.size - removed_channels(variable.size, sparsity)
        return kept

    def costs(self, sparsities):
        """`{"macs", "params", "latency", "size", "arena"}` of a choice (None where there is no
        profile to predict it from), without building the model."""
        if self.granularity == "channel":
            kept = self.kept(sparsities)
            counted = self.estimator.cost(kept)
            result = {"macs": counted["macs"], "params": counted["params"]}
            if self.profile is not None:
                predicted = self.profile.predict(self.model, kept)
                result.update(
                    latency=predicted["latency_us"],
                    size=predicted["file_bytes"],
                    arena=predicted["arena_bytes"],
                )
            else:
                result.update(
                    latency=None,
                    size=counted["params"] * self.itemsize,
                    arena=latency_table.peak_activation_bytes(self.model, kept, self.itemsize),
                )
            return result
        removed = macs = 0
        dense_bytes = sparse_bytes = 0
        for variable in self.variables:
            sparsity = sparsities.get(variable.name, 0.0)
            pruned = int(round(variable.size * sparsity))
            removed += pruned
            macs += int(variable.macs * sparsity)
            dense_bytes += variable.size * self.itemsize
            sparse_bytes += self._stored_bytes(variable, variable.size - pruned, sparsity)
        result = {"macs": self.base["macs"] - macs, "params": self.base["params"] - removed}
        if self.profile is not None:
            result.update(
                latency=self.profile.latency_us,
                size=self.profile.file_bytes - dense_bytes + sparse_bytes,
                arena=self.profile.arena_bytes,
            )
        else:
            result.update(
                latency=None,
                size=self.base["params"] * self.itemsize - dense_bytes + sparse_bytes,
                arena=latency_table.peak_activation_bytes(self.model, None, self.itemsize),
            )
        return result

    def _stored_bytes(self, variable, nonzeros, sparsity):
        """A weight's bytes in the file: dense below the converter's threshold, else values
        plus one index per value and one offset per row (its compressed-row encoding)."""
        if not self.sparse_encoding or sparsity < SPARSE_ENCODING_FROM:
            return variable.size * self.itemsize
        rows = variable.dims[-1]
        columns = variable.size // max(rows, 1)
        index = 1 if columns < 256 else 2 if columns < 65536 else 4
        return nonzeros * (self.itemsize + index) + (rows + 1) * 4

    def smallest(self):
        """Costs with every variable at its largest value: the cheapest reachable choice."""
        return self.costs({name: self.values()[-1] for name in self.names})

    # -- the model -------------------------------------------------------------------------

    def materialize(self, model, sparsities):
        """The pruned model of a choice: shrunk (channel) or wrapped and masked
        (unstructured, ready to fine-tune; `kp.strip` it afterwards)."""
        if self.granularity == "channel":
            return channel_model(
                model,
                {v.index: sparsities.get(v.name, 0.0) for v in self.variables},
                self.criterion,
            )
        return unstructured_model(
            model, {name: sparsities.get(name, 0.0) for name in self.names}, self.criterion
        )


def channel_model(model, sparsities, criterion="magnitude"):
    """`model` with `sparsities[group index]` of each channel group's channels removed (the
    lowest-scoring by `criterion`), shrunk; `model` is not changed.

    Example:

    ```python
    small = channel_model(model, {0: 0.5, 1: 0.25})
    ```
    """
    working = selection.working_copy(model)
    groups = groups_lib.channel_groups(working)
    removed = {}
    for group in groups:
        count = removed_channels(group.size, sparsities.get(group.index, 0.0))
        if count <= 0 or not group.prunable:
            continue
        scores = channel_importance.channel_scores(group, criterion)
        channels = np.sort(np.argsort(scores, kind="stable")[:count])
        zeros.zero_group_channels(group, channels)
        removed[group.index] = channels
    small = shrink(working)
    small.pruned_channels = removed
    return small


def unstructured_model(model, sparsities, criterion="magnitude"):
    """`model` pruned one-shot (ranked by `criterion`) with `sparsities[layer name]` per layer:
    a model with `kp.PruneWrapper`s holding the masks (fine-tune it, then `kp.strip`).

    Example:

    ```python
    pruned = unstructured_model(model, {"conv1": 0.5, "dense": 0.95})
    ```
    """
    from keras_prune.core.allocation import PerLayerAllocation
    from keras_prune.pruning.one_shot import prune_once

    top = max(sparsities.values())
    overrides = {f"^{_escape(name)}$": value for name, value in sparsities.items()}
    return prune_once(
        model,
        top,
        criterion=criterion,
        allocation=PerLayerAllocation(overrides),
        filters=selection.layer_pattern(list(sparsities)),
    )


def _escape(name):
    import re

    return re.escape(name)
