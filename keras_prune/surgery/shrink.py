"""`shrink`: turn zeroed channels into a smaller dense Keras model with the same outputs.

The model's graph (`keras_prune.graph.tracing.trace`) is replayed call by call on new inputs:
every layer is re-created from its config with fewer filters / units and its weights sliced to
the channels that stay, every operation node (`x + h`, `x[:, 0]`, `keras.ops.*`) is called as it
is, and residual branches that compute exactly zero are left out.

Transformer structure goes the same way: a `MultiHeadAttention` whose heads have zero output
projections is rebuilt with fewer `num_heads` (`keras_prune.surgery.heads`), a keras-hub block
whose feed-forward neurons have zero output rows with a smaller `intermediate_dim`
(`keras_prune.surgery.ffn`), and residual blocks named in `remove_blocks` are bypassed
(`keras_prune.surgery.depth`).
"""

import dataclasses

import keras
import numpy as np

from keras_prune.core import validation
from keras_prune.graph import groups as groups_lib
from keras_prune.graph import tracing
from keras_prune.layers.wrapper import find_wrappers
from keras_prune.pruning.prune_strip import strip
from keras_prune.surgery import depth as depth_lib
from keras_prune.surgery import ffn as ffn_lib
from keras_prune.surgery import heads as heads_lib
from keras_prune.surgery import width as width_lib
from keras_prune.surgery import zeros as zeros_lib

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
        heads: `{attention layer name: (heads before, heads after)}` for attention layers
            that lost heads.
        feed_forward: `{block name: (neurons before, neurons after)}` for keras-hub style
            blocks whose feed-forward network lost neurons.
        removed_blocks: `{residual block name: [names of its layers]}` (`remove_blocks`).
        kept_heads: `{layer name: reason}` for zero attention heads that had to stay (inside
            a composite layer whose config cannot express fewer heads).
    """

    groups: list = dataclasses.field(default_factory=list)
    dropped: dict = dataclasses.field(default_factory=dict)
    unsupported: dict = dataclasses.field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    heads: dict = dataclasses.field(default_factory=dict)
    feed_forward: dict = dataclasses.field(default_factory=dict)
    removed_blocks: dict = dataclasses.field(default_factory=dict)
    kept_heads: dict = dataclasses.field(default_factory=dict)

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
        for name, (before, after) in self.heads.items():
            lines.append(f"  attention {name}: {before} -> {after} heads")
        for name, (before, after) in self.feed_forward.items():
            lines.append(f"  feed-forward of {name}: {before} -> {after} neurons")
        for name, reason in self.kept_heads.items():
            lines.append(f"  kept heads of {name}: {reason}")
        for name, removed in self.removed_blocks.items():
            lines.append(f"  removed residual block {name}: {', '.join(removed)}")
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
        root = analysis.atoms.root(atom)
        group = by_root.get(root)
        channels = kept[group.index] if group is not None else np.arange(analysis.atoms.size[root])
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


def _new_config(layer, call, analysis, kept_by_root, overrides):
    config = layer.get_config()
    config.update(overrides.get(id(layer), {}))
    out_layout = analysis.layouts[id(call.outputs[0])] if call.outputs else None
    if isinstance(layer, groups_lib.MIXING) and "filters" in config:
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


def _merge_inputs(call):
    """The tensors a residual merge sums, if `call` is one whose zero inputs can be left out:
    `(tensors, candidates)`, the indices that may be dropped; None otherwise."""
    operation = call.operation
    kind = type(operation).__name__
    if isinstance(operation, layers.Layer):
        if isinstance(operation, layers.Add):
            return call.inputs, range(len(call.inputs))
        if isinstance(operation, layers.Subtract):
            return call.inputs, [1]
        return None
    # `x + h` / `x - h`: only when both operands are tensors.
    if len(call.args) != 2 or call.kwargs or len(call.inputs) != 2:
        return None
    if not all(isinstance(arg, keras.KerasTensor) for arg in call.args):
        return None
    if kind == "Add":
        return call.inputs, [0, 1]
    if kind == "Subtract":
        return call.inputs, [1]
    return None


def _droppable_inputs(call, zero):
    """Indices of a merge's inputs that are exactly zero everywhere and can be left out (the
    output keeps the shape of what remains)."""
    found = _merge_inputs(call)
    if found is None:
        return []
    tensors, candidates = found

    def all_zero(tensor):
        channels = zero[id(tensor)]  # empty when the channel count is unknown: not zero
        return channels.size > 0 and bool(channels.all())

    dropped = [i for i in candidates if all_zero(tensors[i])]
    if len(dropped) == len(tensors):
        dropped = dropped[1:]
    output_shape = tuple(call.outputs[0].shape)
    remaining = [tensor for i, tensor in enumerate(tensors) if i not in dropped]
    if any(tuple(tensor.shape) != output_shape for tensor in remaining):
        return []  # the merge broadcasts: leaving an input out would change the shape
    return dropped


def _branch_layers(graph, tensor, kept_names):
    """Names of the layers and operations feeding `tensor` that are not in the new model."""
    names, stack, seen = [], [tensor], set()
    while stack:
        call = graph.producer(stack.pop())
        if call is None or id(call) in seen or call.name in kept_names:
            continue
        seen.add(id(call))
        names.append(call.name)
        stack.extend(call.inputs)
    return names


def _input_structure(model, flat):
    """`flat` new inputs arranged as `model`'s inputs (a dict, a list or a single tensor)."""
    try:
        structure = model.input
    except (AttributeError, ValueError):
        structure = None
    if structure is None or len(keras.tree.flatten(structure)) != len(flat):
        return flat[0] if len(flat) == 1 else list(flat)
    return keras.tree.pack_sequence_as(structure, flat)


