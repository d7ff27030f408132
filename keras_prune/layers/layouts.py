"""Which weights of a layer are prunable, how their axes map to channels, and why the others
are left alone.

Built-in Keras layers are recognised with `isinstance` (so subclasses work too). Any other layer
opts in by implementing the protocol:

```python
class MyLayer(keras.layers.Layer):
    def get_prunable_weights(self):
        return [self.kernel]          # Keras variables; biases are best left out
```

Custom weights are assumed to be laid out like Keras kernels: output channels on the last axis,
input channels on the one before it. A layer that is neither (a keras-hub transformer block,
`TimeDistributed(Dense)`, a custom layer built from Dense sublayers) is pruned through its
sublayers: every prunable weight of every sublayer, found recursively. Every weight that is not
pruned gets a named reason (`WeightPlan.left_alone`).
"""

import dataclasses

import keras

layers = keras.layers

# Why a weight is left alone; shown in `kp.prune`'s report.
BIAS = "bias: biases are never pruned (channel granularity removes them with their channel)"
NORMALIZATION = "normalization scale or offset: kept (channel pruning removes it with its channel)"
STATISTIC = "not trainable (running statistics, counters): never pruned"
UNKNOWN = (
    "weight of a layer keras_prune does not know how to prune; give the layer a "
    "`get_prunable_weights()` method returning the variables to prune"
)
NOT_RETURNED = "not returned by the layer's get_prunable_weights()"
EMBEDDING_POSITIONS = "position or segment table of a layer keras_prune does not know"


@dataclasses.dataclass(frozen=True)
class PrunableWeight:
    """A weight to prune, with the axes structured masks need.

    Attributes:
        variable: the Keras variable holding the weight.
        output_axis: axis of output channels (filters / neurons).
        input_axis: axis of input channels (N:M groups and blocks run along it), or None when
            the weight has no separate input-channel axis (depthwise kernels, normalization
            scales).
        bias: the bias variable whose entries belong to the output channels, if any: channel
            pruning zeroes it with its channel so a removed channel outputs exactly nothing.
        owner: the (sub)layer the weight belongs to.
    """

    variable: keras.Variable
    output_axis: int = -1
    input_axis: int | None = -2
    bias: keras.Variable | None = None
    owner: object = None

    @property
    def name(self):
        return self.variable.path


@dataclasses.dataclass
class WeightPlan:
    """A layer's weights split into what is pruned and what is left alone, with reasons.

    Attributes:
        prunable: the `PrunableWeight`s, in a stable order.
        left_alone: `[(variable, reason)]` for every other weight of the layer.
    """

    prunable: list
    left_alone: list


def _bias(layer, name="bias"):
    bias = getattr(layer, name, None)
    return bias if isinstance(bias, keras.Variable) else None


def _einsum_axes(layer):
    """Output / input axes of an EinsumDense kernel from its equation (e.g. 'abc,cde->abde')."""
    inputs, output = layer.equation.split("->")
    input_spec, kernel_spec = inputs.split(",")
    output_axes = [i for i, letter in enumerate(kernel_spec) if letter in output]
    contracted = [
        i for i, letter in enumerate(kernel_spec) if letter in input_spec and letter not in output
    ]
    output_axis = output_axes[-1] if output_axes else len(kernel_spec) - 1
    input_axis = contracted[-1] if contracted else None
    return output_axis, input_axis


def _einsum_weights(layer):
    output_axis, input_axis = _einsum_axes(layer)
    bias = _bias(layer)
    if bias is not None and tuple(bias.shape) != (layer.kernel.shape[output_axis],):
        bias = None
    return [PrunableWeight(layer.kernel, output_axis, input_axis, bias, layer)]


def _cell_weights(cell):
    """Kernels of a built-in recurrent cell (Simple RNN, GRU, LSTM, ConvLSTM), or None."""
    if isinstance(cell, layers.StackedRNNCells):
        found = [_cell_weights(each) for each in cell.cells]
        return None if any(weights is None for weights in found) else sum(found, [])
    kernel, recurrent = getattr(cell, "kernel", None), getattr(cell, "recurrent_kernel", None)
    if not isinstance(kernel, keras.Variable) or not isinstance(recurrent, keras.Variable):
        return None
    if len(kernel.shape) == 2:  # [input, gates * units]
        return [
            PrunableWeight(kernel, -1, 0, None, cell),
            PrunableWeight(recurrent, -1, 0, None, cell),
        ]
    # ConvLSTM: [*kernel_size, input, gates * filters]
    return [
        PrunableWeight(kernel, -1, -2, None, cell),
        PrunableWeight(recurrent, -1, -2, None, cell),
    ]


