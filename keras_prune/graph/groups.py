"""Channel dependency groups: which weights must lose the same channels together.

Removing output channel `c` of a Conv2D is only possible if every weight that touches that
channel loses it too: the BatchNormalization after it, a DepthwiseConv2D that filters it, the
input rows of every layer that consumes it, and, through a residual `Add`, every other branch
summed into the same tensor. `channel_groups(model)` traces a Sequential or Functional model
(nested models included) and returns those sets as `Group`s; `kp.shrink` and
`kp.prune_channels` use them to remove channels physically, and channel-granularity pruning uses
them so that what is masked during training is exactly what can be removed afterwards.

How channels flow, layer by layer:

- Conv1D/2D/3D, Dense, SeparableConv*: consume their input's channels (kernel input rows) and
  start a new channel space (kernel output columns, bias).
- BatchNormalization, DepthwiseConv* (depth multiplier 1), activations, dropout, pooling,
  padding, cropping, upsampling, global pooling: keep their input's channels (per-channel
  weights belong to the input's group).
- Add, Subtract, Multiply, Average, Maximum, Minimum: all inputs share their channels, so their
  groups merge (residual connections).
- Concatenate on the channel axis: the output is the inputs' channels side by side (offsets).
- Flatten / Reshape to a vector after a convolution: every channel becomes one unit per spatial
  position (unit `p * channels + c`), so a following Dense loses several rows per channel.

Channels are never removed from model inputs or outputs, nor from a group that touches a layer
this analysis does not understand (custom layers, LayerNormalization, Softmax over channels,
grouped convolutions, ...): such groups are kept whole, with the reason in `Group.reason`.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_prune.layers.wrapper import PruneWrapper

layers = keras.layers

_MIXING = (
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.Dense,
    layers.SeparableConv1D,
    layers.SeparableConv2D,
)
_DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
_TRANSPOSE = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_ACTIVATIONS = (layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU)
_PASS_THROUGH = (
    layers.Dropout,
    layers.SpatialDropout1D,
    layers.SpatialDropout2D,
    layers.SpatialDropout3D,
    layers.GaussianNoise,
    layers.GaussianDropout,
    layers.AlphaDropout,
    layers.ActivityRegularization,
    layers.Identity,
    layers.MaxPooling1D,
    layers.MaxPooling2D,
    layers.MaxPooling3D,
    layers.AveragePooling1D,
    layers.AveragePooling2D,
    layers.AveragePooling3D,
    layers.GlobalAveragePooling1D,
    layers.GlobalAveragePooling2D,
    layers.GlobalAveragePooling3D,
    layers.GlobalMaxPooling1D,
    layers.GlobalMaxPooling2D,
    layers.GlobalMaxPooling3D,
    layers.ZeroPadding1D,
    layers.ZeroPadding2D,
    layers.ZeroPadding3D,
    layers.Cropping1D,
    layers.Cropping2D,
    layers.Cropping3D,
    layers.UpSampling1D,
    layers.UpSampling2D,
    layers.UpSampling3D,
)
_SUM_LIKE = (layers.Add, layers.Subtract, layers.Average, layers.Maximum, layers.Minimum)


@dataclasses.dataclass(frozen=True)
class Member:
    """One weight axis whose entries belong to a group's channels.

    Attributes:
        layer: the layer in the graph holding the weight (a `PruneWrapper` when wrapped).
        variable: the Keras variable.
        axis: the axis of `variable` indexed by the group's channels (non-negative).
        role: "output" (a kernel's output columns or its bias: the layer creates these
            channels), "input" (a kernel's input rows: the layer consumes them) or "channelwise"
            (per-channel weights: BatchNormalization, depthwise kernels).
        offset: position of the group's first channel in the tensor's channel axis (after a
            Concatenate).
        stride: number of channels of that tensor.
        repeat: units per channel after a Flatten (spatial positions); entry `p * stride +
            offset + c` belongs to channel `c` for every `p < repeat`.
    """

    layer: object
    variable: object
    axis: int
    role: str
    offset: int = 0
    stride: int = 0
    repeat: int = 1

    def indices(self, channels):
        """Positions along `axis` that hold `channels` (an int array of group channels)."""
        channels = np.asarray(channels, dtype=np.int64)
        starts = np.arange(self.repeat, dtype=np.int64)[:, None] * self.stride
        return (starts + self.offset + channels[None, :]).reshape(-1)


@dataclasses.dataclass
class Group:
    """Channels that must be removed together from every member weight.

    Attributes:
        index: position in the list `channel_groups` returned.
        size: number of channels.
        members: the `Member` weight axes indexed by these channels.
        reason: why the group must be kept whole, or None if its channels can be removed.
    """

    index: int
    size: int
    members: list
    reason: object = None
    root: int = dataclasses.field(default=-1, repr=False, compare=False)

    @property
    def prunable(self):
        return self.reason is None

    @property
    def layer_names(self):
        names = []
        for member in self.members:
            if member.layer.name not in names:
                names.append(member.layer.name)
        return names

    def output_channels(self):
        """`{layer name: (variable, axis, indices)}` for the layers that create these channels:
        what a channel mask on that layer's kernel covers (all `size` channels)."""
        owned = {}
        everything = np.arange(self.size)
        for member in self.members:
            if member.role == "output" and len(member.variable.shape) > 1:
                owned[member.layer.name] = (
                    member.variable,
                    member.axis,
                    member.indices(everything),
                )
        return owned

    def __repr__(self):
        state = "prunable" if self.prunable else f"kept: {self.reason}"
        return f"Group({self.index}, size={self.size}, layers={self.layer_names}, {state})"


# -- tracing -----------------------------------------------------------------------------------


class _Atoms:
    """Union-find over channel spaces ("atoms"), each with a size and an optional lock reason."""

    def __init__(self):
        self.parent = []
        self.size = []
        self.reasons = []

    def new(self, size, reason=None):
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        self.reasons.append([reason] if reason else [])
        return len(self.parent) - 1

    def root(self, atom):
        while self.parent[atom] != atom:
            self.parent[atom] = self.parent[self.parent[atom]]
            atom = self.parent[atom]
        return atom

    def union(self, a, b):
        a, b = self.root(a), self.root(b)
        if a != b:
            self.parent[b] = a
            self.reasons[a].extend(self.reasons[b])

    def lock(self, atom, reason):
        reasons = self.reasons[self.root(atom)]
        if reason not in reasons:
            reasons.append(reason)


@dataclasses.dataclass(frozen=True)
class Layout:
    """A tensor's channel axis: consecutive segments (atom, size), repeated `repeat` times."""

    segments: tuple
    repeat: int = 1

    @property
    def channels(self):
        return sum(size for _, size in self.segments)

    def offsets(self):
        offset = 0
        for atom, size in self.segments:
            yield atom, size, offset
            offset += size


@dataclasses.dataclass
class _Call:
    layer: object
    node: object


@dataclasses.dataclass
class _Alias:
    target: int
    source: int


def _functional_of(model):
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(
                f"Sequential model {model.name!r} has no traced graph. Start it with "
                "`keras.Input(shape)` or call `model.build(input_shape)` first."
            )
        return functional
    if isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth"):
        return model
    return None


def _trace(model):
    """Flatten `model` (nested models inlined) into `_Call` / `_Alias` steps in run order."""
    top = _functional_of(model)
    if top is None:
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}) is subclassed: its graph cannot be "
            "traced. Build it with the Functional or Sequential API."
        )
    steps, inlined = [], set()
    counts = {}

    def count_calls(functional):
        for nodes in functional._nodes_by_depth.values():
            for node in nodes:
                if node.operation is not None and not node.is_input:
                    counts[id(node.operation)] = counts.get(id(node.operation), 0) + 1
                    inner = (
                        _functional_of(node.operation)
                        if isinstance(node.operation, keras.Model)
                        else None
                    )
                    if inner is not None:
                        count_calls(inner)

    def visit(functional):
        for depth in sorted(functional._nodes_by_depth, reverse=True):
            for node in functional._nodes_by_depth[depth]:
                operation = node.operation
                if operation is None or node.is_input:
                    continue
                inner = _functional_of(operation) if isinstance(operation, keras.Model) else None
                if inner is not None and counts[id(operation)] == 1 and id(inner) not in inlined:
                    inlined.add(id(inner))
                    for inner_input, outer in zip(inner.inputs, node.input_tensors, strict=True):
                        steps.append(_Alias(id(inner_input), id(outer)))
                    visit(inner)
                    for outer, inner_output in zip(node.outputs, inner.outputs, strict=True):
                        steps.append(_Alias(id(outer), id(inner_output)))
                else:
                    steps.append(_Call(operation, node))

    count_calls(top)
    visit(top)
    return top, steps