def _rebuild(analysis, kept_by_root, slices, zero, report, overrides=None, bypass=None):
    graph = analysis.graph
    tensors = {}
    new_inputs = []
    for tensor in graph.inputs:
        # Inputs made without a name carry Keras's automatic tensor name: let Keras name them.
        name = None if tensor.name.startswith("keras_tensor") else tensor.name
        new = keras.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype, name=name)
        new_inputs.append(new)
        tensors[id(tensor)] = new

    def new_value(value):
        return tensors[id(value)] if isinstance(value, keras.KerasTensor) else value

    overrides = overrides or {}
    bypass = bypass or {}
    copies = {}
    skipped_inputs = {}
    for call in graph.calls:
        if any(id(tensor) not in tensors for tensor in call.inputs):
            continue  # on a dropped branch
        if id(call) in bypass:  # a removed residual block passes its input through
            tensors[id(call.outputs[0])] = tensors[id(call.inputs[bypass[id(call)]])]
            continue
        drop = _droppable_inputs(call, zero)
        if drop:
            remaining = [tensors[id(t)] for i, t in enumerate(call.inputs) if i not in drop]
            skipped_inputs[call.name] = [call.inputs[i] for i in drop]
            if len(remaining) == 1:
                outputs = remaining[0]
            else:
                layer = call.operation
                if id(layer) not in copies:
                    copies[id(layer)] = layer.__class__.from_config(layer.get_config())
                outputs = copies[id(layer)](remaining)
            tensors[id(call.outputs[0])] = outputs
            continue
        args = keras.tree.map_structure(new_value, call.args)
        kwargs = keras.tree.map_structure(new_value, call.kwargs)
        operation = call.operation
        if not call.is_layer:
            outputs = operation(*args, **kwargs)
        elif id(operation) in copies:
            outputs = copies[id(operation)](*args, **kwargs)
        else:
            config = _new_config(operation, call, analysis, kept_by_root, overrides)
            try:
                copies[id(operation)], outputs = _copy_with_slices(
                    operation, config, slices, lambda new, a=args, k=kwargs: new(*a, **k)
                )
            except (TypeError, ValueError, NotImplementedError) as error:
                # A layer that cannot be re-created from its config (custom layers without
                # get_config) keeps its own instance; its channels are locked anyway.
                if any(id(weight) in slices for weight in operation.weights):
                    raise
                report.unsupported.setdefault(operation.name, f"reused as is ({error})")
                copies[id(operation)] = operation
                outputs = operation(*args, **kwargs)
        flat = [v for v in keras.tree.flatten(outputs) if isinstance(v, keras.KerasTensor)]
        for tensor, value in zip(call.outputs, flat, strict=True):
            tensors[id(tensor)] = value
    flat_outputs = [tensors[id(tensor)] for tensor in graph.outputs]
    outputs = keras.tree.pack_sequence_as(graph.output_structure, flat_outputs)
    inputs = _input_structure(analysis.model, new_inputs)
    small = keras.Model(inputs, outputs, name=analysis.model.name)
    kept_names = {call.name for call in tracing.trace(small).calls}
    for merge, dropped in skipped_inputs.items():
        report.dropped[merge] = [
            name for tensor in dropped for name in _branch_layers(graph, tensor, kept_names)
        ]
    return small


