"""Pure mask functions against NumPy references."""

import numpy as np
import pytest
from keras import ops

from keras_prune.core import masks


def numpy(x):
    return ops.convert_to_numpy(x)


@pytest.mark.parametrize("size", [1, 2, 7, 100, 4099])
def test_top_k_mask_keeps_exactly_k_largest(size):
    rng = np.random.default_rng(size)
    for k in sorted({1, max(size // 3, 1), size}):
        scores = rng.normal(size=size).astype("float32")
        mask = numpy(masks.top_k_mask(scores, k))
        assert mask.sum() == k
        expected = np.zeros(size)
        expected[np.argsort(-scores, kind="stable")[:k]] = 1
        np.testing.assert_array_equal(mask, expected)


def test_top_k_mask_breaks_ties_by_position():
    scores = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 0.0], "float32")
    np.testing.assert_array_equal(numpy(masks.top_k_mask(scores, 3)), [1, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(numpy(masks.top_k_mask(scores, 2)), [0, 1, 0, 1, 0, 0])


def test_top_k_mask_orders_negative_and_special_values():
    scores = np.array([-3.0, -0.0, 0.0, 2.5, -1e-30, 1e30, -np.inf, np.inf], "float32")
    order = np.argsort(-scores, kind="stable")
    for k in range(1, len(scores) + 1):
        expected = np.zeros(len(scores))
        expected[order[:k]] = 1
        mask = numpy(masks.top_k_mask(scores, k))
        assert mask.sum() == k
        assert set(np.flatnonzero(mask)) >= set(np.flatnonzero(scores > scores[order[k - 1]]))


@pytest.mark.parametrize(
    "size, sparsity", [(10, 0.25), (10, 0.35), (6, 0.25), (100, 0.999), (3, 0.0)]
)
def test_keep_count_rounds_half_to_even_like_tfmot(size, sparsity):
    expected = max(int(np.round(np.float32(size) * (np.float32(1) - np.float32(sparsity)))), 1)
    assert masks.keep_count(size, sparsity) == expected
    assert int(numpy(masks.keep_count(size, ops.convert_to_tensor(sparsity)))) == expected


def test_magnitude_mask_on_matrix():
    weight = np.array([[0.1, -2.0], [0.3, 1.0]], "float32")
    np.testing.assert_array_equal(numpy(masks.magnitude_mask(weight, 0.5)), [[0, 1], [0, 1]])


def test_tflite_view_of_conv_kernel_and_back():
    kernel = np.arange(3 * 3 * 4 * 5, dtype="float32").reshape(3, 3, 4, 5)
    view, permutation, shape = masks.to_tflite_view(kernel, -1, -2)
    np.testing.assert_array_equal(numpy(view), kernel.transpose(3, 0, 1, 2).reshape(-1, 4))
    np.testing.assert_array_equal(numpy(masks.from_tflite_view(view, permutation, shape)), kernel)
    channels, permutation, shape = masks.to_tflite_view(kernel, -1, None)
    np.testing.assert_array_equal(numpy(channels), kernel.transpose(3, 0, 1, 2).reshape(5, -1))


def test_n_of_m_keeps_n_largest_per_group():
    rng = np.random.default_rng(1)
    scores = rng.random((6, 12)).astype("float32")
    mask = numpy(masks.n_of_m_mask(scores, 2, 4))
    groups_mask = mask.reshape(6, 3, 4)
    groups = scores.reshape(6, 3, 4)
    assert (groups_mask.sum(-1) == 2).all()
    kept_min = np.where(groups_mask == 1, groups, np.inf).min(-1)
    dropped_max = np.where(groups_mask == 0, groups, -np.inf).max(-1)
    assert (kept_min > dropped_max).all()


def test_n_of_m_short_trailing_group():
    mask = numpy(masks.n_of_m_mask(np.array([[4.0, 1.0, 3.0, 2.0, 0.5]], "float32"), 2, 4))
    np.testing.assert_array_equal(mask, [[1, 0, 1, 0, 1]])


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_block_mask_prunes_whole_blocks(pooling):
    rng = np.random.default_rng(2)
    scores = rng.random((8, 16)).astype("float32")
    mask = numpy(masks.block_mask(scores, 0.75, (2, 4), pooling))
    blocks = mask.reshape(4, 2, 4, 4).transpose(0, 2, 1, 3).reshape(16, 8)
    assert set(blocks.mean(1)) <= {0.0, 1.0}
    assert blocks.mean(1).sum() == 4
    reduce = np.mean if pooling == "avg" else np.max
    pooled = reduce(scores.reshape(4, 2, 4, 4), axis=(1, 3)).reshape(-1)
    expected = np.zeros(16)
    expected[np.argsort(-pooled, kind="stable")[:4]] = 1
    np.testing.assert_array_equal(blocks.mean(1), expected)


def test_block_mask_partial_edge_blocks():
    scores = np.ones((3, 6), "float32")
    mask = numpy(masks.block_mask(scores, 0.5, (2, 4)))
    assert mask.shape == (3, 6)
    # 4 blocks (2x2 grid), 2 kept; kept blocks are whole.
    assert mask.sum() in (8 + 4, 8 + 2, 4 + 2, 8 + 8, 4 + 4, 2 + 2)


def test_block_larger_than_weight_is_refused():
    with pytest.raises(ValueError, match="larger than"):
        masks.block_mask(np.ones((2, 2), "float32"), 0.5, (1, 4))


def test_row_mask_by_norm():
    scores = np.array([[1.0, 1.0], [0.1, 0.0], [3.0, 0.0]], "float32")
    np.testing.assert_array_equal(numpy(masks.row_mask(scores, 1 / 3)), [1, 0, 1])
    np.testing.assert_array_equal(numpy(masks.row_mask(scores, 0.5, norm="l1")), [1, 0, 1])


# Sizes that take each selection path: a sort, three 11-bit radix passes (from a small and a
# larger tensor), two 16-bit ones.
SELECTION_SIZES = [1_000, 5_000, 70_000, 600_000]


@pytest.mark.parametrize("size", SELECTION_SIZES)
@pytest.mark.parametrize("with_ties", [False, True])
def test_radix_path_for_large_tensors_is_exact(with_ties, size):
    rng = np.random.default_rng(7)
    scores = rng.normal(size=size).astype("float32")
    if with_ties:
        scores[::3] = 0.0
        scores[1::7] = -1.5
    for k in [1, size // 14, size // 3, size * 2 // 3, size]:
        expected = np.zeros(scores.size)
        expected[np.argsort(-scores, kind="stable")[:k]] = 1
        np.testing.assert_array_equal(numpy(masks.top_k_mask(scores, k)), expected)


def _key_order_reference(scores, k):
    """Keep the k largest by the float's total order (-0.0 < +0.0), earlier positions first."""
    bits = scores.astype("float32").ravel().view("int32").astype("int64")
    keys = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    expected = np.zeros(scores.size)
    expected[np.argsort(-keys, kind="stable")[:k]] = 1
    return expected.reshape(scores.shape)


def _bucket_edge_values(rng, size, signed, digit_bits=16):
    """Floats whose bit patterns sit on and around radix bucket edges of `digit_bits`-bit low
    digits, with ties."""
    unit = 1 << digit_bits
    edges = rng.integers(0x3F000000 // unit, 0x41000000 // unit, size=size).astype("int64") * unit
    bits = edges + rng.choice([-1, 0, 1, 2, unit - 1], size=size)
    values = bits.astype("int32").view("float32").copy()
    if signed:
        values[rng.random(size) < 0.5] *= -1
        values[::11] = -0.0
    values[::5] = 0.0
    values[7::13] = np.inf
    return values


@pytest.mark.parametrize(("size", "digit_bits"), [(70_000, 10), (70_000, 11), (600_000, 16)])
@pytest.mark.parametrize("signed", [False, True])
def test_radix_selection_is_exact_at_bucket_edges(signed, size, digit_bits):
    rng = np.random.default_rng(11)
    scores = _bucket_edge_values(rng, size, signed, digit_bits)
    for k in [1, size // 5 - 1, size // 5, size // 2, size - 1]:
        mask = numpy(masks.top_k_mask(scores, k))
        np.testing.assert_array_equal(mask, _key_order_reference(scores, k))


@pytest.mark.parametrize("size", [100, 70_000])
def test_magnitudes_rank_the_same_with_the_nonnegative_promise(size):
    # The promise skips the key transform of negative floats (sort path and radix path alike).
    rng = np.random.default_rng(13)
    scores = np.abs(_bucket_edge_values(rng, size, signed=True))
    for k in [1, size // 5, size // 2, size - 1, size]:
        mask = numpy(masks.top_k_mask(scores, k, nonnegative=True))
        np.testing.assert_array_equal(mask, _key_order_reference(scores, k))


def test_magnitude_mask_on_large_kernel_matches_top_k_of_absolute_values():
    rng = np.random.default_rng(12)
    weight = _bucket_edge_values(rng, 300 * 256, signed=True).reshape(300, 256)
    for sparsity in [0.0, 0.5, 0.8, 0.95]:
        expected = _key_order_reference(np.abs(weight), masks.keep_count(weight.size, sparsity))
        np.testing.assert_array_equal(numpy(masks.magnitude_mask(weight, sparsity)), expected)


@pytest.mark.parametrize("rounded", [False, True])
def test_top_k_masks_together_equal_the_top_k_of_the_concatenation(rounded):
    # From 2,048 elements the tensors are ranked by summed radix histograms, never
    # concatenated; the result must be exactly the concatenation's, ties included. The sizes
    # take the 11-bit and (together) the 16-bit digits.
    rng = np.random.default_rng(0)
    scores = [rng.standard_normal(size).astype("float32") for size in (70000, 3, 40000, 500000)]
    if rounded:
        scores = [np.round(tensor, 1) for tensor in scores]  # many ties across tensors
    flat = np.concatenate(scores)
    for k in (1, 17, 50000, flat.size - 1, flat.size):
        together = masks.top_k_masks_together(scores, k)
        got = np.concatenate([ops.convert_to_numpy(mask) for mask in together])
        assert got.sum() == k
        np.testing.assert_array_equal(got, ops.convert_to_numpy(masks.top_k_mask(flat, k)))


@pytest.mark.parametrize("size, k", [(1, 1), (7, 3), (300, 1), (5000, 5), (5000, 4999)])
def test_few_largest_is_top_k_mask_ties_included(size, k):
    # Rounded values tie often: the few kept must be the earliest of the tied, as top_k_mask's.
    rng = np.random.default_rng(size + k)
    scores = np.round(rng.normal(size=(size,)), 1).astype("float32").reshape(-1, 1)
    kept = ops.convert_to_numpy(masks.few_largest(scores, k))
    assert kept.shape == scores.shape and kept.dtype == bool and kept.sum() == k
    np.testing.assert_array_equal(kept, ops.convert_to_numpy(masks.top_k_mask(scores, k)) > 0)
    ties = np.zeros((size, 2), "float32")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(masks.few_largest(ties, k)).reshape(-1),
        np.arange(2 * size) < k,
    )