_CONVOLUTIONS = (layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.Dense)
_TRANSPOSED = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
_DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)


def builtin_prunable_weights(layer):
    """Prunable weights of a built-in Keras layer, or None when the layer is not one we know."""
    if isinstance(layer, _SEPARABLE):
        return [
            PrunableWeight(layer.depthwise_kernel, -2, None, None, layer),
            PrunableWeight(layer.pointwise_kernel, -1, -2, _bias(layer), layer),
        ]
    if isinstance(layer, _DEPTHWISE):
        return [PrunableWeight(layer.kernel, -2, None, _bias(layer), layer)]
    if isinstance(layer, _TRANSPOSED):
        return [PrunableWeight(layer.kernel, -2, -1, _bias(layer), layer)]
    if isinstance(layer, _CONVOLUTIONS):
        return [PrunableWeight(layer.kernel, -1, -2, _bias(layer), layer)]
    if isinstance(layer, layers.EinsumDense):
        return _einsum_weights(layer)
    if isinstance(layer, layers.Embedding):
        return [PrunableWeight(layer.embeddings, -1, 0, None, layer)]
    if isinstance(layer, layers.MultiHeadAttention):
        projections = [layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense]
        return [weight for dense in projections for weight in _einsum_weights(dense)]
    if isinstance(layer, layers.Bidirectional):
        forward = builtin_prunable_weights(layer.forward_layer)
        backward = builtin_prunable_weights(layer.backward_layer)
        if forward is None or backward is None:
            return None
        return forward + backward
    if isinstance(layer, layers.RNN):
        return _cell_weights(layer.cell)
    return None


_PRUNABLE_CLASSES = (
    _CONVOLUTIONS
    + _TRANSPOSED
    + _SEPARABLE
    + _DEPTHWISE
    + (layers.EinsumDense, layers.Embedding, layers.MultiHeadAttention, layers.RNN)
    + (layers.Bidirectional,)
)


def is_known_prunable(layer):
    """Whether an unbuilt `layer` will have prunable weights once built: a built-in type
    keras_prune prunes, or a layer with `get_prunable_weights()`."""
    return isinstance(layer, _PRUNABLE_CLASSES) or hasattr(layer, "get_prunable_weights")


def _is_keras_builtin(layer):
    return type(layer).__module__.startswith("keras.")


def check_wrappable(layer, unbuilt_custom=False):
    """Raise now, rather than at build time, for a layer keras_prune cannot prune: a recurrent
    layer over a custom cell without `get_prunable_weights()`, a built layer holding weights
    keras_prune does not know, and with `unbuilt_custom=True` an unbuilt custom layer with no
    `get_prunable_weights()` and no sublayer it can prune (deserialization skips that check:
    some layers create their sublayers only in `build`). Built-in layers without weights to
    prune (Dropout, pooling, normalization) wrap as they are, with nothing masked, as in tfmot.
    """
    if (
        hasattr(layer, "get_prunable_weights")
        or is_known_prunable(layer)
        and not isinstance(layer, layers.RNN)
    ):
        return
    if isinstance(layer, layers.RNN):
        cells = layer.cell.cells if isinstance(layer.cell, layers.StackedRNNCells) else [layer.cell]
        for cell in cells:
            if not (_is_keras_builtin(cell) or hasattr(cell, "get_prunable_weights")):
                raise ValueError(
                    f"Layer {layer.name!r} runs the custom cell {type(cell).__name__}, which "
                    "keras_prune does not know how to prune. Give the cell a "
                    "`get_prunable_weights()` method returning its kernels."
                )
        return
    if layer.built:
        plan = weight_plan(layer)
        unknown = [v.path for v, why in plan.left_alone if why == UNKNOWN]
        if not plan.prunable and unknown:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) holds weights keras_prune does "
                f"not know how to prune ({', '.join(unknown)}). Give it a "
                "`get_prunable_weights()` method returning the variables to prune, or leave it "
                "unwrapped."
            )
        return
    if (
        unbuilt_custom
        and not _is_keras_builtin(layer)
        and not any(is_known_prunable(child) for child in _all_sublayers(layer))
    ):
        raise ValueError(
            f"Layer {layer.name!r} ({type(layer).__name__}) is a custom layer keras_prune does "
            "not know how to prune. Give it a `get_prunable_weights()` method returning the "
            "variables to prune (tfmot users: the `PrunableLayer` protocol)."
        )