def _inner(layer):
    return layer.layer if isinstance(layer, PruneWrapper) else layer


def _axis(axis, rank):
    return axis % rank


class _Analysis:
    """Channel layouts of every tensor of a traced model, and the members of every atom."""

    def __init__(self, model):
        self.model = model
        self.functional, self.steps = _trace(model)
        self.atoms = _Atoms()
        self.layouts = {}
        self.members = []  # (atom, Member)
        self.mixing_edges = []  # (tensor id, layer)
        self.own_atoms = {}  # id(layer) -> atom of the channels it creates
        self.first_inputs = {}  # id(layer) -> Layout of its first call's input
        self.shape_of = {}
        self.unsupported = {}  # layer name -> reason
        self.unsupported_nodes = set()
        self._node = None
        for tensor in self.functional.inputs:
            self.shape_of[id(tensor)] = tuple(tensor.shape)
            self.layouts[id(tensor)] = Layout(
                ((self.atoms.new(tensor.shape[-1], "model input"), tensor.shape[-1]),)
            )
        for step in self.steps:
            if isinstance(step, _Alias):
                self.layouts[step.target] = self.layouts[step.source]
                self.shape_of[step.target] = self.shape_of[step.source]
            else:
                self._call(step)
        for tensor in self.functional.outputs:
            for atom, _, _ in self.layouts[id(tensor)].offsets():
                self.atoms.lock(atom, "feeds a model output")

    # -- helpers -----------------------------------------------------------------------------

    def _add_members(self, layer, variable, axis, layout, role):
        if variable is None:
            return
        axis = _axis(axis, len(variable.shape))
        for atom, _, offset in layout.offsets():
            member = Member(layer, variable, axis, role, offset, layout.channels, layout.repeat)
            self.members.append((atom, member))

    def _fresh(self, channels, reason):
        return Layout(((self.atoms.new(channels, reason), channels),))

    def _union_layouts(self, layouts, name):
        """Merge element-wise inputs; returns False (and locks them) if they do not line up."""
        first = layouts[0]
        shapes = {(tuple(size for _, size in lay.segments), lay.repeat) for lay in layouts}
        if len(shapes) != 1:
            for layout in layouts:
                for atom, _, _ in layout.offsets():
                    self.atoms.lock(atom, f"{name} combines tensors with different channel splits")
            return False
        for layout in layouts[1:]:
            for (a, _), (b, _) in zip(first.segments, layout.segments, strict=True):
                self.atoms.union(a, b)
        return True

    def _unsupported(self, layer, inputs, output_tensors, reason):
        self.unsupported[layer.name] = reason
        self.unsupported_nodes.add(id(self._node))
        for layout in inputs:
            for atom, _, _ in layout.offsets():
                self.atoms.lock(atom, f"used by {layer.name!r}: {reason}")
        return [
            self._fresh(tensor.shape[-1] or 0, f"made by {layer.name!r}: {reason}")
            for tensor in output_tensors
        ]

    def _own_atom(self, layer, channels):
        if id(layer) not in self.own_atoms:
            self.own_atoms[id(layer)] = self.atoms.new(channels)
        return Layout(((self.own_atoms[id(layer)], channels),))

    def _shared_input(self, layer, layout):
        """A layer called several times must see the same channel split every time."""
        first = self.first_inputs.setdefault(id(layer), layout)
        if first is layout:
            return True
        return self._union_layouts([first, layout], layer.name)

    # -- per-layer rules ---------------------------------------------------------------------

    def _call(self, step):
        node, graph_layer = step.node, step.layer
        self._node = node
        layer = _inner(graph_layer)
        inputs = [self.layouts[id(tensor)] for tensor in node.input_tensors]
        in_shapes = [tuple(tensor.shape) for tensor in node.input_tensors]
        for tensor in node.outputs:
            self.shape_of[id(tensor)] = tuple(tensor.shape)
        input_ids = [id(tensor) for tensor in node.input_tensors]
        outputs = self._rule(graph_layer, layer, inputs, in_shapes, input_ids, node.outputs)
        for tensor, layout in zip(node.outputs, outputs, strict=True):
            self.layouts[id(tensor)] = layout

    def _rule(self, graph_layer, layer, inputs, in_shapes, input_ids, output_tensors):
        name = type(layer).__name__
        single = len(inputs) == 1 and len(output_tensors) == 1
        layout = inputs[0] if inputs else None
        first_call = id(graph_layer) not in self.first_inputs
        if single and not self._shared_input(graph_layer, layout):
            return self._unsupported(
                layer, inputs, output_tensors, "shared layer called on different channel splits"
            )
        channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"

        if isinstance(layer, _DEPTHWISE + _SEPARABLE) and not (
            single and channels_last and layer.depth_multiplier == 1 and layout.repeat == 1
        ):
            return self._unsupported(
                layer, inputs, output_tensors, "depth_multiplier > 1 or channels_first"
            )
        if isinstance(layer, _DEPTHWISE):
            if first_call:
                self._add_members(graph_layer, layer.kernel, -2, layout, "channelwise")
                self._add_members(graph_layer, layer.bias, 0, layout, "channelwise")
            return [layout]
        if isinstance(layer, _MIXING) and not isinstance(layer, _TRANSPOSE):
            if not single or not channels_last or getattr(layer, "groups", 1) != 1:
                return self._unsupported(
                    layer, inputs, output_tensors, "grouped or channels_first convolution"
                )
            if not isinstance(layer, layers.Dense) and layout.repeat != 1:
                return self._unsupported(layer, inputs, output_tensors, "flattened input")
            out_channels = output_tensors[0].shape[-1]
            if isinstance(layer, _SEPARABLE):
                kernel = layer.pointwise_kernel
                if first_call:
                    self._add_members(
                        graph_layer, layer.depthwise_kernel, -2, layout, "channelwise"
                    )
            else:
                kernel = layer.kernel
            if first_call:
                self._add_members(graph_layer, kernel, -2, layout, "input")
            self.mixing_edges.append((input_ids[0], graph_layer))
            out = self._own_atom(graph_layer, out_channels)
            if first_call:
                self._add_members(graph_layer, kernel, -1, out, "output")
                self._add_members(graph_layer, layer.bias, 0, out, "output")
            return [out]
        if isinstance(layer, layers.BatchNormalization):
            rank = len(in_shapes[0])
            if _axis(layer.axis, rank) != rank - 1:
                return self._unsupported(
                    layer, inputs, output_tensors, "normalizes a non-last axis"
                )
            if first_call:
                for variable in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance):
                    self._add_members(graph_layer, variable, 0, layout, "channelwise")
            return [layout]
        if isinstance(layer, _ACTIVATIONS) or (
            isinstance(layer, layers.Rescaling)
            and np.ndim(layer.scale) == 0
            and np.ndim(layer.offset) == 0
        ):
            activation = getattr(layer, "activation", None)
            activation_name = getattr(activation, "__name__", "")
            if "softmax" in activation_name:
                return self._unsupported(layer, inputs, output_tensors, "softmax over channels")
            return [layout]
        if isinstance(layer, _PASS_THROUGH):
            if not channels_last:
                return self._unsupported(layer, inputs, output_tensors, "channels_first data")
            return [layout]
        if isinstance(layer, _SUM_LIKE + (layers.Multiply,)):
            if self._union_layouts(inputs, layer.name):
                return [inputs[0]]
            return [self._fresh(output_tensors[0].shape[-1], f"{layer.name!r}: unequal inputs")]
        if isinstance(layer, layers.Concatenate):
            rank = len(in_shapes[0])
            if _axis(layer.axis, rank) == rank - 1:
                if any(lay.repeat != 1 for lay in inputs):
                    return self._unsupported(layer, inputs, output_tensors, "flattened inputs")
                return [Layout(tuple(seg for lay in inputs for seg in lay.segments))]
            if self._union_layouts(inputs, layer.name):
                return [inputs[0]]
            return [self._fresh(output_tensors[0].shape[-1], f"{layer.name!r}: unequal inputs")]
        if isinstance(layer, (layers.Flatten, layers.Reshape)) and single:
            in_shape, out_shape = in_shapes[0], tuple(output_tensors[0].shape)
            if None in in_shape[1:] or None in out_shape[1:]:
                return self._unsupported(layer, inputs, output_tensors, "unknown dimensions")
            if len(out_shape) > 2 and out_shape[-1] == in_shape[-1]:
                return [layout]
            if len(out_shape) == 2:
                positions = int(np.prod(in_shape[1:-1], dtype=np.int64))
                return [Layout(layout.segments, layout.repeat * positions)]
            return self._unsupported(layer, inputs, output_tensors, "reshape moves channels")
        reason = f"{name} is not supported by channel surgery"
        if not layer.weights and not inputs:
            reason = f"{name} has no input"
        return self._unsupported(layer, inputs, output_tensors, reason)

    # -- results -----------------------------------------------------------------------------

    def groups(self):
        """Groups of every channel space that some layer creates, in graph order."""
        by_root = {}
        for atom, member in self.members:
            by_root.setdefault(self.atoms.root(atom), []).append(member)
        result = []
        for root, members in by_root.items():
            if not any(member.role == "output" for member in members):
                continue
            reasons = self.atoms.reasons[root]
            reason = "; ".join(dict.fromkeys(reasons)) if reasons else None
            result.append(Group(len(result), self.atoms.size[root], members, reason, root))
        return result


