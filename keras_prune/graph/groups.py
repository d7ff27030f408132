"""Channel dependency groups: which weights must lose the same channels together.

Removing output channel `c` of a Conv2D is only possible if every weight that touches that
channel loses it too: the BatchNormalization after it, a DepthwiseConv2D that filters it, the
input rows of every layer that consumes it, and, through a residual `Add`, every other branch
summed into the same tensor. `channel_groups(model)` reads a Sequential or Functional model's
graph (`keras_prune.graph.tracing.trace`, nested models inlined) and returns those sets as
`Group`s; `kp.shrink` and `kp.prune_channels` use them to remove channels physically, and
channel-granularity pruning uses them so that what is masked during training is exactly what
can be removed afterwards.

How channels flow, call by call:

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
- Operations that are not layers (`x + h`, `x * 0.5`, `keras.ops.relu(x)`, `x[:, 0]`,
  `keras.ops.mean(x, axis=1)`, `keras.ops.concatenate`): element-wise operations keep (one
  tensor input) or merge (several) their inputs' channels, indexing and reductions that leave
  the last axis alone keep them, concatenation on the last axis places them side by side.

Channels are never removed from model inputs or outputs, nor from a group that touches a layer
or operation this analysis does not understand (custom layers, LayerNormalization, Softmax over
channels, grouped convolutions, a constant with one value per channel, ...): such groups are
kept whole, with the reason in `Group.reason`.

Why one long module: the channel-flow rules above (the layer and operation tables at the top)
and the one pass over the graph that applies them (`Analysis`) change together: a new layer
kind is a table entry plus, at most, one branch of `Analysis`. Split, each rule would live in
two files. Tracing is in tracing.py, importance in channel_importance.py, mask coupling in
keras_prune.engine.coupling, zero propagation in keras_prune.surgery.zeros.
"""

import dataclasses

import keras
import numpy as np

from keras_prune.graph import tracing
from keras_prune.layers.wrapper import PruneWrapper

layers = keras.layers

