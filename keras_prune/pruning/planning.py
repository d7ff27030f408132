"""What `kp.prune` wraps, layer by layer, with which granularity, and why it leaves the rest.

The granularity of a layer is the one `kp.prune` was given, or, for a `kp.granularity.ByLayer`
(`granularity="mobile"`), the one for the layer's kind. Channel pruning is planned on the
model's channel groups first: a layer is pruned by channels only if `kp.shrink` can remove
them (`removable_layers`), and a BatchNormalization follows its group. Channels that feed a
layer pruned in 1x4 blocks are removed in aligned runs of 4 (`kp.engine.coupling`), and kept
whole where such runs do not line up with the blocks.
"""

import dataclasses

import keras

from keras_prune.core import granularity as granularity_lib
from keras_prune.engine import coupling
from keras_prune.graph import groups as groups_lib
from keras_prune.layers import layouts
from keras_prune.layers.wrapper import PruneWrapper
from keras_prune.pruning.pruned_model import wrapper_settings

# Why a layer was not wrapped; shown in `PruneReport`.
ALREADY_WRAPPED = "already wrapped for pruning"
NO_PRUNABLE_WEIGHTS = "no prunable weights"
UNKNOWN_WEIGHTS = (
    "holds weights keras_prune does not know how to prune; give the layer a "
    "`get_prunable_weights()` method returning the variables to prune"
)
FILTERED = "excluded by `filters`"
NESTED_SUBCLASSED = (
    "a subclassed model inside the graph; prune it on its own with kp.prune (in place) first"
)
CHANNELS_NOT_REMOVABLE = "channel granularity: none of its channels can be removed"
NOT_BUILT = "not built and not a layer type keras_prune knows"
BATCH_NORM_NOT_FOLLOWING = "in no channel group that is pruned: its scales stay as they are"
KIND_NOT_PRUNED = "the granularity leaves {kind} layers unpruned (ByLayer({argument}=None))"
NOT_CHANNEL_PRUNED = "a layer creating its channels is not pruned by channels ({names})"
SPLITS_GROUPS = (
    "its channels feed {names}, pruned in groups of input channels (blocks, N:M) that do not "
    "line up with them: removing any would split those groups"
)
NO_GRAPH = "the model is subclassed: no graph to couple channels"


@dataclasses.dataclass
class PruneReport:
    """What `prune` wrapped and what it left alone, each with a reason.

    Attributes:
        wrapped: names of the layers now inside a `PruneWrapper`.
        skipped: `{layer name: reason}` for every layer left as it was.
        left_alone: `{weight path: reason}` for every weight that is not pruned (biases,
            normalization, weights of layers keras_prune does not know, ...).
        in_place: True when a subclassed model was pruned in place.
        shares_weights: None, or why the pruned model could not be a copy and shares its layers
            (and weights) with the original.
        granularities: `{layer name: granularity}` of every wrapped layer.
    """

    wrapped: list = dataclasses.field(default_factory=list)
    skipped: dict = dataclasses.field(default_factory=dict)
    left_alone: dict = dataclasses.field(default_factory=dict)
    in_place: bool = False
    shares_weights: str | None = None
    granularities: dict = dataclasses.field(default_factory=dict)

    def __str__(self):
        how = " in place" if self.in_place else ""
        lines = [f"Pruning {len(self.wrapped)} layer(s){how}: {', '.join(self.wrapped) or '-'}"]
        by_granularity = {}
        for name, granularity in self.granularities.items():
            by_granularity.setdefault(repr(granularity), []).append(name)
        if len(by_granularity) > 1:
            lines.extend(f"  {g}: {', '.join(n)}" for g, n in by_granularity.items())
        if self.shares_weights:
            lines.append(
                "  the pruned model shares its layers and weights with the original: "
                + self.shares_weights
            )
        for name, reason in self.skipped.items():
            lines.append(f"  skipped {name}: {reason}")
        unknown = {p: r for p, r in self.left_alone.items() if r == layouts.UNKNOWN}
        if unknown:
            lines.append(f"  weights not pruned ({layouts.UNKNOWN}):")
            lines.extend(f"    {path}" for path in unknown)
        return "\n".join(lines)


@dataclasses.dataclass
class Settings:
    """What every wrapper `kp.prune` creates is given (the granularity may be a `ByLayer`)."""

    schedule: object
    granularity: object
    mask: object
    criterion: object
    allocation: object

    def granularity_for(self, layer, channel_planned=True):
        """The granularity of `layer` (None: its kind is left unpruned). With a `ByLayer`, a
        BatchNormalization follows the channels when any kind is pruned by channels."""
        chosen = self.granularity
        if not isinstance(chosen, granularity_lib.ByLayer):
            return chosen
        if layouts.channelwise_weights(layer) and chosen.channel is not None and channel_planned:
            return chosen.channel
        return chosen.for_layer(layer)

    def prunes_channels(self):
        chosen = self.granularity
        if isinstance(chosen, granularity_lib.ByLayer):
            return chosen.channel is not None
        return isinstance(chosen, granularity_lib.Channel)

    def wrap(self, layer, granularity=None):
        return PruneWrapper(
            layer,
            schedule=self.schedule,
            granularity=self.granularity if granularity is None else granularity,
            mask=self.mask,
            criterion=self.criterion,
            allocation=self.allocation,
        )


def is_channel(granularity):
    return isinstance(granularity, granularity_lib.Channel)