def _structure_overrides(graph, slices, report):
    """Config changes (and weight slices, added to `slices`) that remove zero attention heads
    and zero feed-forward neurons of keras-hub style blocks."""
    head_slices, overrides, kept_whole = heads_lib.shrink_plan(graph)
    ffn_slices, ffn_configs = ffn_lib.shrink_plan(graph)
    slices.update(head_slices)
    slices.update(ffn_slices)
    for call in graph.calls:
        if not call.is_layer:
            continue
        layer = groups_lib.unwrap(call.operation)
        if "num_heads" in overrides.get(id(layer), {}):
            report.heads[layer.name] = (int(layer.num_heads), overrides[id(layer)]["num_heads"])
        if id(layer) in ffn_configs and layer.name not in report.feed_forward:
            before = int(layer.get_config()["intermediate_dim"])
            report.feed_forward[layer.name] = (before, ffn_configs[id(layer)]["intermediate_dim"])
    for layer_id, changes in ffn_configs.items():
        overrides.setdefault(layer_id, {}).update(changes)
    report.kept_heads.update(kept_whole)
    return overrides


def shrink(model, *, round_to=None, width=None, remove_blocks=None):
    """A smaller plain Keras model without the channels that are exactly zero, or of a width.

    A channel is removed when its whole group (`kp.graph.channel_groups`) is zero wherever a Conv /
    Dense consumes it: the result has fewer filters, neurons and BatchNormalization entries and
    the same outputs as `model` (up to float rounding). Residual branches that compute exactly
    zero are dropped from their `Add`. Groups the analysis cannot see through, and model inputs
    and outputs, are kept whole and listed in the report. Nested models are inlined.

    Attention heads whose output-projection rows are zero are removed from `MultiHeadAttention`
    layers (`kp.surgery.heads.mask_heads`), feed-forward neurons whose output rows are zero from
    keras-hub transformer blocks (`kp.surgery.ffn.mask_neurons`), and the residual blocks named in
    `remove_blocks` are bypassed (`kp.surgery.depth`); the outputs stay those of `model`, except for
    the removed blocks.

    Args:
        model: a built Sequential or Functional model: a plain model whose pruned channels are
            zero (e.g. from `kp.surgery.zero_group_channels`), or a model with `kp.PruneWrapper`s
            (channel granularity, or masks from `kp.surgery.heads` / `kp.surgery.ffn`; it is
            stripped first).
        round_to: None, or 4, 8 or 16: keep a multiple of this many channels per group (zero
            channels are kept to fill up), which SIMD kernels such as XNNPACK's run best.
        width: None (remove the zero channels), or a fraction in (0, 1]: keep the first
            `ceil(width * size)` channels of every prunable group, whatever their values (the
            sub-network of a `kp.dynamic.SlimmableModel`, whose trained widths it must be one
            of; the outputs are those of that sub-network, not of `model`).
        remove_blocks: residual blocks to remove (names or `kp.surgery.depth.ResidualBlock`s
            from `kp.surgery.depth.residual_blocks`): the model gets shallower.

    Returns:
        A new `keras.Model`; its `shrink_report` attribute is a `ShrinkReport`.

    Example:

    ```python
    small = kp.shrink(kp.strip(pruned), round_to=8)
    print(small.shrink_report)

    slimmable = kp.dynamic.SlimmableModel(model, widths=[0.5, 1.0])
    half = kp.shrink(slimmable, width=0.5)   # a kp.dynamic.SlimmableModel's half width
    ```
    """
    if round_to is not None:
        validation.check_int("round_to", round_to, minimum=1)
    if width is not None:
        trained = getattr(model, "trained_widths", None)
        if trained is not None:
            width = width_lib.check_trained_width(width, trained)
            model = model.backbone
        else:
            width = width_lib.check_width(width)
    validation.check_graph_model("model", model)
    if find_wrappers(model):
        model = strip(model)
    analysis = groups_lib.analyze(model)
    groups = analysis.groups()
    zero = zeros_lib.zero_channels(analysis)
    if width is None:
        removable = zeros_lib.removable_channels(analysis, groups, zero)
        kept = _kept_channels(groups, removable, round_to)
    else:
        width_lib.prunable_groups(groups, model.name)
        kept = width_lib.kept_channels(groups, width, round_to)
    kept_by_root = {group.root: kept[group.index] for group in groups}
    slices = _slices(analysis, groups, kept)
    report = ShrinkReport(unsupported=dict(analysis.unsupported))
    overrides = _structure_overrides(analysis.graph, slices, report)
    bypass = {}
    for block in depth_lib.find_blocks(model, remove_blocks or []):
        bypass.update(block.bypass)
        report.removed_blocks[block.name] = list(block.layers)
    small = _rebuild(analysis, kept_by_root, slices, zero, report, overrides, bypass)
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
