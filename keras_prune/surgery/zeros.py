"""Which channels are exactly zero for every input, judged from the weights alone.

`kp.shrink` removes a channel only when it is zero wherever a Conv / Dense consumes it, so that
the smaller model computes the same function. "Structurally zero" is propagated through the
graph call by call:

- a Conv / Dense output channel is zero if its bias is zero and its kernel column is zero on
  every input channel that is not itself zero; a depthwise channel if its input or its filter is
  zero and its bias is zero;
- BatchNormalization keeps a zero if its gamma and beta are zero (or beta and the running mean);
- an element-wise layer or operation with one tensor input (activations, `Rescaling`,
  `x * 0.5`, `keras.ops.relu(x)`) keeps zeros if it maps a zero input to exactly zero: it is
  evaluated on zeros to find out (ReLU, swish, GELU, `x * c` do; sigmoid, `x + 3.0` do not);
- indexing and reductions that leave the channel axis alone keep zeros when they map zeros to
  zeros (mean, sum, max; not logsumexp);
- `Add` / `Subtract` / `Maximum` / `Minimum` (layers or `x + h`) are zero where all inputs are,
  `Multiply` where any is; concatenation places the inputs' zeros side by side.

Nothing here depends on data: a channel that happens to be zero on some inputs is not zero.
"""

import keras
import numpy as np
from keras import ops

from keras_prune.graph import groups as groups_lib

layers = keras.layers

# Operations (by class name) that are zero where every input is zero / where any input is.
_ZERO_IF_ALL = frozenset(
    {"Add", "Subtract", "Maximum", "Minimum", "Fmax", "Fmin", "LogicalOr", "BitwiseOr"}
)
_ZERO_IF_ANY = frozenset({"Multiply", "LogicalAnd", "BitwiseAnd"})
# Operations that only select or rearrange entries: a zero channel stays zero.
_SELECTIONS = frozenset({"GetItem", "ExpandDims", "Squeeze"})


def _numpy(variable):
    return None if variable is None else np.asarray(ops.convert_to_numpy(variable))


def _zeros_like(tensor):
    """A zero array shaped like a symbolic tensor, batch 1 and unknown sizes 1."""
    shape = [1 if dim is None else int(dim) for dim in tensor.shape]
    if shape:
        shape[0] = 1
    return np.zeros(shape, dtype=keras.backend.standardize_dtype(tensor.dtype))


def maps_zero_to_zero(call):
    """Whether `call` (a layer or operation call of a traced graph) returns exactly zero when
    every tensor it reads is zero: the call is run once on zero arrays (batch 1)."""

    def zero(value):
        return _zeros_like(value) if isinstance(value, keras.KerasTensor) else value

    args = keras.tree.map_structure(zero, call.args)
    kwargs = keras.tree.map_structure(zero, call.kwargs)
    try:
        result = call.operation(*args, **kwargs)
    except Exception:  # noqa: BLE001 - any failure means "cannot tell", which keeps the channel
        return False
    return all(
        bool(np.all(np.asarray(ops.convert_to_numpy(value)) == 0))
        for value in keras.tree.flatten(result)
    )


def _activation_keeps_zero(layer):
    """Whether the layer's own activation (Dense(..., activation="sigmoid")) maps 0 to 0: a
    channel whose pre-activation is zero outputs `activation(0)`, zero only if this holds."""
    activation = getattr(layer, "activation", None)
    if activation is None:
        return True
    try:
        value = activation(ops.zeros((1,)))
    except Exception:  # noqa: BLE001 - cannot tell: the channel is not known to be zero
        return False
    return bool(np.all(np.asarray(ops.convert_to_numpy(value)) == 0))


def _kept_zeros(zero_in, call):
    """The zero channels of a call that maps channel `c` to channel `c`."""
    if not zero_in.any():
        return zero_in
    return zero_in & maps_zero_to_zero(call)


def _mixing_zero(kernel, bias, zero_in, repeat):
    """Output channels of a kernel [..., in, out] that are exactly zero given zero inputs."""
    rows = np.tile(zero_in, repeat)
    live = kernel.reshape(-1, kernel.shape[-2], kernel.shape[-1])[:, ~rows, :]
    zero = np.all(live == 0, axis=(0, 1))
    if bias is not None:
        zero &= bias == 0
    return zero


def zero_channels(analysis):
    """`{id(tensor): bool array}`: channels that are exactly zero for every input of the model,
    judged from the current weights (structural zeros only, never data-dependent).

    Example:

    ```python
    analysis = kp.graph.groups.analyze(model)
    zero = kp.surgery.zero_channels(analysis)
    zero[id(analysis.graph.outputs[0])]   # which output channels are always zero
    ```
    """
    zero = {}
    for tensor in analysis.graph.inputs:
        zero[id(tensor)] = np.zeros(groups_lib.channels_of(tensor), bool)
    for call in analysis.graph.calls:
        ins = [zero[id(tensor)] for tensor in call.inputs]
        outs = [analysis.layouts[id(tensor)] for tensor in call.outputs]
        if id(call) in analysis.unsupported_calls:
            result = [np.zeros(layout.channels, bool) for layout in outs]
        elif call.is_layer:
            result = _layer_zeros(call, ins, outs)
        else:
            result = _operation_zeros(call, ins, outs)
        for tensor, value in zip(call.outputs, result, strict=True):
            zero[id(tensor)] = value
    return zero


