"""A pruned weight seen as the matrix of a matrix product: `y = x W^T`, with `W` of shape
[outputs, inputs] and every row of `x` one input vector, as the SparseGPT and Wanda papers write
a linear layer.

- Dense (and a custom layer's rank-2 weight from `get_prunable_weights()`, taken as a Keras
  kernel [inputs, outputs] applied to the last axis of the layer's input, the layout keras_prune
  assumes for custom weights): `W = kernel^T`, rows of x = the input reshaped to [-1, inputs].
- EinsumDense (attention projections): the kernel axes contracted with the input are the
  inputs, the kernel axes that reach the output are the outputs. `abc,cde->abde` (a query
  projection, kernel [C, heads, dim]) is a [heads * dim, C] matrix; `abcd,cde->abe` (the output
  projection, kernel [heads, dim, E]) is [E, heads * dim].
- Conv1D / 2D / 3D (channels last, one group): im2col, as in the SparseGPT paper. Each output
  position's receptive field, flattened as (kernel positions, input channels), is one row of x;
  `W` is the kernel reshaped to [kernel positions * input channels, filters], transposed.

In every view the weight's input-channel axis (the axis N:M groups and blocks run along, see
`keras_prune.layers.layouts`) is the fastest-varying part of a column index, so N:M groups of
the view are N:M groups of the weight when that axis' size is a multiple of M.
"""

import itertools
import math
import string

import keras
import numpy as np

from keras_prune.core import masks as masks_lib

layers = keras.layers

# Why a weight has no matrix view; SparseGPT and Wanda leave such weights dense.
NOT_A_MATMUL = "not a matrix product of the layer's input"
CHANNELS_FIRST = "channels_first convolution"
GROUPED = "grouped convolution"
BATCHED_EINSUM = "an EinsumDense kernel axis is shared by its input and output (a batched product)"


def _to_numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


class MatrixView:
    """How a weight and its layer's input look as `W` [outputs, inputs] and rows of `x`.

    Args:
        weight: the `layouts.PrunableWeight`.
        contracted: kernel axes multiplied with the input, in kernel order.
        produced: kernel axes that reach the output, in kernel order.
    """

    def __init__(self, weight, contracted, produced):
        self.weight = weight
        self.shape = tuple(int(size) for size in weight.variable.shape)
        self.contracted = tuple(contracted)
        self.produced = tuple(produced)
        self.permutation = self.contracted + self.produced
        self.inputs = math.prod(self.shape[axis] for axis in self.contracted)
        self.outputs = math.prod(self.shape[axis] for axis in self.produced)

    def matrix(self, kernel):
        """The kernel (array of the weight's shape) as `W` [outputs, inputs]."""
        moved = np.transpose(np.asarray(kernel), self.permutation)
        return moved.reshape(self.inputs, self.outputs).T

    def kernel(self, matrix):
        """Inverse of `matrix`: `W` [outputs, inputs] back to the weight's shape."""
        moved_shape = tuple(self.shape[axis] for axis in self.permutation)
        moved = np.asarray(matrix).T.reshape(moved_shape)
        return np.transpose(moved, np.argsort(self.permutation))

    def rows(self, x):
        """The layer input `x` as rows of input vectors, [N, inputs] (float32)."""
        x = _to_numpy(x).astype(np.float32, copy=False)
        if x.ndim == 0 or x.shape[-1] != self.inputs:
            raise ValueError(
                f"Weight {self.weight.name!r} multiplies {self.inputs} input features, but its "
                f"layer received an input of shape {x.shape}. A custom layer's weight is taken as "
                "a kernel [inputs, outputs] applied to the last axis of its input; leave this "
                "layer out with `filters=` if it is used otherwise."
            )
        return x.reshape(-1, self.inputs)

    def tflite_view(self, matrix):
        """`matrix` ([outputs, inputs]) in keras_prune's TFLite view of the weight, for masks
        whose pattern is defined there (blocks)."""
        view, _, _ = masks_lib.to_tflite_view(
            self.kernel(matrix), self.weight.output_axis, self.weight.input_axis
        )
        return _to_numpy(view)

    @property
    def input_channels(self):
        """Size of the weight's input-channel axis (N:M groups and blocks run along it)."""
        axis = self.weight.input_axis
        return None if axis is None else self.shape[axis]


