"""Channel masks set per dependency group, so that what is masked is what `kp.shrink` removes.

A channel of a Conv2D can only be removed if every weight that creates or scales it loses it
too: the BatchNormalization after it, a depthwise filter, every other branch summed into the
same tensor (`kp.graph.channel_groups`). `ChannelCoupling` ranks each removable group's channels
once
(the norm of the wrappers' criterion scores over every kernel entry a channel owns) and masks
the same channels in every wrapped member, BatchNormalization scales included (they are wrapped
too at channel granularity). A group that cannot be removed (model output, a layer the analysis
does not understand, a creating layer left unwrapped) keeps all its channels, and so does a
channel wrapper outside every group, unless its granularity says `only_removable=False`.

When a group's channels feed a layer pruned in groups of input channels (1x4 blocks of a Dense
after `kp.granularity.ByLayer`, "mobile"), its channels are ranked and removed in aligned runs of
that many (`channel_quantum`), so that the blocks left after `kp.shrink` are still whole.
"""

import math

import numpy as np
from keras import ops

from keras_prune.core import allocation as allocation_lib
from keras_prune.core import masks as masks_lib
from keras_prune.graph import channel_importance
from keras_prune.graph.groups import channel_groups


def _numpy(value):
    return np.asarray(ops.convert_to_numpy(value))


def _is_creator(member):
    return member.role == "output" and len(member.variable.shape) > 1


def channel_quantum(group, consumer_granularity):
    """How many consecutive channels of `group` must be removed together: the least common
    multiple of `input_group_size` over the granularities that prune the weights consuming them
    (4 for 1x4 blocks, 1 when none groups input channels), or None when those groups do not
    line up with the group's channels (then removing any would split them).

    Args:
        group: a `kp.graph.channel_groups` group.
        consumer_granularity: `member -> granularity or None` for the group's input members:
            the granularity pruning that member's weight (None: not pruned).
    """
    quantum = 1
    for member in group.members:
        if member.role != "input":
            continue
        size = getattr(consumer_granularity(member), "input_group_size", 1)
        if size <= 1:
            continue
        if member.offset % size or (member.repeat > 1 and member.stride % size):
            return None
        quantum = math.lcm(quantum, size)
    return None if group.size % quantum else quantum


def _wrapper_granularity(member):
    """The granularity of the wrapper pruning `member`'s weight, or None."""
    targets = getattr(member.layer, "targets", None) or []
    if any(target.variable is member.variable for target in targets):
        return member.layer.granularity
    return None