def analyze(model):
    """Trace `model` once; the object `shrink` and `prune_channels` work from."""
    return _Analysis(model)


def channel_groups(model):
    """The channel groups of a Sequential or Functional model (nested models included).

    Every group lists the weight axes (`Member`s) indexed by its channels. A group whose
    `reason` is not None must be kept whole (model output, unsupported layer, ...).

    Args:
        model: a built `keras.Model` (Sequential or Functional), with or without
            `kp.PruneWrapper`s.

    Returns:
        A list of `Group`s, one per channel space created by a Conv / Dense / SeparableConv.

    Example:

    ```python
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    y = keras.layers.Conv2D(8, 1)(keras.layers.ReLU()(x))
    x = keras.layers.Add()([x, y])
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    for group in kp.channel_groups(model):
        print(group)   # conv2d + batch_norm + conv2d_1 share one group through the Add
    ```
    """
    return analyze(model).groups()


# -- which channels are exactly zero -----------------------------------------------------------


def _numpy(variable):
    return None if variable is None else np.asarray(ops.convert_to_numpy(variable))


def _zero_preserving(layer):
    """Whether the element-wise `layer` maps 0 to exactly 0."""
    value = ops.convert_to_numpy(layer(ops.zeros((1, 2))))
    return bool(np.all(value == 0))


