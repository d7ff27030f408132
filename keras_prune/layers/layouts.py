"""Which weights of a layer are prunable, and how their axes map to output / input channels.

Built-in Keras layers are recognised with `isinstance` (so subclasses work too); any other layer
opts in by implementing the protocol:

```python
class MyLayer(keras.layers.Layer):
    def get_prunable_weights(self):
        return [self.kernel]          # Keras variables; biases are best left out
```

Custom weights are assumed to be laid out like Keras kernels: output channels on the last axis,
input channels on the one before it.
"""

import dataclasses

import keras


@dataclasses.dataclass(frozen=True)
class PrunableWeight:
    """A weight to prune, with the axes structured masks need.

    Attributes:
        variable: the Keras variable holding the weight.
        output_axis: axis of output channels (filters / neurons).
        input_axis: axis of input channels (N:M groups and blocks run along it), or None when
            the weight has no separate input-channel axis (depthwise kernels).
        bias: the bias variable whose entries belong to the output channels, if any: channel
            pruning zeroes it with its channel so a removed channel outputs exactly nothing.
    """

    variable: keras.Variable
    output_axis: int = -1
    input_axis: int | None = -2
    bias: keras.Variable | None = None

    @property
    def name(self):
        return self.variable.path


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
    return [PrunableWeight(layer.kernel, output_axis, input_axis, bias)]


def _rnn_weights(layer):
    cell = layer.cell
    if isinstance(cell, keras.layers.StackedRNNCells):
        cells = cell.cells
    else:
        cells = [cell]
    weights = []
    for each in cells:
        weights.append(PrunableWeight(each.kernel, -1, 0))
        weights.append(PrunableWeight(each.recurrent_kernel, -1, 0))
    return weights


def builtin_prunable_weights(layer):
    """Prunable weights of a built-in Keras layer, or None when the layer is not one we know."""
    layers = keras.layers
    if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
        return [
            PrunableWeight(layer.depthwise_kernel, -2, None),
            PrunableWeight(layer.pointwise_kernel, -1, -2, _bias(layer)),
        ]
    if isinstance(layer, (layers.DepthwiseConv1D, layers.DepthwiseConv2D)):
        return [PrunableWeight(layer.kernel, -2, None)]
    if isinstance(layer, (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)):
        return [PrunableWeight(layer.kernel, -2, -1, _bias(layer))]
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Conv3D, layers.Dense)):
        return [PrunableWeight(layer.kernel, -1, -2, _bias(layer))]
    if isinstance(layer, layers.EinsumDense):
        return _einsum_weights(layer)
    if isinstance(layer, layers.Embedding):
        return [PrunableWeight(layer.embeddings, -1, 0)]
    if isinstance(layer, layers.MultiHeadAttention):
        projections = [layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense]
        return [weight for dense in projections for weight in _einsum_weights(dense)]
    if isinstance(layer, layers.Bidirectional):
        return _rnn_weights(layer.forward_layer) + _rnn_weights(layer.backward_layer)
    if isinstance(layer, (layers.SimpleRNN, layers.GRU, layers.LSTM)):
        return _rnn_weights(layer)
    return None


def prunable_weights(layer):
    """The `PrunableWeight`s of a built layer: its own protocol first, then the built-in table.

    Returns an empty list for layers with nothing to prune (pooling, normalization, ...).
    """
    if hasattr(layer, "get_prunable_weights"):
        variables = list(layer.get_prunable_weights())
        for variable in variables:
            if not isinstance(variable, keras.Variable):
                raise TypeError(
                    f"Layer {layer.name!r} ({type(layer).__name__}).get_prunable_weights() must "
                    "return Keras variables (e.g. `[self.kernel]` created with `add_weight`). "
                    f"Received an element of type {type(variable).__name__}: {variable!r}"
                )
        return [
            PrunableWeight(variable, -1, -2 if len(variable.shape) > 1 else None)
            for variable in variables
        ]
    known = builtin_prunable_weights(layer)
    return known if known is not None else []
