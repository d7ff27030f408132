"""`shrink`: turn zeroed channels into a smaller dense Keras model with the same outputs."""

import dataclasses

import keras
import numpy as np

from keras_prune.core import validation
from keras_prune.graph import groups as groups_lib

layers = keras.layers


@dataclasses.dataclass
class ShrinkReport:
    """What `shrink` removed and what it had to keep, each with a reason.

    Attributes:
        groups: one row per channel group: `{"index", "layers", "before", "after", "reason"}`
            (`reason` is None for prunable groups).
        dropped: `{merge layer name: [names of the layers whose branch was dropped]}` for
            residual branches that were exactly zero.
        unsupported: `{layer name: reason}` for layers the dependency analysis could not see
            through; the channels around them were kept.
        params_before, params_after: parameter counts of the input and the result.
    """

    groups: list = dataclasses.field(default_factory=list)
    dropped: dict = dataclasses.field(default_factory=dict)
    unsupported: dict = dataclasses.field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0

    @property
    def channels_before(self):
        return sum(row["before"] for row in self.groups if row["reason"] is None)

    @property
    def channels_after(self):
        return sum(row["after"] for row in self.groups if row["reason"] is None)

    def __str__(self):
        lines = [
            f"Channels in prunable groups: {self.channels_before} -> {self.channels_after}; "
            f"parameters: {self.params_before:,} -> {self.params_after:,}"
        ]
        for row in self.groups:
            if row["reason"] is None and row["before"] != row["after"]:
                lines.append(
                    f"  group {row['index']} {row['before']} -> {row['after']}: "
                    + ", ".join(row["layers"])
                )
        for merge, branch in self.dropped.items():
            lines.append(f"  dropped zero branch into {merge}: {', '.join(branch) or '-'}")
        kept = [row for row in self.groups if row["reason"] is not None]
        for row in kept:
            lines.append(f"  kept group {row['index']} ({row['size']} channels): {row['reason']}")
        return "\n".join(lines)


def _count_params(model):
    return int(sum(int(np.prod(weight.shape)) for weight in model.weights))