def _mixing_zero(kernel, bias, zero_in, repeat):
    """Output channels of a kernel [..., in, out] that are exactly zero given zero inputs."""
    rows = np.tile(zero_in, repeat)
    live = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1])[:, ~rows, :]
    zero = np.all(live == 0, axis=(0, 1))
    if bias is not None:
        zero &= bias == 0
    return zero


def zero_channels(analysis):
    """`{tensor id: bool array}`: channels that are exactly zero for every input of the model,
    judged from the current weights (structural zeros only, never data-dependent)."""
    zero = {}
    for tensor in analysis.functional.inputs:
        zero[id(tensor)] = np.zeros(tensor.shape[-1], bool)
    for step in analysis.steps:
        if isinstance(step, _Alias):
            zero[step.target] = zero[step.source]
            continue
        node, layer = step.node, _inner(step.layer)
        ins = [zero[id(tensor)] for tensor in node.input_tensors]
        outs = [analysis.layouts[id(tensor)] for tensor in node.outputs]
        result = _zero_rule(layer, ins, outs, node, analysis.unsupported_nodes)
        for tensor, value in zip(node.outputs, result, strict=True):
            zero[id(tensor)] = value
    return zero


def _zero_rule(layer, ins, out_layouts, node, unsupported):
    unknown = [np.zeros(layout.channels, bool) for layout in out_layouts]
    if id(node) in unsupported:
        return unknown
    if isinstance(layer, _DEPTHWISE) and layer.depth_multiplier == 1:
        kernel = _numpy(layer.kernel)
        dead = np.all(kernel.reshape(-1, kernel.shape[-2]) == 0, axis=0)
        zero = ins[0] | dead
        if layer.bias is not None:
            zero = zero & (_numpy(layer.bias) == 0)
        return [zero]
    if isinstance(layer, _SEPARABLE) and layer.depth_multiplier == 1:
        depthwise = _numpy(layer.depthwise_kernel)
        zero = ins[0] | np.all(depthwise.reshape(-1, depthwise.shape[-2]) == 0, axis=0)
        return [_mixing_zero(_numpy(layer.pointwise_kernel), _numpy(layer.bias), zero, 1)]
    if isinstance(layer, _MIXING) and not isinstance(layer, _TRANSPOSE):
        kernel = _numpy(layer.kernel)
        repeat = kernel.shape[-2] // max(len(ins[0]), 1)
        if getattr(layer, "groups", 1) != 1 or repeat * len(ins[0]) != kernel.shape[-2]:
            return unknown
        return [_mixing_zero(kernel, _numpy(layer.bias), ins[0], repeat)]
    if isinstance(layer, layers.BatchNormalization):
        if len(ins[0]) != layer.moving_mean.shape[0]:
            return unknown
        gamma = _numpy(layer.gamma) if layer.gamma is not None else np.ones_like(ins[0], float)
        beta = _numpy(layer.beta) if layer.beta is not None else np.zeros_like(ins[0], float)
        mean = _numpy(layer.moving_mean)
        both_zero = (gamma == 0) & (beta == 0)
        return [both_zero | (ins[0] & (beta == 0) & ((gamma == 0) | (mean == 0)))]
    if isinstance(layer, _ACTIVATIONS + (layers.Rescaling,)):
        return [ins[0] & _zero_preserving(layer)] if len(ins) == 1 else unknown
    if isinstance(layer, _PASS_THROUGH + (layers.Flatten, layers.Reshape)):
        if len(ins) == 1 and len(ins[0]) == out_layouts[0].channels:
            return [ins[0]]
        return unknown
    if isinstance(layer, layers.Multiply):
        if len({len(z) for z in ins}) == 1:
            return [np.logical_or.reduce(ins)]
        return unknown
    if isinstance(layer, _SUM_LIKE):
        if len({len(z) for z in ins}) == 1:
            return [np.logical_and.reduce(ins)]
        return unknown
    if isinstance(layer, layers.Concatenate):
        rank = len(node.input_tensors[0].shape)
        if _axis(layer.axis, rank) == rank - 1:
            return [np.concatenate(ins)]
        if len({len(z) for z in ins}) == 1:
            return [np.logical_and.reduce(ins)]
    return unknown


