"""Pure mask functions: arrays in, 0/1 float32 masks out (keras.ops only).

Conventions:
- `keep_count(n, sparsity) = max(round(n * (1 - sparsity)), 1)` elements survive, rounding half
  to even in float32 as tfmot does; exactly that many survive, ties broken by position.
- Structured masks work on a 2-D "TFLite view" of a weight: rows are output channels (times any
  spatial positions), columns are input channels. `to_tflite_view` / `from_tflite_view` move a
  Keras weight in and out of that view given its output and input axes.
"""

import math
import numbers

from keras import ops

_RADIX_BINS = 65536


def keep_count(size, sparsity):
    """Number of elements kept out of `size` at `sparsity` (a Python int or an int32 tensor)."""
    if isinstance(sparsity, numbers.Real) and isinstance(size, numbers.Integral):
        import numpy as np

        kept = np.round(np.float32(size) * (np.float32(1.0) - np.float32(sparsity)))
        return max(int(kept), 1)
    kept = ops.round(ops.cast(size, "float32") * (1.0 - ops.cast(sparsity, "float32")))
    return ops.cast(ops.maximum(kept, 1.0), "int32")


def sortable_keys(values):
    """Map float32 values to int32 keys with the same order (for exact radix selection)."""
    bits = ops.view(ops.cast(values, "float32"), "int32")
    return ops.where(ops.less(bits, 0), ops.bitwise_xor(bits, 0x7FFFFFFF), bits)


def _count_at_or_above(histogram):
    """`result[d]` = number of elements whose digit is >= d."""
    return ops.flip(ops.cumsum(ops.flip(histogram, 0)), 0)


def _select_digit(histogram, k):
    """Largest digit d with at least k elements at or above it, and the count strictly above d."""
    at_or_above = _count_at_or_above(histogram)
    digit = ops.sum(ops.cast(ops.greater_equal(at_or_above, k), "int32")) - 1
    padded = ops.concatenate([at_or_above, ops.zeros((1,), at_or_above.dtype)])
    above = ops.take(padded, digit + 1)
    return digit, above


def _kth_largest_key_by_radix(keys, k):
    """The k-th largest of int32 `keys`: two 16-bit radix passes, O(n), no sort."""
    high_digit = ops.floor_divide(keys, 65536) + 32768
    high, above_high = _select_digit(ops.bincount(high_digit, minlength=_RADIX_BINS), k)
    in_bucket = ops.cast(ops.equal(high_digit, high), "int32")
    low_digit = ops.bitwise_and(keys, 0xFFFF)
    low_histogram = ops.bincount(low_digit, weights=in_bucket, minlength=_RADIX_BINS)
    low_histogram = ops.cast(low_histogram, "int32")
    low, above_low = _select_digit(low_histogram, k - above_high)
    threshold = (high - 32768) * 65536 + low
    # The histograms already count what lies above the threshold and what ties with it.
    return threshold, above_high + above_low, ops.take(low_histogram, low)


def _kth_largest_key_by_sort(keys, k):
    """The k-th largest of int32 `keys` by sorting: cheaper than radix passes for small inputs."""
    threshold = ops.take(ops.sort(keys), ops.shape(keys)[0] - k)
    above = ops.sum(ops.cast(ops.greater(keys, threshold), "int32"))
    ties = ops.sum(ops.cast(ops.equal(keys, threshold), "int32"))
    return threshold, above, ties


