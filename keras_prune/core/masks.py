"""Pure mask functions: arrays in, 0/1 float32 masks out (keras.ops only; `top_k_masks_together`
can give the uint8 masks `kp.PruneWrapper` stores).

Conventions:
- `keep_count(n, sparsity) = max(round(n * (1 - sparsity)), 1)` elements survive, rounding half
  to even in float32 as tfmot does; exactly that many survive, ties broken by position.
- Structured masks work on a 2-D "TFLite view" of a weight: rows are output channels (times any
  spatial positions), columns are input channels. `to_tflite_view` / `from_tflite_view` move a
  Keras weight in and out of that view given its output and input axes.
"""

import math
import numbers

import keras
from keras import ops

__all__ = [
    "block_mask",
    "few_largest",
    "from_tflite_view",
    "keep_count",
    "magnitude_mask",
    "n_of_m_mask",
    "row_mask",
    "row_norms",
    "sparsity_mask",
    "to_tflite_view",
    "top_k_mask",
    "top_k_masks_together",
]

# Below this many elements a sort is cheaper than radix passes.
_SORT_BELOW = 2048
# From this many elements on, two 16-bit radix passes (see `_radix_digit_widths`).
_WIDE_DIGITS_FROM = 1 << 19


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
    return _sortable_keys_from_bits(ops.view(ops.cast(values, "float32"), "int32"))


def _sortable_keys_from_bits(bits):
    # Non-negative floats already order like their bits; negative ones order in reverse.
    return ops.where(ops.less(bits, 0), ops.bitwise_xor(bits, 0x7FFFFFFF), bits)


def _select_digit(histogram, k):
    """The digit holding the k-th largest of the keys a digit histogram counts.

    Returns that digit and how many of the keys lie strictly above it.
    """
    at_or_below = ops.cumsum(histogram)
    size = at_or_below[-1]
    # Counts strictly below a digit grow with it; the k-th largest sits in the last digit that
    # has at most size - k keys strictly below it.
    digit = ops.sum(ops.cast(ops.less_equal(at_or_below - histogram, size - k), "int32")) - 1
    return digit, size - at_or_below[digit]


def _radix_digit_widths(size):
    """Digit widths (bits, summing to 32) of the radix passes for `size` keys.

    Each pass is a few elementwise ops and a histogram over every key, plus a prefix sum over
    the bins: wide digits mean fewer passes but bigger histograms. Measured on 2 CPU cores
    (TensorFlow, `benchmarks/bench_core.py --section updates`): three 11-bit passes beat two
    16-bit ones below about half a million keys, where the 65,536-bin histograms cost more
    than the extra pass."""
    return (11, 11, 10) if size < _WIDE_DIGITS_FROM else (16, 16)


def _kth_largest_key_of_parts(
    parts, k, size, to_keys=lambda keys, after: keys, nonnegative=False, hold=False
):
    """The k-th largest of the int32 keys `to_keys(part, after)` of several tensors together,
    by radix selection: O(n), no sort, and no concatenation of the parts (their first-digit
    histograms add up). Unless `hold`, keys are made again from each part rather than kept,
    one part after the other: `after` is the tensor the part's keys may wait for (what the
    previous part gave), so a graph runtime that orders by it holds one part's keys and
    intermediates at a time. With `hold` each part's keys and top digits are kept from the
    first pass for the second (4 more bytes per key alive, two passes fewer).

    Each pass counts, among the keys that share the digits chosen so far (the prefix), how
    many have each value of the next digit, and keeps the digit holding the k-th largest.
    After the first pass only the keys in the chosen bucket can be the k-th largest: they are
    gathered (a few percent of the keys, for weights spread over many magnitudes), and the
    later passes read only them. `size` is the number of keys in all parts; `nonnegative`
    promises no key is negative (their top digits then need no offset).

    Returns the threshold key, how many keys lie strictly above it, how many tie with it, and
    for each part a lower bound of how many of its keys are at or above the threshold (those
    above the chosen first digit, read from the first pass's histograms).
    """
    widths = _radix_digit_widths(size)
    shift = 32 - widths[0]
    bins = 1 << widths[0]
    # The top digit is signed (arithmetic shift): offset it into [0, bins), unless no key is
    # negative (then it is in [0, bins / 2) as it is).
    offset = 0 if nonnegative else bins // 2
    histograms, held, after = [], [], None
    for part in parts:
        keys = to_keys(part, after)
        top_digits = ops.right_shift(keys, shift)
        if offset:
            top_digits = top_digits + offset
        after = ops.bincount(top_digits, minlength=bins)
        histograms.append(after)
        if hold or len(parts) == 1:
            held.append((keys, top_digits))
    histograms = ops.stack(histograms)
    digit, above = _select_digit(ops.sum(histograms, axis=0), k)
    surely_kept = ops.sum(ops.where(ops.arange(bins) > digit, histograms, 0), axis=1)
    prefix = digit - offset  # == key >> shift for the keys in the chosen bucket
    if held:
        # The keys and top digits are still at hand, no need to make them again.
        candidates = [
            ops.take(keys, ops.nonzero(ops.equal(top_digits, digit))[0])
            for keys, top_digits in held
        ]
    else:
        candidates, after = [], prefix
        for part in parts:
            after = _keys_with_prefix(to_keys(part, after), prefix, shift)
            candidates.append(after)
    candidates = candidates[0] if len(candidates) == 1 else ops.concatenate(candidates)
    for index, width in enumerate(widths[1:]):
        if index:
            candidates = _keys_with_prefix(candidates, prefix, shift)
        shift, bins = shift - width, 1 << width
        digits = ops.bitwise_and(ops.right_shift(candidates, shift), bins - 1)
        histogram = ops.bincount(digits, minlength=bins)
        digit, above_digit = _select_digit(histogram, k - above)
        above = above + above_digit
        prefix = prefix * bins + digit
    return prefix, above, histogram[digit], [surely_kept[i] for i in range(len(parts))]