def removable_channels(analysis, groups, zero=None):
    """`{group index: bool array}`: channels of each prunable group that are exactly zero
    wherever a Conv / Dense consumes them, so removing them changes no output."""
    zero = zero_channels(analysis) if zero is None else zero
    edges = {}
    for tensor_id, _ in analysis.mixing_edges:
        for atom, size, offset in analysis.layouts[tensor_id].offsets():
            edges.setdefault(analysis.atoms.root(atom), []).append(
                zero[tensor_id][offset : offset + size]
            )
    result = {}
    for group in groups:
        if not group.prunable:
            result[group.index] = np.zeros(group.size, bool)
            continue
        seen = edges.get(group.root)
        result[group.index] = np.logical_and.reduce(seen) if seen else np.zeros(group.size, bool)
    return result


# -- importance and zeroing ---------------------------------------------------------------------

CRITERIA = ("l1", "l2", "bn_scale", "taylor")


def _member_norms(member, norm, values=None):
    """Per-channel L1 norm or squared L2 norm of `values` (default: the member's weights)."""
    value = _numpy(member.variable) if values is None else values
    moved = np.moveaxis(value, member.axis, 0)
    moved = moved.reshape(moved.shape[0], -1)
    per_entry = np.abs(moved).sum(1) if norm == "l1" else np.square(moved).sum(1)
    return per_entry


def _taylor_scores(group, gradients):
    """|sum of w * dL/dw| over every weight removing a channel zeroes: the first-order change
    of the loss when the channel goes (Molchanov et al. 2019, per group)."""
    scores = np.zeros(group.size, np.float64)
    for member in group.members:
        if member.role == "input" or id(member.variable) not in gradients:
            continue
        product = _numpy(member.variable).astype(np.float64) * gradients[id(member.variable)]
        moved = np.moveaxis(product, member.axis, 0)
        scores += _by_channel(member, group, moved.reshape(moved.shape[0], -1).sum(1)).sum(0)
    return np.abs(scores)


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
        found = False
        for member in group.members:
            layer = _inner(member.layer)
            if isinstance(layer, layers.BatchNormalization) and member.variable is layer.gamma:
                scores += _by_channel(member, group, np.abs(_numpy(member.variable))).sum(0)
                found = True
        if found:
            return scores
        criterion = "l2"
    for member in group.members:
        if member.role == "input" or len(member.variable.shape) < 2:
            continue
        scores += _by_channel(member, group, _member_norms(member, criterion)).sum(0)
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
        layer = _inner(member.layer)
        if member.role == "input":
            continue
        if isinstance(layer, layers.BatchNormalization) and not (
            member.variable is layer.gamma or member.variable is layer.beta
        ):
            continue
        value = _numpy(member.variable).copy()
        index = [slice(None)] * value.ndim
        index[member.axis] = member.indices(channels)
        value[tuple(index)] = 0
        member.variable.assign(value)