def top_k_mask(scores, k):
    """0/1 mask keeping exactly the `k` largest `scores` (ties: earlier positions first).

    The threshold is found on order-preserving integer keys: by a sort for small tensors, and
    by a two-pass radix selection (O(n), no sort) from 65,536 elements up.

    Args:
        scores: float tensor of any shape.
        k: number of elements to keep, 1 <= k <= scores.size (int or int32 scalar tensor).

    Example:

    ```python
    kp.masks.top_k_mask(np.array([0.1, 0.5, 0.3, 0.5]), 2)  # [0, 1, 0, 1]
    ```
    """
    shape = ops.shape(scores)
    keys = sortable_keys(ops.reshape(scores, (-1,)))
    k = ops.cast(k, "int32")
    if math.prod(shape) < _RADIX_BINS:
        threshold, above_count, tie_count = _kth_largest_key_by_sort(keys, k)
    else:
        threshold, above_count, tie_count = _kth_largest_key_by_radix(keys, k)
    ties_to_keep = k - above_count

    def keep_first_ties():
        is_tie = ops.equal(keys, threshold)
        tie_rank = ops.cumsum(ops.cast(is_tie, "int32"))
        return ops.logical_or(
            ops.greater(keys, threshold),
            ops.logical_and(is_tie, ops.less_equal(tie_rank, ties_to_keep)),
        )

    # Ties are rare but real (zeros from earlier pruning); the prefix sum is paid only then.
    mask = ops.cond(
        ops.equal(tie_count, ties_to_keep),
        lambda: ops.greater_equal(keys, threshold),
        keep_first_ties,
    )
    return ops.reshape(ops.cast(mask, "float32"), shape)


def sparsity_mask(scores, sparsity):
    """Keep the `keep_count(size, sparsity)` highest scores (per-tensor unstructured pruning)."""
    return top_k_mask(scores, keep_count(math.prod(ops.shape(scores)), sparsity))


def magnitude_mask(weight, sparsity):
    """Unstructured magnitude mask: keep the largest |w| (tfmot's rule, exact count).

    Example:

    ```python
    kp.masks.magnitude_mask(np.array([[0.1, -2.0], [0.3, 1.0]]), 0.5)  # [[0, 1], [0, 1]]
    ```
    """
    return sparsity_mask(ops.abs(weight), sparsity)


def to_tflite_view(weight, output_axis, input_axis):
    """Rearrange `weight` into 2-D: rows = output channel (x other axes), columns = input channel.

    This is the layout TFLite stores: a Dense kernel [in, out] becomes [out, in]; a Conv2D kernel
    [h, w, in, out] becomes [out * h * w, in]. With `input_axis=None` (or equal to `output_axis`)
    each row is one whole output channel: [out, everything else]. Returns
    `(view, permutation, permuted_shape)` for `from_tflite_view`.
    """
    shape = tuple(ops.shape(weight))
    rank = len(shape)
    if rank == 0:
        raise ValueError("Cannot prune a scalar weight: it has no elements to choose between.")
    if rank == 1:
        view_shape = (shape[0], 1) if input_axis is None else (1, shape[0])
        return ops.reshape(weight, view_shape), (0,), shape
    output_axis %= rank
    whole_channels = input_axis is None or input_axis % rank == output_axis
    if whole_channels:
        others = [axis for axis in range(rank) if axis != output_axis]
        permutation = (output_axis, *others)
        view_shape = (shape[output_axis], -1)
    else:
        input_axis %= rank
        others = [axis for axis in range(rank) if axis not in (output_axis, input_axis)]
        permutation = (output_axis, *others, input_axis)
        view_shape = (-1, shape[input_axis])
    permuted = ops.transpose(weight, permutation)
    return ops.reshape(permuted, view_shape), permutation, tuple(ops.shape(permuted))


def from_tflite_view(view, permutation, permuted_shape):
    """Inverse of `to_tflite_view`."""
    permuted = ops.reshape(view, permuted_shape)
    if len(permutation) == 1:
        return permuted
    inverse = [0] * len(permutation)
    for position, axis in enumerate(permutation):
        inverse[axis] = position
    return ops.transpose(permuted, inverse)