def _keys_with_prefix(keys, prefix, shift):
    """The keys whose bits above `shift` are `prefix` (arithmetic shift), in order."""
    return ops.take(keys, ops.nonzero(ops.equal(ops.right_shift(keys, shift), prefix))[0])


def top_k_masks_together(scores, k, forced=None, dtype="float32", nonnegative=False, rescore=None):
    """0/1 masks for a list of score tensors ranked together: exactly the `k` largest scores
    of all of them survive (ties: earlier tensors, then earlier positions, first), as
    `top_k_mask` of their concatenation would give. `forced` (a boolean tensor per score
    tensor, or None) marks entries ranked above every score, as if their score were +inf.

    From 2,048 elements up (except on JAX) the tensors are never concatenated: the radix
    histograms of each are added. Without `rescore` every tensor's sort keys are made once
    and held (4 bytes per score, and 4 more for their top radix digits until the bucket
    holding the k-th largest is gathered). With `rescore` the scores are computed again in
    each pass, one tensor after the other, so memory stays at one tensor's intermediates.

    Args:
        scores: list of float tensors of any shapes.
        k: number of elements to keep overall (int or int32 scalar tensor).
        forced: None, or one boolean tensor per score tensor, shaped like it.
        dtype: dtype of the masks ("uint8" or "bool" take a quarter of float32's memory).
        nonnegative: a promise that no score is negative (nor -0.0), as magnitudes are: their
            float bits then sort as they are, which saves full-size intermediates in every
            radix pass. Not checked: a negative score gives wrong masks or an error.
        rescore: None, or one function `after -> scores` per score tensor, computing it again
            (the same values at every call, e.g. from a weight variable): `scores` then only
            give the shapes. `after` is None or a tensor the ranking computes before; a graph
            runtime may wait for it (`tf.control_dependencies`), so the tensors' scores are
            computed one after the other, or ignore it.

    Example:

    ```python
    kp.masks.top_k_masks_together([np.array([0.1, 0.9]), np.array([0.5])], 2)  # [0, 1], [1]
    ```
    """
    return top_k_masks_and_counts(scores, k, forced, dtype, nonnegative, rescore)[0]