# Layers that consume their input's channels and create their own.
MIXING = (
    layers.Conv1D,
    layers.Conv2D,
    layers.Conv3D,
    layers.Dense,
    layers.SeparableConv1D,
    layers.SeparableConv2D,
)
DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
TRANSPOSE = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
ACTIVATIONS = (layers.Activation, layers.ReLU, layers.LeakyReLU, layers.ELU)
PASS_THROUGH = (
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
SUM_LIKE = (layers.Add, layers.Subtract, layers.Average, layers.Maximum, layers.Minimum)
# Activations that mix channels (or change their number), whatever layer applies them.
_CHANNEL_MIXING_ACTIVATIONS = ("softmax", "log_softmax", "sparsemax", "glu")

# Operations (class names of `keras.ops` nodes) computed entry by entry: channel `c` of the
# output depends on channel `c` of each input only.
ELEMENTWISE_OPS = frozenset(
    {
        # one tensor (and scalars)
        "Abs", "Absolute", "Arccos", "Arccosh", "Arcsin", "Arcsinh", "Arctan", "Arctanh",
        "BitwiseInvert", "BitwiseNot", "Cast", "Cbrt", "Ceil", "Celu", "Clip", "Conj",
        "Conjugate", "ConvertToTensor", "Copy", "Cos", "Cosh", "Deg2rad", "Elu", "Erf", "Erfc",
        "Erfinv", "Exp", "Exp2", "Expm1", "Fabs", "Floor", "Gelu", "HardShrink", "HardSigmoid",
        "HardSilu", "HardTanh", "Isfinite", "Isinf", "Isnan", "Isneginf", "Isposinf",
        "LeakyRelu", "Log", "Log10", "Log1p", "Log2", "LogSigmoid", "LogicalNot", "NanToNum",
        "Negative", "Rad2deg", "Reciprocal", "Relu", "Relu6", "Round", "Rsqrt", "SaturateCast",
        "Selu", "Sigmoid", "Sign", "Signbit", "Silu", "Sin", "Sinc", "Sinh", "SoftShrink",
        "Softplus", "Softsign", "SparsePlus", "SparseSigmoid", "Sqrt", "Square", "Squareplus",
        "StopGradient", "Tan", "Tanh", "TanhShrink", "Threshold", "Trunc",
        # several tensors, broadcast against each other
        "Add", "Arctan2", "BitwiseAnd", "BitwiseLeftShift", "BitwiseOr", "BitwiseRightShift",
        "BitwiseXor", "Divide", "DivideNoNan", "Equal", "FloorDivide", "Fmax", "Fmin", "Fmod",
        "Greater", "GreaterEqual", "Heaviside", "Hypot", "Ldexp", "LeftShift", "Less",
        "LessEqual", "LogicalAnd", "LogicalOr", "LogicalXor", "Logaddexp", "Logaddexp2",
        "Maximum", "Minimum", "Mod", "Multiply", "Nextafter", "NotEqual", "Power",
        "RightShift", "Subtract", "TrueDivide", "Where",
    }
)  # fmt: skip
# Reductions over the `axis` attribute of the operation, and operations that index or add /
# remove axes: they keep channels when they leave the last axis alone.
REDUCTION_OPS = frozenset(
    {
        "All", "Amax", "Amin", "Any", "Logsumexp", "Max", "Mean", "Median", "Min", "Nanmax",
        "Nanmean", "Nanmedian", "Nanmin", "Nanprod", "Nanstd", "Nansum", "Nanvar", "Prod",
        "Ptp", "Std", "Sum", "Var",
    }
)  # fmt: skip
AXIS_OPS = REDUCTION_OPS | {"GetItem", "ExpandDims", "Squeeze"}


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
        root: the channel space (union-find root) of the analysis the group comes from.
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


def unwrap(layer):
    """The layer doing the work: the inner layer of a `PruneWrapper`, else `layer` itself."""
    return layer.layer if isinstance(layer, PruneWrapper) else layer


def channels_of(tensor):
    """Size of a tensor's last axis (0 for scalars or an unknown size)."""
    shape = tuple(tensor.shape)
    return int(shape[-1]) if shape and shape[-1] is not None else 0


class ChannelSpaces:
    """Union-find over channel spaces ("atoms"), each with a size and its lock reasons."""

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


def _axis(axis, rank):
    return axis % rank


def _axes(axis, rank):
    """`axis` (an int, or a list / tuple of ints) as a set of non-negative axes."""
    if isinstance(axis, (list, tuple)):
        return {_axis(int(each), rank) for each in axis}
    return {_axis(int(axis), rank)}


def keeps_last_axis(key, rank):
    """Whether indexing a rank-`rank` tensor with `key` (as in `x[key]`) leaves its last axis
    whole and last."""
    key = key if isinstance(key, tuple) else (key,)
    for item in key:
        if not (item is None or item is Ellipsis or isinstance(item, (int, np.integer, slice))):
            return False  # index arrays and tensors (advanced indexing)
    if Ellipsis in key:
        tail = key[key.index(Ellipsis) + 1 :]
    elif len([item for item in key if item is not None]) < rank:
        return True  # the trailing axes are not indexed
    else:
        tail = key
    return not tail or tail[-1] == slice(None)


def _channel_axis_problem(call, shape):
    """How an indexing, reduction or axis operation on a tensor of `shape` touches its channel
    (last) axis, or "" if it leaves that axis whole and last."""
    operation, rank = call.operation, len(shape)
    kind = type(operation).__name__
    axis = getattr(operation, "axis", None)
    if kind == "GetItem":
        whole = len(call.args) == 2 and keeps_last_axis(call.args[1], rank)
        return "" if whole else "indexes the channel axis"
    if kind == "ExpandDims":
        return "adds an axis after the channels" if rank in _axes(axis, rank + 1) else ""
    if kind == "Squeeze":
        # Without an axis every size-1 axis goes, the channel axis too if it has one channel.
        touched = shape[-1] == 1 if axis is None else rank - 1 in _axes(axis, rank)
        return "removes the channel axis" if touched else ""
    if axis is None or rank - 1 in _axes(axis, rank):
        return f"operation {kind} reduces the channel axis"
    return ""


def per_channel_constant(call):
    """Whether a non-tensor argument of `call` is an array with several values on its last axis
    (it would need slicing along with the channels)."""
    for value in keras.tree.flatten((call.args, call.kwargs)):
        if isinstance(value, keras.KerasTensor):
            continue
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) > 0 and shape[-1] not in (None, 1):
            return True
    return False


