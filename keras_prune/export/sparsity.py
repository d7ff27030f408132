"""Did the zeros survive conversion? The kernels Keras prunes against the weights the file uses.

Counting every rank >= 2 constant in the file mixes in tensors Keras never pruned: BatchNorm
scale and offset constants of shape (1, 1, 1, C), padding amounts, zero-initialised biases
reshaped by the converter. The comparison here takes, on the Keras side, only the kernels of
the layers (`kernel`, `depthwise_kernel`, `pointwise_kernel`, `embeddings`) and, on the file
side, only the weight operands of the ops those kernels become (FULLY_CONNECTED, CONV_2D, ...,
looking through DENSIFY and DEQUANTIZE). Folding BatchNorm into a convolution scales its kernel,
which keeps zeros zero, and conversions can split or merge kernels (LSTM gates), so the two
sides are matched by element count: kernels of a size whose count differs between Keras and the
file are left out of the comparison rather than guessed at.
"""

import dataclasses

import keras
import numpy as np

from keras_prune.export.convert import all_layers

# Below this share of zero kernel weights a model was not pruned: an unpruned ResNet50 has a
# few exact zeros, and reporting "0.0% kept" for it is noise.
MIN_REPORTED_ZERO_SHARE = 0.01
_KERNEL_ATTRIBUTES = ("kernel", "depthwise_kernel", "pointwise_kernel", "embeddings")
# Operand positions that hold a layer's kernel, per op.
_WEIGHT_OPERANDS = {
    "FULLY_CONNECTED": (1,),
    "CONV_2D": (1,),
    "CONV_3D": (1,),
    "DEPTHWISE_CONV_2D": (1,),
    "TRANSPOSE_CONV": (1,),
    "CONV_3D_TRANSPOSE": (1,),
    "BATCH_MATMUL": (0, 1),
    "EMBEDDING_LOOKUP": (1,),
    "GATHER": (0,),
}


@dataclasses.dataclass
class SparsityComparison:
    """Zeros in the compared kernels, in Keras and in the file.

    Args:
        compared: Number of kernels compared.
        weights: Their total number of weights.
        keras_zeros: Zero weights among them in Keras.
        file_zeros: Zero weights among the matching file tensors.
        lost_sizes: Element counts of kernel groups with fewer zeros in the file than in Keras.
    """

    compared: int
    weights: int
    keras_zeros: int
    file_zeros: int
    lost_sizes: list

    @property
    def lost(self):
        return bool(self.lost_sizes)

    def note(self):
        """One line for the export report, or None when the kernels were not pruned (fewer than
        1% zeros in Keras)."""
        if not self.compared or self.keras_zeros < MIN_REPORTED_ZERO_SHARE * self.weights:
            return None
        keras_share = 100 * self.keras_zeros / self.weights
        file_share = 100 * self.file_zeros / self.weights
        figures = (
            f"{keras_share:.1f}% of the weights of {self.compared} layer kernel(s) zero in "
            f"Keras, {file_share:.1f}% in the file"
        )
        if self.lost:
            return f"sparsity LOST (zeros became non-zero): {figures}"
        return f"sparsity kept: {figures}"


def _keras_kernels(model):
    seen = set()
    for layer in all_layers(model):
        if isinstance(layer, keras.Model):
            continue
        for attribute in _KERNEL_ATTRIBUTES:
            variable = getattr(layer, attribute, None)
            if variable is None or not hasattr(variable, "shape") or len(variable.shape) < 2:
                continue
            key = id(variable)
            if key in seen:
                continue
            seen.add(key)
            yield np.asarray(keras.ops.convert_to_numpy(variable))


def _file_kernels(info):
    seen = set()
    for op in info.ops:
        for position in _WEIGHT_OPERANDS.get(op.name, ()):
            operand = info.operand(op, position)
            if operand is None:
                continue
            source = info.constant_source(operand.index)
            if source is None or source.density is None or source.index in seen:
                continue
            seen.add(source.index)
            yield source


def compare_sparsity(model, info):
    """Compares the zeros of `model`'s kernels with those of the file's weight operands.

    Args:
        model: The plain Keras model that was converted.
        info: The converted file's `ModelInfo`.

    Returns:
        A `SparsityComparison`.
    """
    keras_groups, file_groups = {}, {}
    for values in _keras_kernels(model):
        keras_groups.setdefault(values.size, []).append(values.size - np.count_nonzero(values))
    for tensor in _file_kernels(info):
        zeros = tensor.size - round(tensor.density * tensor.size)
        file_groups.setdefault(tensor.size, []).append(zeros)
    compared = weights = keras_zeros = file_zeros = 0
    lost = []
    for size, keras_counts in sorted(keras_groups.items()):
        file_counts = file_groups.get(size, [])
        if len(file_counts) != len(keras_counts):
            continue
        compared += len(keras_counts)
        weights += size * len(keras_counts)
        keras_zeros += int(sum(keras_counts))
        file_zeros += int(sum(file_counts))
        if sum(file_counts) < sum(keras_counts):
            lost.append(size)
    return SparsityComparison(compared, weights, keras_zeros, file_zeros, lost)