def top_k_masks_and_counts(
    scores, k, forced=None, dtype="float32", nonnegative=False, rescore=None, exact_counts=True
):
    """`top_k_masks_together`, and how many entries each mask keeps (int32 scalars, counted
    while each mask is made rather than from the masks afterwards). With `exact_counts=False`
    the counts are lower bounds where that saves passes over the masks (from 2,048 elements
    up, except on JAX): how many entries of each tensor rank above the threshold's first radix
    digit, all of them kept, read from the first pass's histograms."""
    sources = rescore or [lambda after, tensor=tensor: tensor for tensor in scores]
    shapes = [tuple(ops.shape(tensor)) for tensor in scores]
    sizes = [math.prod(shape) for shape in shapes]
    k = ops.cast(k, "int32")
    if sum(sizes) < _SORT_BELOW or keras.backend.backend() == "jax":
        values = [ops.cast(source(None), "float32") for source in sources]
        if forced is not None:
            values = [
                ops.where(mask, float("inf"), tensor)
                for tensor, mask in zip(values, forced, strict=True)
            ]
        flat = ops.concatenate([ops.reshape(tensor, (-1,)) for tensor in values])
        keep = ops.cast(top_k_mask(flat, k), dtype)
        result, start = [], 0
        for shape, size in zip(shapes, sizes, strict=True):
            result.append(ops.reshape(keep[start : start + size], shape))
            start += size
        return result, [ops.sum(ops.cast(mask, "int32")) for mask in result]

    def to_keys(index, after):
        bits = _float_bits(sources[index](after))
        keys = bits if nonnegative else _sortable_keys_from_bits(bits)
        if forced is None:
            return keys
        # The key of +inf: forced entries rank above every finite score.
        return ops.where(ops.reshape(forced[index], (-1,)), 0x7F800000, keys)

    indices = range(len(scores))
    hold = rescore is None
    if hold:
        # The scores are held anyway: their keys are made once, kept in place of them.
        held = [to_keys(index, None) for index in indices]
        to_keys = lambda index, after: held[index]  # noqa: E731
    threshold, above_count, tie_count, surely_kept = _kth_largest_key_of_parts(
        indices, k, sum(sizes), to_keys, nonnegative=nonnegative, hold=hold
    )
    ties_to_keep = k - above_count

    def keep_every_tie(keys, ties_before):
        return ops.greater_equal(keys, threshold), ties_before

    def keep_first_ties(keys, ties_before):
        is_tie = ops.equal(keys, threshold)
        # The tie rank counts the ties of the tensors before this one: earlier tensors first.
        tie_rank = ties_before + ops.cumsum(ops.cast(is_tie, "int32"))
        keep = ops.logical_or(
            ops.greater(keys, threshold),
            ops.logical_and(is_tie, ops.less_equal(tie_rank, ties_to_keep)),
        )
        return keep, ties_before + ops.sum(ops.cast(is_tie, "int32"))

    def masks_keeping(ties):
        result, counts = [], []
        ties_before, after = ops.convert_to_tensor(0, "int32"), threshold
        for index, shape in enumerate(shapes):
            keep, ties_before = ties(to_keys(index, after), ties_before)
            result.append(ops.reshape(ops.cast(keep, dtype), shape))
            if exact_counts:
                counts.append(ops.sum(ops.cast(keep, "int32")))
            after = counts[-1] if exact_counts else result[-1]
        return result, counts if exact_counts else surely_kept

    # Usually every tie is kept (there is no tie but the threshold itself): then no tie rank,
    # whose prefix sum takes two int32 copies of each tensor, is needed.
    return ops.cond(
        ops.equal(tie_count, ties_to_keep),
        lambda: masks_keeping(keep_every_tie),
        lambda: masks_keeping(keep_first_ties),
    )


def _kth_largest_key_by_sort(keys, k):
    """The k-th largest of int32 `keys` by sorting: cheaper than radix passes for small inputs."""
    threshold = ops.take(ops.sort(keys), ops.shape(keys)[0] - k)
    above = ops.sum(ops.cast(ops.greater(keys, threshold), "int32"))
    ties = ops.sum(ops.cast(ops.equal(keys, threshold), "int32"))
    return threshold, above, ties


def _top_k_of_keys(keys, k, selection):
    """Boolean mask of the k largest int32 `keys` (ties: earlier positions first).

    `selection` is `(threshold, above_count, tie_count)` from one of the `_kth_largest_key_*`.
    """
    threshold, above_count, tie_count = selection
    ties_to_keep = k - above_count

    def keep_first_ties():
        is_tie = ops.equal(keys, threshold)
        tie_rank = ops.cumsum(ops.cast(is_tie, "int32"))
        return ops.logical_or(
            ops.greater(keys, threshold),
            ops.logical_and(is_tie, ops.less_equal(tie_rank, ties_to_keep)),
        )

    # Ties are rare but real (zeros from earlier pruning); the prefix sum is paid only then.
    return ops.cond(
        ops.equal(tie_count, ties_to_keep),
        lambda: ops.greater_equal(keys, threshold),
        keep_first_ties,
    )


def top_k_mask(scores, k, nonnegative=False, dtype="float32"):
    """0/1 mask keeping exactly the `k` largest `scores` (ties: earlier positions first).

    The threshold is found on order-preserving integer keys: by a sort for small tensors, and
    by radix selection (O(n), no sort) from 2,048 elements up (except on JAX, which always
    sorts).

    Args:
        scores: float tensor of any shape.
        k: number of elements to keep, 1 <= k <= scores.size (int or int32 scalar tensor).
        nonnegative: a promise that no score is negative (nor -0.0), as magnitudes are: their
            float bits then sort as they are, which saves four full passes. Not checked: a
            negative score gives a wrong mask or an error.
        dtype: the mask's dtype ("uint8", as `kp.PruneWrapper` stores masks, takes a quarter
            of float32's memory and no conversion when installed).

    Example:

    ```python
    kp.masks.top_k_mask(np.array([0.1, 0.5, 0.3, 0.5]), 2)  # [0, 1, 0, 1]
    ```
    """
    keep = _top_k_of_bits(_float_bits(scores), ops.cast(k, "int32"), nonnegative)
    return ops.reshape(ops.cast(keep, dtype), ops.shape(scores))