def _all_sublayers(layer):
    found = []
    for child in sublayers(layer):
        found.append(child)
        found.extend(_all_sublayers(child))
    return found


def channelwise_weights(layer):
    """The per-channel scale (and offset, as its bias) of a BatchNormalization layer: what
    channel pruning holds at zero for a removed channel. Empty for other layers."""
    if not isinstance(layer, layers.BatchNormalization):
        return []
    gamma, beta = _bias(layer, "gamma"), _bias(layer, "beta")
    if gamma is not None:
        return [PrunableWeight(gamma, -1, None, beta, layer)]
    if beta is not None:
        return [PrunableWeight(beta, -1, None, None, layer)]
    return []


def sublayers(layer):
    """The layers held as attributes of `layer` (directly, or in lists, tuples and dicts), in
    attribute order."""
    found, seen = [], {id(layer)}

    def visit(value):
        if isinstance(value, layers.Layer):
            if id(value) not in seen:
                seen.add(id(value))
                found.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    for value in vars(layer).values():
        visit(value)
    return found


def _protocol_weights(layer):
    variables = list(layer.get_prunable_weights())
    for variable in variables:
        if not isinstance(variable, keras.Variable):
            raise TypeError(
                f"Layer {layer.name!r} ({type(layer).__name__}).get_prunable_weights() must "
                "return Keras variables (e.g. `[self.kernel]` created with `add_weight`). "
                f"Received an element of type {type(variable).__name__}: {variable!r}"
            )
    return [
        PrunableWeight(variable, -1, -2 if len(variable.shape) > 1 else None, None, layer)
        for variable in variables
    ]


def _reason(variable, layer):
    if not variable.trainable:
        return STATISTIC
    for name in ("bias", "pointwise_bias", "recurrent_bias"):
        if variable is getattr(layer, name, None):
            return BIAS
    if (
        isinstance(
            layer,
            (layers.BatchNormalization, layers.LayerNormalization, layers.GroupNormalization),
        )
        or "norm" in type(layer).__name__.lower()
    ):
        return NORMALIZATION
    if variable.path.rsplit("/", 1)[-1] in ("bias", "beta"):
        return BIAS
    return UNKNOWN


def weight_plan(layer):
    """A layer's `WeightPlan`: its own protocol first, then the built-in table, then its
    sublayers recursively. Shared variables are listed once.

    Example:

    ```python
    plan = kp.layers.weight_plan(keras.layers.TimeDistributed(keras.layers.Dense(4)))
    ```
    """
    prunable, left_alone, seen = [], [], set()

    def visit(current):
        if not current.built:
            return  # no weights yet (a composite layer builds some sublayers when called)
        if hasattr(current, "get_prunable_weights"):
            chosen = _protocol_weights(current)
            mine = [w for w in chosen if id(w.variable) not in seen]
            prunable.extend(mine)
            seen.update(id(w.variable) for w in mine)
            for variable in current.weights:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    left_alone.append((variable, NOT_RETURNED))
            return
        known = builtin_prunable_weights(current)
        if known is not None:
            mine = [w for w in known if id(w.variable) not in seen]
            prunable.extend(mine)
            seen.update(id(w.variable) for w in mine)
            for variable in current.weights:
                if id(variable) not in seen:
                    seen.add(id(variable))
                    left_alone.append((variable, _reason(variable, _owner(current, variable))))
            return
        for child in sublayers(current):
            visit(child)
        for variable in current.weights:
            if id(variable) not in seen:
                seen.add(id(variable))
                left_alone.append((variable, _reason(variable, current)))

    visit(layer)
    return WeightPlan(prunable, left_alone)


def _owner(layer, variable):
    """The innermost sublayer of `layer` that holds `variable` directly (for its reason)."""
    for child in sublayers(layer):
        if any(weight is variable for weight in child.weights):
            return _owner(child, variable)
    return layer


def prunable_weights(layer):
    """The `PrunableWeight`s of a built layer (see `weight_plan`); empty if there are none.

    Example:

    ```python
    dense = keras.layers.Dense(4)
    dense.build((None, 3))
    [weight.name for weight in kp.layers.prunable_weights(dense)]  # ['dense/kernel']
    ```
    """
    return weight_plan(layer).prunable