def removable_layers(model, selected, settings):
    """Names of the layers owning a weight in a channel group that can be removed once wrapped
    (removable by shrink, every layer creating its channels selected by `filters` and pruned by
    channels, and the groups of input channels of the layers consuming them, if any, lined up
    with them), and why the other channel-creating layers keep their channels."""
    removable, reasons = set(), {}
    for group in groups_lib.channel_groups(model):
        creators = [m for m in group.members if m.role == "output" and len(m.variable.shape) > 1]
        reason = group.reason
        if reason is None and not all(selected(m.layer) for m in creators):
            reason = "a layer creating its channels is excluded by `filters`"
        if reason is None:
            reason = _mixed_reason(group, creators, settings, selected)
        for member in group.members:
            if member.role == "input":
                continue
            if reason is None:
                removable.add(member.layer.name)
            elif member.role == "output":
                reasons.setdefault(member.layer.name, reason)
    return removable, reasons


def _mixed_reason(group, creators, settings, selected):
    """Why a `ByLayer` granularity keeps `group` whole, or None."""
    if not isinstance(settings.granularity, granularity_lib.ByLayer):
        return None
    others = sorted(
        {m.layer.name for m in creators if not is_channel(settings.granularity_for(m.layer))}
    )
    if others:
        return NOT_CHANNEL_PRUNED.format(names=", ".join(others))

    def consumer(member):
        if not selected(member.layer):
            return None
        granularity = settings.granularity_for(member.layer)
        return granularity if _applies(granularity, member) else None

    if coupling.channel_quantum(group, consumer) is None:
        splitting = sorted(
            m.layer.name
            for m in group.members
            if m.role == "input" and getattr(consumer(m), "input_group_size", 1) > 1
        )
        return SPLITS_GROUPS.format(names=", ".join(splitting))
    return None


def _applies(granularity, member):
    """Whether `granularity` prunes the weight of `member` (not left alone as not fitting)."""
    if granularity is None:
        return False
    for target in layouts.prunable_weights(member.layer):
        if target.variable is member.variable:
            try:
                granularity.check(target)
            except ValueError:
                return False
            return True
    return False


class Planner:
    """Decides, layer by layer, what `prune` wraps, and fills the report.

    Args:
        settings: the `Settings` of the wrappers.
        selected: `layer -> bool` from `filters`.
        report: the `PruneReport` to fill.
        removable: names of the layers whose channels can be removed (None: not known, the
            model is not built).
        channel_reasons: `{layer name: why its channels cannot be removed}`.
    """

    def __init__(self, settings, selected, report, removable=None, channel_reasons=None):
        self.settings = settings
        self.selected = selected
        self.report = report
        self.removable = removable
        self.channel_reasons = channel_reasons or {}
        #: Why channels cannot be removed, for a layer `channel_reasons` does not name.
        self.channel_reason = None
        self.plan = {}

    def decide(self, layer):
        """The wrapper for `layer`, or `layer` itself, with the reason recorded."""
        granularity = self.settings.granularity_for(
            layer, channel_planned=self.removable is not None
        )
        reason = self._reason_to_skip(layer, granularity)
        if reason is not None:
            why_each = {}
            if reason == NO_PRUNABLE_WEIGHTS:
                why_each = {id(v): why for v, why in layouts.weight_plan(layer).left_alone}
                if layouts.UNKNOWN in why_each.values():
                    reason = UNKNOWN_WEIGHTS
            self.report.skipped[layer.name] = reason
            for variable in layer.weights:
                self.report.left_alone.setdefault(variable.path, why_each.get(id(variable), reason))
            return layer
        wrapper = self.settings.wrap(layer, granularity)
        self.report.wrapped.append(layer.name)
        self.report.granularities[layer.name] = wrapper.granularity
        self.plan[layer.name] = wrapper_settings(wrapper)
        if layer.built:
            for variable, why in layouts.weight_plan(layer).left_alone:
                self.report.left_alone[variable.path] = why
            for target in layouts.prunable_weights(layer):
                try:
                    wrapper.granularity.check(target)
                except ValueError as error:
                    self.report.left_alone[target.variable.path] = str(error)
        return wrapper

    def _reason_to_skip(self, layer, granularity):
        if isinstance(layer, PruneWrapper):
            return ALREADY_WRAPPED
        if isinstance(layer, keras.Model):
            return NESTED_SUBCLASSED
        if not layer.built:
            if not layouts.is_known_prunable(layer):
                return NOT_BUILT
            return None if granularity is not None else self._kind_reason(layer)
        if is_channel(granularity) and layouts.channelwise_weights(layer):
            # A BatchNormalization follows the channels of its group, whatever `filters` says.
            if self.removable is None or layer.name in self.removable:
                return None
            return BATCH_NORM_NOT_FOLLOWING
        if not layouts.prunable_weights(layer):
            return NO_PRUNABLE_WEIGHTS
        if not self.selected(layer):
            return FILTERED
        if granularity is None:
            return self._kind_reason(layer)
        if is_channel(granularity):
            if self.removable is not None and layer.name not in self.removable:
                if getattr(granularity, "only_removable", True):
                    why = self.channel_reasons.get(layer.name, self.channel_reason)
                    return CHANNELS_NOT_REMOVABLE + (f" ({why})" if why else "")
        errors = []
        for target in layouts.prunable_weights(layer):
            try:
                granularity.check(target)
            except ValueError as error:
                errors.append(str(error))
        if errors and len(errors) == len(layouts.prunable_weights(layer)):
            return errors[0]
        return None

    def _kind_reason(self, layer):
        kind = granularity_lib.ByLayer.kind(layer)
        return KIND_NOT_PRUNED.format(kind=kind.replace("_", "-"), argument=kind)