# -- coupled channel masks during training ------------------------------------------------------


class HoldZero:
    """Variable constraint keeping the entries where `keep` is 0 at zero (after any constraint
    the variable already had): BatchNormalization gamma / beta of masked channels, so that a
    masked channel stays exactly zero through training and `kp.shrink` can remove it.

    `keep` is a non-trainable variable updated in place: a compiled train step captures the
    constraint object once, so a new object would go unseen."""

    def __init__(self, keep, original=None):
        self.keep = keep
        self.original = original

    def __call__(self, value):
        if self.original is not None:
            value = self.original(value)
        return value * ops.cast(self.keep, value.dtype)


def _hold_zero(variable, keep):
    if isinstance(variable.constraint, HoldZero):
        variable.constraint.keep.assign(keep)
        return
    holder = keras.Variable(keep, trainable=False, dtype="float32", name="channel_keep")
    variable.constraint = HoldZero(holder, variable.constraint)


def _install_group_keep(group, keep, slots):
    """Mask (and zero) every wrapped weight of `group` by `keep` (one 0/1 per channel) and hold
    its unmasked scales (BatchNormalization gamma / beta, depthwise biases) at zero."""
    for member in group.members:
        if member.role == "input":
            continue  # a consumer's rows see a zero channel: nothing to mask
        is_scale = _is_unmasked_scale(member)
        if id(member.variable) not in slots and not is_scale:
            continue
        entry_keep = _keep_vector(member, keep)
        if is_scale:
            _hold_zero(member.variable, entry_keep)
        else:
            mask = slots[id(member.variable)]
            mask.assign(np.broadcast_to(entry_keep, mask.shape))
        member.variable.assign(_numpy(member.variable) * entry_keep)


def couple_channel_masks(model, wrappers=None):
    """Make channel masks that were set layer by layer agree within each dependency group.

    Allocations (`kp.ThresholdAllocation`, `kp.PerLayerAllocation` overrides) rank channels
    layer by layer. For each removable group whose creating layers are all wrapped, this keeps
    a channel if any of them kept it, masks it everywhere else in the group, and holds the
    group's BatchNormalization gamma / beta of removed channels at zero, so that `kp.shrink`
    removes exactly what is masked. `kp.PruningCallback` and `kp.prune_once` call it after an
    allocation; groups that cannot be removed keep their layer-by-layer masks.

    Example:

    ```python
    kp.allocation.ThresholdAllocation(1e-3).apply(kp.find_wrappers(pruned), 0.0)
    kp.groups.couple_channel_masks(pruned)
    ```
    """
    slots = _channel_slots(model, wrappers)
    if not slots:
        return
    for group in channel_groups(model):
        creators = [
            member
            for member in group.members
            if member.role == "output" and len(member.variable.shape) > 1
        ]
        if not group.prunable or not creators:
            continue
        if not all(id(member.variable) in slots for member in creators):
            continue
        keep = np.zeros(group.size, bool)
        for member in creators:
            mask = np.moveaxis(_numpy(slots[id(member.variable)]), member.axis, 0)
            keep |= _by_channel(member, group, mask.reshape(mask.shape[0], -1).any(1)).any(0)
        _install_group_keep(group, keep.astype(np.float32), slots)


def _scores_by_criterion(group, owner, wrapper_of):
    """Channel scores of `group` for a gradual update: the norm (the owner's `Channel(norm)`)
    of the owner's criterion scores over every kernel entry the channel owns.

    With the default magnitude criterion that is `group_scores(group, norm)`. Other criteria
    (gradient-based, random, user functions) score the wrapped kernels of the group.
    """
    from keras_prune.core.criteria import Magnitude

    norm = owner.granularity.norm
    if isinstance(owner.criterion, Magnitude):
        return group_scores(group, norm)
    scores = np.zeros(group.size, np.float64)
    for member in group.members:
        found = wrapper_of.get(id(member.variable))
        if member.role == "input" or found is None or len(member.variable.shape) < 2:
            continue
        wrapper, index = found
        values = _numpy(owner.criterion(member.variable, wrapper.gradient_statistics[index]))
        scores += _by_channel(member, group, _member_norms(member, norm, values)).sum(0)
    return np.sqrt(scores) if norm == "l2" else scores


def _channel_slots(model, wrappers=None):
    """`{id(variable): mask}` of the built channel wrappers of `model` ({} if it is subclassed)."""
    from keras_prune.pruning.prune_strip import find_wrappers

    if _functional_of_or_none(model) is None:
        return {}
    slots = {}
    for wrapper in find_wrappers(model) if wrappers is None else wrappers:
        if _is_channel_wrapper(wrapper) and wrapper.built:
            slots.update(_wrapper_slots(wrapper))
    return slots