def few_largest(scores, k):
    """Boolean mask of the `k` largest `scores` (ties: earlier positions first), for a `k`
    that is a small fraction of the scores (a per-layer floor): `ops.top_k` finds them by a
    partial sort whose cost grows with log(k), and unlike `top_k_mask` it needs no
    branch, which keeps a traced global ranking's graph small.

    Args:
        scores: float tensor of any shape.
        k: number of elements to keep, a Python int, 1 <= k <= scores.size.

    Example:

    ```python
    kp.masks.few_largest(np.array([0.1, 0.5, 0.3, 0.5]), 1)  # [False, True, False, False]
    ```
    """
    if keras.backend.backend() == "torch":
        # torch.topk does not keep the earlier of tied scores (TensorFlow's and JAX's do);
        # torch runs eagerly, so there is no graph to keep small.
        return ops.greater(top_k_mask(scores, k), 0)
    flat = ops.reshape(ops.cast(scores, "float32"), (-1,))
    _, indices = ops.top_k(flat, k, sorted=True)
    chosen = ops.scatter(ops.expand_dims(indices, -1), ops.ones((k,), "int32"), ops.shape(flat))
    return ops.reshape(ops.greater(chosen, 0), ops.shape(scores))


def _float_bits(values):
    """The int32 bit patterns of `values` as float32, flattened."""
    return ops.view(ops.cast(ops.reshape(values, (-1,)), "float32"), "int32")


def _top_k_of_bits(bits, k, nonnegative):
    """Boolean mask of the k largest floats given by their `bits` (see `top_k_mask`).

    With `nonnegative=True` the caller guarantees no sign bit is set: the bits of non-negative
    floats already sort like the floats, so they are the keys.
    """
    keys = bits if nonnegative else _sortable_keys_from_bits(bits)
    size = ops.shape(bits)[0]
    # JAX cannot trace bincount (its output length depends on the data), and learnable masks
    # select inside jax.jit, so JAX always sorts.
    if size < _SORT_BELOW or keras.backend.backend() == "jax":
        return _top_k_of_keys(keys, k, _kth_largest_key_by_sort(keys, k))
    selection = _kth_largest_key_of_parts([keys], k, size, nonnegative=nonnegative)[:3]
    return _top_k_of_keys(keys, k, selection)


def sparsity_mask(scores, sparsity, nonnegative=False, dtype="float32"):
    """Keep the `keep_count(size, sparsity)` highest scores (per-tensor unstructured pruning;
    `nonnegative` and `dtype` as in `top_k_mask`)."""
    kept = keep_count(math.prod(ops.shape(scores)), sparsity)
    return top_k_mask(scores, kept, nonnegative, dtype)


def magnitude_mask(weight, sparsity):
    """Unstructured magnitude mask: keep the largest |w| (tfmot's rule, exact count).

    Example:

    ```python
    kp.masks.magnitude_mask(np.array([[0.1, -2.0], [0.3, 1.0]]), 0.5)  # [[0, 1], [0, 1]]
    ```
    """
    # The bits of |w| already sort like |w|: no key transform, no sign check.
    return sparsity_mask(ops.abs(weight), sparsity, nonnegative=True)


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
    kp.masks.block_mask(np.abs(np.random.randn(4, 8)).astype("float32"), 0.5, (1, 4))
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
    scores = ops.convert_to_tensor(scores)
    rows, columns = ops.shape(scores)
    groups = -(-columns // m)
    padded = scores
    if groups * m > columns:
        # Filled with less than every score, so padding is never kept. Not `ops.pad`: torch's
        # pad takes only a Python number as the fill value, and this one is a tensor.
        lowest = ops.min(scores) - 1.0
        filler = ops.zeros((rows, groups * m - columns), scores.dtype) + lowest
        padded = ops.concatenate([scores, filler], axis=1)
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
    return sparsity_mask(row_norms(scores, norm), sparsity)


def row_norms(scores, norm="l2"):
    """The L1 or L2 norm of each row of a 2-D score matrix.

    Example:

    ```python
    kp.masks.row_norms(np.array([[3.0, 4.0], [1.0, -1.0]]), "l1")  # [7, 2]
    ```
    """
    if norm == "l1":
        return ops.sum(ops.abs(scores), axis=1)
    if norm == "l2":
        return ops.sqrt(ops.sum(ops.square(scores), axis=1))
    raise ValueError(f"Expected `norm` 'l1' or 'l2'. Received: norm={norm!r}")