def _kept_channels(groups, removable, round_to):
    """`{group index: sorted kept channel indices}`."""
    kept = {}
    for group in groups:
        keep = ~removable[group.index]
        count = int(keep.sum())
        if count == 0:
            # Layers cannot have zero channels; one zero channel changes nothing.
            count = 1
        if round_to:
            count = min(group.size, -(-count // round_to) * round_to)
        # Channels to restore are zero where consumed, so any of them keeps outputs exact.
        restore = np.flatnonzero(~keep)[: count - int(keep.sum())]
        keep[restore] = True
        kept[group.index] = np.flatnonzero(keep)
    return kept


def _slices(analysis, groups, kept):
    """`{id(variable): {axis: kept indices}}` for every member weight axis."""
    by_root = {group.root: group for group in groups}
    per_axis = {}
    for atom, member in analysis.members:
        group = by_root.get(analysis.atoms.root(atom))
        size = analysis.atoms.size[analysis.atoms.root(atom)]
        channels = kept[group.index] if group is not None else np.arange(size)
        key = (id(member.variable), member.axis)
        per_axis.setdefault(key, []).append(member.indices(channels))
    result = {}
    for (variable_id, axis), parts in per_axis.items():
        result.setdefault(variable_id, {})[axis] = np.sort(np.concatenate(parts))
    return result


def _layout_channels(analysis, layout, kept_by_root):
    return sum(
        len(kept_by_root.get(analysis.atoms.root(atom), range(size)))
        for atom, size, _ in layout.offsets()
    )


def _new_config(layer, node, analysis, kept_by_root):
    config = layer.get_config()
    out_layout = analysis.layouts[id(node.outputs[0])] if node.outputs else None
    if isinstance(layer, groups_lib._MIXING) and "filters" in config:
        config["filters"] = _layout_channels(analysis, out_layout, kept_by_root)
    elif isinstance(layer, layers.Dense):
        config["units"] = _layout_channels(analysis, out_layout, kept_by_root)
    elif isinstance(layer, layers.Reshape):
        channels = _layout_channels(analysis, out_layout, kept_by_root)
        target = list(config["target_shape"])
        target[-1] = channels * out_layout.repeat if len(target) == 1 else channels
        config["target_shape"] = tuple(target)
    return config


def _copy_with_slices(layer, config, slices, call):
    """A fresh layer from `config`, built by `call`, holding `layer`'s weights sliced."""
    new = layer.__class__.from_config(config)
    outputs = call(new)
    values = []
    for variable in layer.weights:
        value = np.asarray(keras.ops.convert_to_numpy(variable))
        for axis, indices in slices.get(id(variable), {}).items():
            value = np.take(value, indices, axis=axis)
        values.append(value)
    new.set_weights(values)
    return new, outputs


def _droppable_inputs(layer, zero, input_ids):
    """Indices of a merge's inputs that are exactly zero everywhere and can be left out."""
    if isinstance(layer, layers.Add):
        candidates = range(len(input_ids))
    elif isinstance(layer, layers.Subtract):
        candidates = [1]
    else:
        return []
    dropped = [i for i in candidates if zero[input_ids[i]].all()]
    if len(dropped) == len(input_ids):
        dropped = dropped[1:]
    return dropped


def _branch_layers(analysis, tensor_id, kept_names):
    """Names of the layers feeding `tensor_id` that are not in the new model (`kept_names`)."""
    producers = {}
    for step in analysis.steps:
        if isinstance(step, groups_lib._Call):
            for tensor in step.node.outputs:
                producers[id(tensor)] = step
    names, stack, seen = [], [tensor_id], set()
    aliases = {
        step.target: step.source for step in analysis.steps if isinstance(step, groups_lib._Alias)
    }
    while stack:
        current = stack.pop()
        current = aliases.get(current, current)
        step = producers.get(current)
        if step is None or id(step.node) in seen or step.layer.name in kept_names:
            continue
        seen.add(id(step.node))
        names.append(step.layer.name)
        stack.extend(id(tensor) for tensor in step.node.input_tensors)
    return names


def _rebuild(analysis, kept_by_root, slices, zero, report):
    functional = analysis.functional
    tensors = {}
    new_inputs = []
    for tensor in functional.inputs:
        history = getattr(tensor, "_keras_history", None)
        name = getattr(getattr(history, "operation", None), "name", None) or tensor.name
        new = keras.Input(shape=tuple(tensor.shape[1:]), dtype=tensor.dtype, name=name)
        new_inputs.append(new)
        tensors[id(tensor)] = new
    copies = {}
    skipped_inputs = {}
    for step in analysis.steps:
        if isinstance(step, groups_lib._Alias):
            if step.source in tensors:
                tensors[step.target] = tensors[step.source]
            continue
        node, layer = step.node, step.layer
        input_ids = [id(tensor) for tensor in node.input_tensors]
        if any(tensor_id not in tensors for tensor_id in input_ids):
            continue
        drop = _droppable_inputs(layer, zero, input_ids)
        if drop:
            remaining = [tensors[t] for i, t in enumerate(input_ids) if i not in drop]
            skipped_inputs[layer.name] = [input_ids[i] for i in drop]
            if len(remaining) == 1:
                outputs = remaining[0]
            else:
                if id(layer) not in copies:
                    copies[id(layer)] = layer.__class__.from_config(layer.get_config())
                outputs = copies[id(layer)](remaining)
            tensors[id(node.outputs[0])] = outputs
            continue
        args, kwargs = node.arguments.fill_in(tensors)
        if id(layer) in copies:
            outputs = copies[id(layer)](*args, **kwargs)
        else:
            config = _new_config(layer, node, analysis, kept_by_root)
            try:
                copies[id(layer)], outputs = _copy_with_slices(
                    layer, config, slices, lambda new, a=args, k=kwargs: new(*a, **k)
                )
            except (TypeError, ValueError, NotImplementedError) as error:
                # A layer that cannot be re-created from its config (custom layers without
                # get_config) keeps its own instance; its channels are locked anyway.
                if any(id(weight) in slices for weight in layer.weights):
                    raise
                report.unsupported.setdefault(layer.name, f"reused as is ({error})")
                copies[id(layer)] = layer
                outputs = layer(*args, **kwargs)
        flat = keras.tree.flatten(outputs)
        for tensor, value in zip(node.outputs, flat, strict=True):
            tensors[id(tensor)] = value
    outputs = [tensors[id(tensor)] for tensor in functional.outputs]
    outputs = outputs[0] if len(outputs) == 1 else outputs
    inputs = new_inputs[0] if len(new_inputs) == 1 else new_inputs
    small = keras.Model(inputs, outputs, name=analysis.model.name)
    kept_names = {layer.name for layer in small.layers}
    for merge, dropped_ids in skipped_inputs.items():
        report.dropped[merge] = [
            name
            for tensor_id in dropped_ids
            for name in _branch_layers(analysis, tensor_id, kept_names)
        ]
    return small


def shrink(model, *, round_to=None):
    """A smaller plain Keras model without the channels that are exactly zero.

    A channel is removed when its whole group (`kp.channel_groups`) is zero wherever a Conv /
    Dense consumes it: the result has fewer filters, neurons and BatchNormalization entries and
    the same outputs as `model` (up to float rounding). Residual branches that compute exactly
    zero are dropped from their `Add`. Groups the analysis cannot see through, and model inputs
    and outputs, are kept whole and listed in the report. Nested models are inlined.

    Args:
        model: a built Sequential or Functional model: a plain model whose pruned channels are
            zero (e.g. from `kp.zero_group_channels`), or a model with `kp.PruneWrapper`s
            pruned at channel granularity (it is stripped first).
        round_to: None, or 4, 8 or 16: keep a multiple of this many channels per group (zero
            channels are kept to fill up), which SIMD kernels such as XNNPACK's run best.

    Returns:
        A new `keras.Model`; its `shrink_report` attribute is a `ShrinkReport`.

    Example:

    ```python
    small = kp.shrink(kp.strip(pruned), round_to=8)
    print(small.shrink_report)
    ```
    """
    if round_to is not None:
        validation.check_int("round_to", round_to, minimum=1)
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a built keras.Model (Sequential or Functional). Received: model={model!r}"
        )
    from keras_prune.pruning import prune_strip as pruning

    if pruning.find_wrappers(model):
        model = pruning.strip(model)
    analysis = groups_lib.analyze(model)
    groups = analysis.groups()
    zero = groups_lib.zero_channels(analysis)
    removable = groups_lib.removable_channels(analysis, groups, zero)
    kept = _kept_channels(groups, removable, round_to)
    kept_by_root = {group.root: kept[group.index] for group in groups}
    slices = _slices(analysis, groups, kept)
    report = ShrinkReport(unsupported=dict(analysis.unsupported))
    small = _rebuild(analysis, kept_by_root, slices, zero, report)
    for group in groups:
        report.groups.append(
            {
                "index": group.index,
                "layers": group.layer_names,
                "size": group.size,
                "before": group.size,
                "after": len(kept[group.index]),
                "reason": group.reason,
            }
        )
    report.params_before = _count_params(model)
    report.params_after = _count_params(small)
    small.shrink_report = report
    return small