def _by_channel(member, group, per_entry):
    """`per_entry` (one value per index of the member's channel axis) arranged as
    `(member.repeat, group.size)`: the entries each channel of `group` owns."""
    return per_entry[member.indices(np.arange(group.size))].reshape(member.repeat, group.size)


def _wrapper_slots(wrapper):
    """`{id(variable): mask variable}` for the kernels and biases `wrapper` masks."""
    slots = {}
    for index, target in enumerate(wrapper.targets):
        slots[id(target.variable)] = wrapper.masks[index]
        position = wrapper._bias_mask_index.get(index)
        if position is not None:
            slots[id(target.bias)] = wrapper.bias_masks[position]
    return slots


def _functional_of_or_none(model):
    try:
        return _functional_of(model)
    except ValueError:
        return None


def _is_unmasked_scale(member):
    """BatchNormalization gamma / beta and depthwise biases: per-channel weights no wrapper
    masks, which must be zero for a masked channel to be zero."""
    layer = _inner(member.layer)
    if isinstance(layer, layers.BatchNormalization):
        return member.variable is layer.gamma or member.variable is layer.beta
    return isinstance(layer, _DEPTHWISE) and member.variable is layer.bias


def _keep_vector(member, keep):
    entry_keep = np.ones(member.variable.shape[member.axis], np.float32)
    entry_keep[member.indices(np.flatnonzero(keep == 0))] = 0
    shape = [1] * len(member.variable.shape)
    shape[member.axis] = -1
    return entry_keep.reshape(shape)


def hold_masked_channels(model, wrappers=None):
    """Re-attach the constraints holding BatchNormalization gamma / beta of masked channels at
    zero (constraints are not saved: call this after loading a model pruned at channel
    granularity, before training resumes; `kp.PruningCallback` does it at `on_train_begin`).

    Example:

    ```python
    pruned = keras.saving.load_model("pruned.keras")
    kp.groups.hold_masked_channels(pruned)
    ```
    """
    slots = _channel_slots(model, wrappers)
    if not slots:
        return
    for group in channel_groups(model):
        owner = next(
            (m for m in group.members if m.role == "output" and id(m.variable) in slots), None
        )
        if owner is None:
            continue
        mask = np.moveaxis(_numpy(slots[id(owner.variable)]), owner.axis, 0)
        alive = mask.reshape(mask.shape[0], -1).any(1)[owner.indices(np.arange(group.size))]
        for member in group.members:
            if member.role != "input" and _is_unmasked_scale(member):
                _hold_zero(member.variable, _keep_vector(member, alive))


def _is_channel_wrapper(layer):
    from keras_prune.core.granularity import Channel

    return (
        isinstance(layer, PruneWrapper)
        and isinstance(layer.granularity, Channel)
        and not layer.mask_type.learnable
    )


def update_channel_masks(model, step, wrappers=None, sparsity=None):
    """Update masks at optimizer step `step`, channel-granularity masks by groups.

    Wrappers pruning whole channels (`granularity="channel"`, binary masks) are not ranked layer
    by layer: the channels of each `channel_groups` group are ranked together (the L1 / L2 norm
    of the wrappers' criterion scores over the entries each channel owns; `group_scores` for
    the default magnitude criterion) and every wrapped weight of the group loses the same ones;
    the BatchNormalization gamma and beta of those channels are zeroed and held at zero. What is
    masked is then exactly what `kp.shrink` removes. A group that cannot be removed (model
    output, unsupported layer, a creating layer left unwrapped by `filters`) keeps all its
    channels. Other wrappers, and channel wrappers of layers no group covers (RNNs, attention,
    custom layers), update layer by layer as usual.

    Args:
        model: the model holding the wrappers.
        step: the optimizer step (an int).
        wrappers: the model's `kp.PruneWrapper`s (found in `model` if None).
        sparsity: None to follow each wrapper's schedule; a number to update every wrapper now
            at that sparsity whatever its schedule says (what `kp.prune_once` does).

    Returns:
        The wrappers whose masks were recomputed.

    Example:

    ```python
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.5, 0), granularity="channel")
    kp.groups.update_channel_masks(pruned, 0)
    small = kp.shrink(pruned)
    ```
    """
    from keras_prune.core import masks as masks_lib
    from keras_prune.pruning.prune_strip import find_wrappers

    step = int(step)
    wrappers = find_wrappers(model) if wrappers is None else wrappers
    traceable = _functional_of_or_none(model) is not None
    channel = [wrapper for wrapper in wrappers if traceable and _is_channel_wrapper(wrapper)]
    coupled = {id(wrapper) for wrapper in channel}

    def update_alone(wrapper):
        if sparsity is None:
            return wrapper.update_mask(step)
        wrapper.mask_updates_attached = True
        wrapper.pruning_step.assign(step)
        wrapper.apply_sparsity(sparsity)
        return True

    # Subclassed models cannot be traced: their channel masks stay per layer.
    updated = [
        wrapper for wrapper in wrappers if id(wrapper) not in coupled and update_alone(wrapper)
    ]
    if not channel:
        return updated
    for wrapper in channel:
        wrapper.mask_updates_attached = True
    due = [
        wrapper
        for wrapper in channel
        if sparsity is not None or wrapper.schedule.should_update(step)
    ]
    if not due:
        return updated
    for wrapper in due:
        wrapper.pruning_step.assign(step)
    found = channel_groups(model)
    in_groups = {id(member.variable) for group in found for member in group.members}
    # Layers the analysis does not cover (RNNs, attention, custom layers) prune per layer.
    loose = [
        wrapper
        for wrapper in channel
        if not any(id(target.variable) in in_groups for target in wrapper.targets)
    ]
    updated += [wrapper for wrapper in loose if update_alone(wrapper)]
    loose_ids = {id(wrapper) for wrapper in loose}
    due = [wrapper for wrapper in due if id(wrapper) not in loose_ids]
    slots = {}
    for wrapper in channel:
        if id(wrapper) not in loose_ids:
            slots.update(_wrapper_slots(wrapper))
    due_ids = {id(wrapper) for wrapper in due}
    wrapper_of = {
        id(target.variable): (wrapper, index)
        for wrapper in channel
        for index, target in enumerate(wrapper.targets)
    }
    for group in found:
        owners = {
            id(member.layer): member.layer
            for member in group.members
            if id(member.variable) in slots
        }
        due_owners = [owner for key, owner in owners.items() if key in due_ids]
        if not due_owners:
            continue
        group_sparsity = (
            max(float(owner.schedule.sparsity_at(step)) for owner in due_owners)
            if sparsity is None
            else float(sparsity)
        )
        creators_wrapped = all(
            id(member.variable) in slots
            for member in group.members
            if member.role == "output" and len(member.variable.shape) > 1
        )
        keep = np.ones(group.size, np.float32)
        if group.prunable and creators_wrapped:
            scores = _scores_by_criterion(group, due_owners[0], wrapper_of)
            kept = masks_lib.keep_count(group.size, group_sparsity)
            keep[np.argsort(-scores, kind="stable")[kept:]] = 0
        _install_group_keep(group, keep, slots)
        for owner in due_owners:
            owner.sparsity.assign(group_sparsity)
    return updated + due