def block_mask(scores, sparsity, block_shape, pooling="avg"):
    """Mask whole (r, c) blocks of a 2-D score matrix by pooled score (tfmot's block sparsity).

    Edge blocks that do not fill a whole (r, c) tile are pooled over what they hold.
    Exactly `keep_count(num_blocks, sparsity)` blocks survive.

    Args:
        scores: 2-D float tensor (TFLite view: rows = outputs, columns = inputs).
        sparsity: fraction of blocks to zero, in [0, 1).
        block_shape: (rows, columns) of one block.
        pooling: "avg" or "max" over each block.

    Example:

    ```python
    kp.masks.block_mask(np.abs(np.random.randn(4, 8)), 0.5, (1, 4))
    ```
    """
    rows, columns = ops.shape(scores)
    block_rows, block_columns = block_shape
    if block_rows > rows or block_columns > columns:
        raise ValueError(
            f"Block shape {tuple(block_shape)} is larger than the weight's 2-D view "
            f"{(rows, columns)} (rows = output channels, columns = input channels). "
            "Use a smaller block, or leave this layer out with `filters=`."
        )
    grid_rows = -(-rows // block_rows)
    grid_columns = -(-columns // block_columns)
    padded = ops.pad(
        scores,
        [[0, grid_rows * block_rows - rows], [0, grid_columns * block_columns - columns]],
    )
    tiles = ops.reshape(padded, (grid_rows, block_rows, grid_columns, block_columns))
    if pooling == "max":
        pooled = ops.max(tiles, axis=(1, 3))
    elif pooling == "avg":
        ones = ops.pad(
            ops.ones((rows, columns)),
            [[0, grid_rows * block_rows - rows], [0, grid_columns * block_columns - columns]],
        )
        counts = ops.sum(
            ops.reshape(ones, (grid_rows, block_rows, grid_columns, block_columns)), (1, 3)
        )
        pooled = ops.sum(tiles, axis=(1, 3)) / counts
    else:
        raise ValueError(f"Expected `pooling` 'avg' or 'max'. Received: pooling={pooling!r}")
    kept_blocks = sparsity_mask(pooled, sparsity)
    expanded = ops.repeat(ops.repeat(kept_blocks, block_rows, axis=0), block_columns, axis=1)
    return expanded[:rows, :columns]


def n_of_m_mask(scores, n, m):
    """Keep the `n` largest of every `m` consecutive columns (input channels) of a 2-D matrix.

    This is the N:M (e.g. 2:4) pattern along the input-channel axis in TFLite layout. A trailing
    group shorter than `m` keeps min(n, its length) entries.

    Example:

    ```python
    kp.masks.n_of_m_mask(np.array([[4.0, 1.0, 3.0, 2.0]]), 2, 4)  # [[1, 0, 1, 0]]
    ```
    """
    rows, columns = ops.shape(scores)
    groups = -(-columns // m)
    lowest = ops.min(scores) - 1.0
    padded = ops.pad(scores, [[0, 0], [0, groups * m - columns]], constant_values=lowest)
    grouped = ops.reshape(padded, (rows, groups, m))
    _, kept = ops.top_k(grouped, k=n, sorted=False)
    mask = ops.sum(ops.one_hot(kept, m), axis=-2)
    return ops.reshape(mask, (rows, groups * m))[:, :columns]


def row_mask(scores, sparsity, norm="l2"):
    """Keep whole rows (output channels) by the L1 or L2 norm of their scores.

    Exactly `keep_count(rows, sparsity)` rows survive. Returns a 0/1 vector of length rows.

    Example:

    ```python
    kp.masks.row_mask(np.array([[1.0, 1.0], [0.1, 0.0], [3.0, 0.0]]), 1 / 3)  # [1, 0, 1]
    ```
    """
    if norm == "l1":
        row_scores = ops.sum(ops.abs(scores), axis=1)
    elif norm == "l2":
        row_scores = ops.sqrt(ops.sum(ops.square(scores), axis=1))
    else:
        raise ValueError(f"Expected `norm` 'l1' or 'l2'. Received: norm={norm!r}")
    return sparsity_mask(row_scores, sparsity)
