"""Property tests (hypothesis) on the mask functions: counts, patterns, determinism."""

import keras
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import keras_prune as kp
from keras_prune import methods
from keras_prune.core import allocation, criteria
from keras_prune.core import masks as masks_lib

FAST = settings(max_examples=25, deadline=None)

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False, width=32)


def matrices(min_side=1, max_side=12):
    return hnp.arrays(
        np.float32,
        st.tuples(st.integers(min_side, max_side), st.integers(min_side, max_side)),
        elements=finite,
    )


def to_numpy(value):
    return keras.ops.convert_to_numpy(value)


@FAST
@given(scores=matrices(), sparsity=st.floats(0.0, 0.99))
def test_sparsity_mask_keeps_exact_count_of_highest_scores(scores, sparsity):
    mask = to_numpy(masks_lib.sparsity_mask(scores, sparsity))
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert mask.sum() == masks_lib.keep_count(scores.size, sparsity)
    if 0 < mask.sum() < mask.size:
        assert scores[mask == 1].min() >= scores[mask == 0].max()


@FAST
@given(scores=matrices(), k=st.integers(1, 144))
def test_top_k_is_deterministic_and_breaks_ties_by_position(scores, k):
    k = min(k, scores.size)
    first = to_numpy(masks_lib.top_k_mask(scores, k))
    np.testing.assert_array_equal(first, to_numpy(masks_lib.top_k_mask(scores.copy(), k)))
    flat, kept = scores.ravel(), first.ravel()
    # By score desc, then position asc; scores compare in the float total order the masks use
    # (-0.0 ranks below 0.0, as in tests/test_masks.py).
    bits = flat.view("int32").astype("int64")
    keys = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    order = np.lexsort((np.arange(flat.size), -keys))
    np.testing.assert_array_equal(np.flatnonzero(kept), np.sort(order[:k]))


@FAST
@given(
    scores=matrices(min_side=1, max_side=10),
    n_and_m=st.sampled_from([(1, 2), (2, 4), (1, 4), (3, 4), (2, 8)]),
)
def test_n_of_m_keeps_n_largest_of_each_group(scores, n_and_m):
    n, m = n_and_m
    mask = to_numpy(masks_lib.n_of_m_mask(scores, n, m))
    rows, columns = scores.shape
    for start in range(0, columns, m):
        group_mask = mask[:, start : start + m]
        group = scores[:, start : start + m]
        expected = min(n, group.shape[1])
        np.testing.assert_array_equal(group_mask.sum(axis=1), np.full(rows, expected))
        for row in range(rows):
            if expected < group.shape[1]:
                assert (
                    group[row][group_mask[row] == 1].min() >= group[row][group_mask[row] == 0].max()
                )


@FAST
@given(
    scores=matrices(min_side=2, max_side=12),
    block=st.tuples(st.integers(1, 3), st.integers(1, 4)),
    sparsity=st.floats(0.0, 0.95),
    pooling=st.sampled_from(["avg", "max"]),
)
def test_block_mask_is_constant_on_blocks_with_exact_block_count(scores, block, sparsity, pooling):
    rows, columns = scores.shape
    block = (min(block[0], rows), min(block[1], columns))
    mask = to_numpy(masks_lib.block_mask(np.abs(scores), sparsity, block, pooling))
    grid_rows, grid_columns = -(-rows // block[0]), -(-columns // block[1])
    kept_blocks = 0
    for i in range(grid_rows):
        for j in range(grid_columns):
            tile = mask[i * block[0] : (i + 1) * block[0], j * block[1] : (j + 1) * block[1]]
            assert tile.min() == tile.max()
            kept_blocks += int(tile.max())
    assert kept_blocks == masks_lib.keep_count(grid_rows * grid_columns, sparsity)


@FAST
@given(scores=matrices(), sparsity=st.floats(0.0, 0.95))
def test_row_mask_keeps_whole_rows(scores, sparsity):
    kept = to_numpy(masks_lib.row_mask(scores, sparsity))
    assert kept.sum() == masks_lib.keep_count(scores.shape[0], sparsity)


@FAST
@given(
    tensors=st.lists(matrices(max_side=8), min_size=1, max_size=4),
    sparsity=st.floats(0.0, 0.9),
)
def test_global_masks_total_is_exact(tensors, sparsity):
    total = sum(t.size for t in tensors)
    if len(tensors) > masks_lib.keep_count(total, sparsity):
        return
    result = allocation.global_masks([np.abs(t) for t in tensors], sparsity)
    assert sum(to_numpy(m).sum() for m in result) == masks_lib.keep_count(total, sparsity)
    assert all(to_numpy(m).sum() >= 1 for m in result)


@FAST
@given(seed=st.integers(0, 2**20), shape=st.tuples(st.integers(1, 6), st.integers(1, 6)))
def test_random_criterion_is_deterministic_for_a_seed(seed, shape):
    weight = keras.Variable(np.ones(shape, "float32"), name="w")
    first = to_numpy(criteria.Random(seed)(weight))
    np.testing.assert_array_equal(first, to_numpy(criteria.Random(seed)(weight)))
    mask = to_numpy(masks_lib.sparsity_mask(first, 0.5))
    assert mask.sum() == masks_lib.keep_count(weight.shape[0] * weight.shape[1], 0.5)


@FAST
@given(
    data=hnp.arrays(np.float32, st.integers(4, 60), elements=st.floats(0, 1, width=32)),
    density=st.floats(0.1, 0.9),
    fraction=st.floats(0.05, 0.5),
)
def test_drop_and_grow_preserves_the_count(data, density, fraction):
    mask = to_numpy(masks_lib.sparsity_mask(data, 1 - density))
    grow = data[::-1].copy()
    count = int(round(fraction * mask.sum()))
    new = to_numpy(methods.drop_and_grow(mask, data, grow, count))
    assert new.sum() == mask.sum()
    assert set(np.unique(new)) <= {0.0, 1.0}


def test_keep_count_matches_tfmot_rounding():
    assert kp.masks.keep_count(10, 0.25) == 8  # round(7.5) half to even
    assert kp.masks.keep_count(10, 0.99) == 1