# -- picture -------------------------------------------------------------------------------------

_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")
_ROLE_LETTER = {"output": "O", "input": "I", "channelwise": "C"}


def groups_svg(model, title="Channel groups"):
    """An SVG picture (a string) of the channel groups of `model` (or of a list of `Group`s):
    one row per layer in graph order, one column per group; a cell
    says how the layer touches the group's channels: O creates them (kernel columns, bias),
    C scales them one by one (BatchNorm, depthwise), I consumes them (kernel rows). Groups that
    must be kept whole are hatched grey, with the reason underneath.

    Example:

    ```python
    svg = kp.groups.groups_svg(model)
    open("groups.svg", "w").write(svg)
    ```
    """
    names = []
    if isinstance(model, keras.Model):
        groups = channel_groups(model)
        _, steps = _trace(model)
        names = [step.layer.name for step in steps if isinstance(step, _Call)]
        involved = {name for group in groups for name in group.layer_names}
        names = [name for name in dict.fromkeys(names) if name in involved]
    else:
        groups = list(model)
    for group in groups:
        for name in group.layer_names:
            if name not in names:
                names.append(name)
    cell, left, top = 34, 190, 70
    width = max(left + cell * len(groups) + 20, 9 * len(title) + 20, 440)
    kept = [group for group in groups if not group.prunable]
    height = top + cell * len(names) + 30 + 18 * len(kept)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#ddd"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="2"/></pattern></defs>',
        f'<text x="10" y="20" font-size="15" font-weight="bold">{_escape(title)}</text>',
    ]
    for column, group in enumerate(groups):
        x = left + column * cell + cell / 2
        parts.append(
            f'<text x="{x}" y="{top - 22}" text-anchor="middle">g{group.index}</text>'
            f'<text x="{x}" y="{top - 8}" text-anchor="middle" font-size="10">{group.size}</text>'
        )
    for row, name in enumerate(names):
        y = top + row * cell
        parts.append(
            f'<text x="{left - 8}" y="{y + cell / 2 + 4}" text-anchor="end">{_escape(name)}</text>'
        )
        for column, group in enumerate(groups):
            roles = sorted(
                {_ROLE_LETTER[m.role] for m in group.members if m.layer.name == name},
                key="OCI".index,
            )
            if not roles:
                continue
            x = left + column * cell
            fill = _PALETTE[column % len(_PALETTE)] if group.prunable else "url(#hatch)"
            parts.append(
                f'<rect x="{x + 2}" y="{y + 2}" width="{cell - 4}" height="{cell - 4}" rx="4" '
                f'fill="{fill}"/><text x="{x + cell / 2}" y="{y + cell / 2 + 4}" '
                f'text-anchor="middle" font-weight="bold">{"".join(roles)}</text>'
            )
    y = top + cell * len(names) + 20
    parts.append(
        f'<text x="10" y="{y}" font-size="11">O creates the channels · C per-channel weights · '
        "I consumes them · hatched: kept whole</text>"
    )
    for offset, group in enumerate(kept):
        parts.append(
            f'<text x="10" y="{y + 18 * (offset + 1)}" font-size="11">g{group.index} kept: '
            f"{_escape(str(group.reason))}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