class EinsumView(MatrixView):
    """`MatrixView` of an EinsumDense kernel; the input axes follow the equation."""

    def __init__(self, weight, equation):
        inputs, output = equation.split("->")
        input_spec, kernel_spec = inputs.split(",")
        contracted = [i for i, c in enumerate(kernel_spec) if c in input_spec and c not in output]
        produced = [i for i, c in enumerate(kernel_spec) if c in output and c not in input_spec]
        super().__init__(weight, contracted, produced)
        self.input_spec = input_spec
        self.contracted_letters = [kernel_spec[i] for i in contracted]

    def rows(self, x):
        x = _to_numpy(x).astype(np.float32, copy=False)
        spec = self.input_spec
        if "..." in spec:
            unused = [c for c in string.ascii_letters if c not in spec]
            spec = spec.replace("...", "".join(unused[: x.ndim - (len(spec) - 3)]))
        last = [spec.index(letter) for letter in self.contracted_letters]
        first = [axis for axis in range(x.ndim) if axis not in last]
        return np.transpose(x, first + last).reshape(-1, self.inputs)


class ConvView(MatrixView):
    """`MatrixView` of a Conv1D / 2D / 3D kernel [*kernel_size, inputs, filters] (im2col)."""

    def __init__(self, weight, layer):
        rank = len(weight.variable.shape)
        super().__init__(weight, range(rank - 1), [rank - 1])
        self.kernel_size = tuple(int(k) for k in layer.kernel_size)
        self.strides = tuple(int(s) for s in layer.strides)
        self.dilation = tuple(int(d) for d in layer.dilation_rate)
        self.padding = layer.padding

    def rows(self, x):
        x = _to_numpy(x).astype(np.float32, copy=False)
        spatial = x.shape[1:-1]
        pads, out_sizes = [(0, 0)], []
        for size, k, s, d in zip(
            spatial, self.kernel_size, self.strides, self.dilation, strict=True
        ):
            extent = (k - 1) * d + 1
            if self.padding == "valid":
                out, pad = (size - extent) // s + 1, (0, 0)
            elif self.padding == "causal":
                out, pad = (size - 1) // s + 1, (extent - 1, 0)
            else:  # "same", as TensorFlow pads: the odd pixel goes after
                out = -(-size // s)
                total = max((out - 1) * s + extent - size, 0)
                pad = (total // 2, total - total // 2)
            pads.append(pad)
            out_sizes.append(out)
        padded = np.pad(x, pads + [(0, 0)])
        pieces = []
        for offsets in itertools.product(*(range(k) for k in self.kernel_size)):
            index = tuple(
                slice(o * d, o * d + (n - 1) * s + 1, s)
                for o, d, n, s in zip(offsets, self.dilation, out_sizes, self.strides, strict=True)
            )
            pieces.append(padded[(slice(None), *index, slice(None))])
        return np.stack(pieces, axis=-2).reshape(-1, self.inputs)


_CONVOLUTIONS = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_NOT_CONVOLUTIONS = (
    layers.Conv1DTranspose,
    layers.Conv2DTranspose,
    layers.Conv3DTranspose,
    layers.DepthwiseConv1D,
    layers.DepthwiseConv2D,
    layers.SeparableConv1D,
    layers.SeparableConv2D,
)


def matrix_view(weight):
    """`(MatrixView, None)` for a weight SparseGPT / Wanda can prune, else `(None, reason)`.

    Args:
        weight: a `keras_prune.layers.layouts.PrunableWeight` (its `owner` is the layer that
            multiplies it with its input).

    Example:

    ```python
    dense = keras.layers.Dense(8)
    dense.build((None, 4))
    view, _ = matrix_view(kp.layers.prunable_weights(dense)[0])
    view.matrix(dense.kernel.numpy()).shape   # (8, 4)
    ```
    """
    layer, variable = weight.owner, weight.variable
    if isinstance(layer, layers.Dense) and variable is getattr(layer, "kernel", None):
        return MatrixView(weight, [0], [1]), None
    if isinstance(layer, layers.EinsumDense) and variable is getattr(layer, "kernel", None):
        inputs, output = layer.equation.split("->")
        input_spec, kernel_spec = inputs.split(",")
        if any(c in input_spec and c in output for c in kernel_spec):
            return None, BATCHED_EINSUM
        if any(c not in input_spec and c not in output for c in kernel_spec):
            return None, NOT_A_MATMUL
        return EinsumView(weight, layer.equation), None
    if isinstance(layer, _CONVOLUTIONS) and not isinstance(layer, _NOT_CONVOLUTIONS):
        if variable is not getattr(layer, "kernel", None):
            return None, NOT_A_MATMUL
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return None, CHANNELS_FIRST
        if getattr(layer, "groups", 1) != 1:
            return None, GROUPED
        return ConvView(weight, layer), None
    if hasattr(layer, "get_prunable_weights") and len(variable.shape) == 2:
        return MatrixView(weight, [0], [1]), None
    return None, f"{type(layer).__name__} weight: {NOT_A_MATMUL}"