class ChannelCoupling:
    """The channel groups of a model and the wrapper mask slots of their members.

    Args:
        model: a Sequential or Functional model with channel-granularity wrappers.
        wrappers: its channel-granularity wrappers with binary masks.
    """

    def __init__(self, model, wrappers):
        self.groups = channel_groups(model)
        self.wrappers = list(wrappers)
        # id(variable) -> (wrapper, target index, is_bias)
        self.slots = {}
        for wrapper in self.wrappers:
            for index, target in enumerate(wrapper.targets):
                self.slots[id(target.variable)] = (wrapper, index, False)
                if wrapper.bias_masks[index] is not None:
                    self.slots[id(target.bias)] = (wrapper, index, True)
        in_groups = {id(member.variable) for group in self.groups for member in group.members}
        self.loose = [
            wrapper
            for wrapper in self.wrappers
            if not any(id(target.variable) in in_groups for target in wrapper.targets)
        ]
        self._known = {id(wrapper) for wrapper in self.wrappers}
        self.quanta = {
            group.index: channel_quantum(group, _wrapper_granularity) for group in self.groups
        }

    def covers(self, wrapper):
        return id(wrapper) in self._known

    def removable(self, group):
        """Whether `group`'s channels can be masked: removable by shrink, and every layer that
        creates its channels is wrapped."""
        creators = [member for member in group.members if _is_creator(member)]
        return (
            group.prunable
            and bool(creators)
            and all(id(member.variable) in self.slots for member in creators)
            and self.quanta[group.index] is not None
        )

    def kept_whole(self):
        """`{wrapper name: reason}` for channel wrappers that keep all their channels."""
        reasons = {}
        for wrapper in self.loose:
            if getattr(wrapper.granularity, "only_removable", True):
                reasons[wrapper.name] = "in no channel group that kp.shrink can remove"
        for group in self.groups:
            if self.removable(group):
                continue
            reason = group.reason or "a layer creating its channels is not wrapped"
            for member in group.members:
                found = self.slots.get(id(member.variable))
                if found is not None and member.role != "input":
                    reasons.setdefault(found[0].name, reason)
        return reasons

    def channel_scores(self, group, criterion, norm):
        """Importance of each channel of `group` by `criterion` (see
        `kp.graph.channel_scores`), with the gradient statistics the wrappers collected."""
        statistics = {}
        for wrapper in self.wrappers:
            for target, stats in zip(wrapper.targets, wrapper.gradient_statistics, strict=True):
                if stats.batches:
                    statistics[id(target.variable)] = stats
        return channel_importance.channel_scores(group, criterion, norm, statistics)

    def update(self, due, sparsities, step, allocation):
        """Rank the groups of the `due` wrappers and install coupled masks; returns the wrappers
        whose masks were installed."""
        due_ids = {id(wrapper) for wrapper in due}
        edits = {}  # id(wrapper) -> [[kernel mask, bias mask or None] per target]
        recorded = {}  # id(wrapper) -> sparsity to record
        owners_by_id = {}
        per_layer = self._per_layer_keep(due, sparsities, allocation)
        for group in self.groups:
            members = [
                (member, self.slots[id(member.variable)])
                for member in group.members
                if member.role != "input" and id(member.variable) in self.slots
            ]
            owners = {id(found[0]): found[0] for _, found in members}
            due_owners = [wrapper for key, wrapper in owners.items() if key in due_ids]
            if not due_owners:
                continue
            keep = np.ones(group.size, np.float32)
            if self.removable(group):
                quantum = self.quanta[group.index]
                if per_layer is None:
                    group_sparsity = max(sparsities[id(wrapper)] for wrapper in due_owners)
                    owner = due_owners[0]
                    scores = self.channel_scores(group, owner.criterion, owner.granularity.norm)
                    # Ranked and kept in aligned runs of `quantum` channels (1: one by one).
                    runs = scores.reshape(-1, quantum).sum(1)
                    kept = masks_lib.keep_count(len(runs), group_sparsity)
                    order = np.argsort(-runs, kind="stable")
                    kept_runs = np.ones(len(runs), np.float32)
                    kept_runs[order[kept:]] = 0
                    keep = np.repeat(kept_runs, quantum)
                else:
                    keep = self._union_of_creators(group, per_layer)
                    keep = np.repeat(keep.reshape(-1, quantum).max(1), quantum)
            group_sparsity = float(1.0 - keep.mean())
            for member, (wrapper, index, is_bias) in members:
                wrapper_masks = edits.setdefault(id(wrapper), self._current_masks(wrapper))
                slot = wrapper_masks[index]
                position = 1 if is_bias else 0
                slot[position] = _with_channels(slot[position], member, group, keep)
                owners_by_id[id(wrapper)] = wrapper
                recorded[id(wrapper)] = max(recorded.get(id(wrapper), 0.0), group_sparsity)
        for wrapper in self.loose:
            if id(wrapper) not in due_ids:
                continue
            if getattr(wrapper.granularity, "only_removable", True):
                edits[id(wrapper)] = [
                    [np.ones(t.variable.shape, np.float32), _ones_like_bias(wrapper, i)]
                    for i, t in enumerate(wrapper.targets)
                ]
                recorded[id(wrapper)] = 0.0
            else:
                layer = allocation_lib.PerLayerAllocation()
                from_scores = layer.allocate([wrapper.layer_scores()], [sparsities[id(wrapper)]])[0]
                edits[id(wrapper)] = [list(pair) for pair in from_scores]
                recorded[id(wrapper)] = sparsities[id(wrapper)]
            owners_by_id[id(wrapper)] = wrapper
        installed = []
        for key, wrapper_masks in edits.items():
            wrapper = owners_by_id[key]
            sparsity = sparsities.get(key, recorded.get(key, 0.0))
            wrapper.install([tuple(pair) for pair in wrapper_masks], sparsity, step)
            installed.append(wrapper)
        return installed

    # -- helpers -------------------------------------------------------------------------

    def _per_layer_keep(self, due, sparsities, allocation):
        """For an explicit allocation: `{id(kernel variable): kept-channel vector}` from the
        masks it computes layer by layer; None for the default (rank per group)."""
        plain = isinstance(allocation, allocation_lib.PerLayerAllocation) and (
            allocation.overrides is None
        )
        if plain:
            return None
        ranked = [wrapper for wrapper in due if wrapper not in self.loose]
        if not ranked:
            return {}
        computed = allocation.allocate(
            [w.layer_scores() for w in ranked], [sparsities[id(w)] for w in ranked]
        )
        kept = {}
        for wrapper, wrapper_masks in zip(ranked, computed, strict=True):
            for target, (mask, _) in zip(wrapper.targets, wrapper_masks, strict=True):
                moved = np.moveaxis(_numpy(mask), target.output_axis, 0)
                kept[id(target.variable)] = moved.reshape(moved.shape[0], -1).any(1)
        return kept

    def _union_of_creators(self, group, per_layer):
        keep = np.zeros(group.size, bool)
        for member in group.members:
            if _is_creator(member) and id(member.variable) in per_layer:
                keep |= channel_importance.by_channel(
                    member, group, per_layer[id(member.variable)]
                ).any(0)
        return keep.astype(np.float32)

    @staticmethod
    def _current_masks(wrapper):
        return [
            [
                _numpy(mask).astype(np.float32),
                None if bias_mask is None else _numpy(bias_mask).astype(np.float32),
            ]
            for mask, bias_mask in zip(wrapper.masks, wrapper.bias_masks, strict=True)
        ]


def _with_channels(mask, member, group, keep):
    """`mask` with the entries of `member` that hold `group`'s channels set from `keep`."""
    mask = mask.copy()
    positions = member.indices(np.arange(group.size))
    values = np.tile(keep, member.repeat)
    moved = np.moveaxis(mask, member.axis, 0)
    moved[positions] = values.reshape((-1,) + (1,) * (moved.ndim - 1))
    return np.moveaxis(moved, 0, member.axis)


def _ones_like_bias(wrapper, index):
    bias_mask = wrapper.bias_masks[index]
    return None if bias_mask is None else np.ones(bias_mask.shape, np.float32)