def _same_sizes(ins):
    return len({len(z) for z in ins}) == 1


def _layer_zeros(call, ins, out_layouts):
    layer = groups_lib.unwrap(call.operation)
    unknown = [np.zeros(layout.channels, bool) for layout in out_layouts]
    if isinstance(layer, groups_lib.DEPTHWISE) and layer.depth_multiplier == 1:
        kernel = _numpy(layer.kernel)
        dead = np.all(kernel.reshape(-1, kernel.shape[-2]) == 0, axis=0)
        zero = ins[0] | dead
        if layer.bias is not None:
            zero = zero & (_numpy(layer.bias) == 0)
        return [zero]
    if isinstance(layer, groups_lib.SEPARABLE) and layer.depth_multiplier == 1:
        depthwise = _numpy(layer.depthwise_kernel)
        zero = ins[0] | np.all(depthwise.reshape(-1, depthwise.shape[-2]) == 0, axis=0)
        return [_mixing_zero(_numpy(layer.pointwise_kernel), _numpy(layer.bias), zero, 1)]
    if isinstance(layer, groups_lib.MIXING) and not isinstance(layer, groups_lib.TRANSPOSE):
        kernel = _numpy(layer.kernel)
        repeat = kernel.shape[-2] // max(len(ins[0]), 1)
        if getattr(layer, "groups", 1) != 1 or repeat * len(ins[0]) != kernel.shape[-2]:
            return unknown
        if not _activation_keeps_zero(layer):
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
    if isinstance(layer, groups_lib.ACTIVATIONS + (layers.Rescaling,)):
        if len(ins) == 1 and len(ins[0]) == out_layouts[0].channels:
            return [_kept_zeros(ins[0], call)]
        return unknown
    if isinstance(layer, groups_lib.PASS_THROUGH + (layers.Flatten, layers.Reshape)):
        if len(ins) == 1 and len(ins[0]) == out_layouts[0].channels:
            return [ins[0]]
        return unknown
    if isinstance(layer, layers.Multiply) and _same_sizes(ins):
        return [np.logical_or.reduce(ins)]
    if isinstance(layer, groups_lib.SUM_LIKE) and _same_sizes(ins):
        return [np.logical_and.reduce(ins)]
    if isinstance(layer, layers.Concatenate):
        return _concatenate_zeros(layer.axis, call, ins, unknown)
    return unknown


def _concatenate_zeros(axis, call, ins, unknown):
    rank = len(call.inputs[0].shape)
    if axis % rank == rank - 1:
        return [np.concatenate(ins)]
    if _same_sizes(ins):
        return [np.logical_and.reduce(ins)]
    return unknown


def _operation_zeros(call, ins, out_layouts):
    kind = type(call.operation).__name__
    unknown = [np.zeros(layout.channels, bool) for layout in out_layouts]
    if len(out_layouts) != 1 or not ins:
        return unknown
    if kind == "Concatenate":
        return _concatenate_zeros(call.operation.axis, call, ins, unknown)
    if not all(len(z) == out_layouts[0].channels for z in ins):
        return unknown
    if len(ins) == 1:
        # Element-wise, indexing, reductions and axis insertion / removal that the analysis
        # accepted: channel c of the output is computed from channel c of the input alone.
        if kind in _SELECTIONS:
            return [ins[0]]
        return [_kept_zeros(ins[0], call)]
    if kind in _ZERO_IF_ALL:
        return [np.logical_and.reduce(ins)]
    if kind in _ZERO_IF_ANY:
        return [np.logical_or.reduce(ins)]
    return unknown


def removable_channels(analysis, groups, zero=None):
    """`{group index: bool array}`: channels of each prunable group that are exactly zero
    wherever a Conv / Dense consumes them, so removing them changes no output.

    Example:

    ```python
    analysis = kp.graph.groups.analyze(model)
    removable = kp.surgery.removable_channels(analysis, analysis.groups())
    ```
    """
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


def zero_group_channels(group, channels):
    """Set every weight of `group` that creates or scales `channels` to exactly zero, in place.

    Kernel output columns, biases, BatchNormalization gamma and beta and depthwise filters are
    zeroed, so those channels are exactly zero wherever they are consumed and `kp.shrink` can
    remove them. Input rows of consumers and BatchNormalization statistics are left alone.

    Example:

    ```python
    group = kp.graph.channel_groups(model)[0]
    kp.surgery.zero_group_channels(group, [0, 3])
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
        layer = groups_lib.unwrap(member.layer)
        if member.role == "input":
            continue
        if isinstance(layer, keras.layers.BatchNormalization) and not (
            member.variable is layer.gamma or member.variable is layer.beta
        ):
            continue
        value = _numpy(member.variable).copy()
        index = [slice(None)] * value.ndim
        index[member.axis] = member.indices(channels)
        value[tuple(index)] = 0
        member.variable.assign(value)