class Analysis:
    """Channel layouts of every tensor of a traced model, and the members of every channel space.

    Attributes:
        model: the analysed model.
        graph: its `keras_prune.graph.tracing.Graph`.
        atoms: the `ChannelSpaces` (union-find) behind the groups.
        layouts: `{id(tensor): Layout}` for every symbolic tensor of the graph.
        members: `[(atom, Member)]`.
        mixing_edges: `[(id(tensor), layer)]`: tensors whose channels a Conv / Dense consumes.
        unsupported: `{layer or operation name: reason}` for the calls the analysis could not see
            through (their channels are kept).
        unsupported_calls: ids of those `Call`s.

    Example:

    ```python
    analysis = kp.graph.analyze(model)
    for group in analysis.groups():
        print(group.size, group.reason)
    ```
    """

    def __init__(self, model):
        self.model = model
        try:
            self.graph = tracing.trace(model)
        except tracing.NotTraceable as error:
            raise tracing.NotTraceable(
                f"{error} Channel groups are read from the model's graph: build it with the "
                "Functional or Sequential API."
            ) from error
        self.atoms = ChannelSpaces()
        self.layouts = {}
        self.members = []
        self.mixing_edges = []
        self.own_atoms = {}  # id(layer) -> atom of the channels it creates
        self.first_inputs = {}  # id(layer) -> Layout of its first call's input
        self.unsupported = {}
        self.unsupported_calls = set()
        self._call_id = None
        for tensor in self.graph.inputs:
            self.layouts[id(tensor)] = self._fresh(channels_of(tensor), "model input")
        for call in self.graph.calls:
            self._visit(call)
        for tensor in self.graph.outputs:
            for atom, _, _ in self.layouts[id(tensor)].offsets():
                self.atoms.lock(atom, "feeds a model output")

    # -- helpers -------------------------------------------------------------------------------

    def layout(self, tensor):
        """The `Layout` of a symbolic tensor of the graph."""
        return self.layouts[id(tensor)]

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

    def _merge(self, inputs, outputs, name):
        if self._union_layouts(inputs, name):
            return [inputs[0]]
        return [self._fresh(channels_of(outputs[0]), f"{name!r}: unequal inputs")]

    def _unsupported(self, name, inputs, outputs, reason):
        self.unsupported[name] = reason
        self.unsupported_calls.add(self._call_id)
        for layout in inputs:
            for atom, _, _ in layout.offsets():
                self.atoms.lock(atom, f"used by {name!r}: {reason}")
        return [
            self._fresh(channels_of(tensor), f"made by {name!r}: {reason}") for tensor in outputs
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

    # -- per-call rules ------------------------------------------------------------------------

    def _visit(self, call):
        self._call_id = id(call)
        inputs = [self.layouts[id(tensor)] for tensor in call.inputs]
        if call.is_layer:
            outputs = self._layer_rule(call, inputs)
        else:
            outputs = self._operation_rule(call, inputs)
        for tensor, layout in zip(call.outputs, outputs, strict=True):
            self.layouts[id(tensor)] = layout

    def _layer_rule(self, call, inputs):
        graph_layer, layer = call.operation, unwrap(call.operation)
        output_tensors = call.outputs
        in_shapes = [tuple(tensor.shape) for tensor in call.inputs]
        name = type(layer).__name__
        single = len(inputs) == 1 and len(output_tensors) == 1
        layout = inputs[0] if inputs else None
        first_call = id(graph_layer) not in self.first_inputs

        def unsupported(reason):
            return self._unsupported(layer.name, inputs, output_tensors, reason)

        if single and not self._shared_input(graph_layer, layout):
            return unsupported("shared layer called on different channel splits")
        channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"

        if isinstance(layer, DEPTHWISE + SEPARABLE) and not (
            single and channels_last and layer.depth_multiplier == 1 and layout.repeat == 1
        ):
            return unsupported("depth_multiplier > 1 or channels_first")
        if isinstance(layer, DEPTHWISE):
            if first_call:
                self._add_members(graph_layer, layer.kernel, -2, layout, "channelwise")
                self._add_members(graph_layer, layer.bias, 0, layout, "channelwise")
            return [layout]
        if isinstance(layer, MIXING) and not isinstance(layer, TRANSPOSE):
            if not single or not channels_last or getattr(layer, "groups", 1) != 1:
                return unsupported("grouped or channels_first convolution")
            if not isinstance(layer, layers.Dense) and layout.repeat != 1:
                return unsupported("flattened input")
            if isinstance(layer, SEPARABLE):
                kernel = layer.pointwise_kernel
                if first_call:
                    self._add_members(
                        graph_layer, layer.depthwise_kernel, -2, layout, "channelwise"
                    )
            else:
                kernel = layer.kernel
            if first_call:
                self._add_members(graph_layer, kernel, -2, layout, "input")
            self.mixing_edges.append((id(call.inputs[0]), graph_layer))
            out = self._own_atom(graph_layer, channels_of(output_tensors[0]))
            if first_call:
                self._add_members(graph_layer, kernel, -1, out, "output")
                self._add_members(graph_layer, layer.bias, 0, out, "output")
            return [out]
        if isinstance(layer, layers.BatchNormalization):
            rank = len(in_shapes[0])
            if _axis(layer.axis, rank) != rank - 1:
                return unsupported("normalizes a non-last axis")
            if first_call:
                for variable in (layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance):
                    self._add_members(graph_layer, variable, 0, layout, "channelwise")
            return [layout]
        if isinstance(layer, ACTIVATIONS) or (
            isinstance(layer, layers.Rescaling)
            and np.ndim(layer.scale) == 0
            and np.ndim(layer.offset) == 0
        ):
            activation = getattr(layer, "activation", None)
            activation_name = getattr(activation, "__name__", "")
            if any(word in activation_name for word in _CHANNEL_MIXING_ACTIVATIONS):
                return unsupported("softmax over channels")
            if not single or channels_of(output_tensors[0]) != layout.channels:
                return unsupported("changes the number of channels")
            return [layout]
        if isinstance(layer, PASS_THROUGH):
            if not channels_last:
                return unsupported("channels_first data")
            return [layout]
        if isinstance(layer, SUM_LIKE + (layers.Multiply,)):
            return self._merge(inputs, output_tensors, layer.name)
        if isinstance(layer, layers.Concatenate):
            return self._concatenate(layer.name, layer.axis, inputs, in_shapes, output_tensors)
        if isinstance(layer, (layers.Flatten, layers.Reshape)) and single:
            in_shape, out_shape = in_shapes[0], tuple(output_tensors[0].shape)
            if None in in_shape[1:] or None in out_shape[1:]:
                return unsupported("unknown dimensions")
            if len(out_shape) > 2 and out_shape[-1] == in_shape[-1]:
                return [layout]
            if len(out_shape) == 2:
                positions = int(np.prod(in_shape[1:-1], dtype=np.int64))
                return [Layout(layout.segments, layout.repeat * positions)]
            return unsupported("reshape moves channels")
        if not layer.weights and not inputs:
            return unsupported(f"{name} has no input")
        return unsupported(f"{name} is not supported by channel surgery")

    def _concatenate(self, name, axis, inputs, in_shapes, output_tensors):
        rank = len(in_shapes[0])
        if _axis(axis, rank) == rank - 1:
            if any(lay.repeat != 1 for lay in inputs):
                return self._unsupported(name, inputs, output_tensors, "flattened inputs")
            return [Layout(tuple(seg for lay in inputs for seg in lay.segments))]
        return self._merge(inputs, output_tensors, name)

    def _operation_rule(self, call, inputs):
        operation, output_tensors = call.operation, call.outputs
        kind = type(operation).__name__
        name = operation.name

        def unsupported(reason):
            return self._unsupported(name, inputs, output_tensors, reason)

        if not inputs or len(output_tensors) != 1:
            return unsupported(f"operation {kind} is not understood by channel surgery")
        in_shapes = [tuple(tensor.shape) for tensor in call.inputs]
        out_channels = channels_of(output_tensors[0])
        same_channels = all(layout.channels == out_channels for layout in inputs)
        if kind in ELEMENTWISE_OPS:
            if per_channel_constant(call):
                return unsupported(f"operation {kind} uses a constant with one value per channel")
            if not same_channels:
                return unsupported(f"operation {kind} broadcasts across channels")
            if len(inputs) == 1:
                return [inputs[0]]
            return self._merge(inputs, output_tensors, name)
        if len(inputs) == 1 and kind in AXIS_OPS:
            problem = _channel_axis_problem(call, in_shapes[0])
            if problem:
                return unsupported(problem)
            if same_channels:
                return [inputs[0]]
        if kind == "Concatenate" and call.args and len(call.inputs) == len(call.args[0]):
            return self._concatenate(name, operation.axis, inputs, in_shapes, output_tensors)
        return unsupported(f"operation {kind} is not understood by channel surgery")

    # -- results -------------------------------------------------------------------------------

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
    """Read `model`'s graph once: the `Analysis` that `shrink` and `prune_channels` work from.

    Raises `keras_prune.graph.tracing.NotTraceable` (a `ValueError`) for subclassed or unbuilt
    models.

    Example:

    ```python
    analysis = kp.graph.groups.analyze(model)
    print(analysis.unsupported)   # {layer name: why its channels are kept}
    ```
    """
    return Analysis(model)


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
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x + y))
    model = keras.Model(inputs, outputs)
    for group in kp.graph.channel_groups(model):
        print(group)   # conv2d + batch_norm + conv2d_1 share one group through `x + y`
    ```
    """
    return analyze(model).groups()
