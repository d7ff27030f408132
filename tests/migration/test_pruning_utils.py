"""Port of the user-visible part of tfmot's sparsity/keras/pruning_utils_test.py.

tfmot's `generate_m_by_n_mask(weights, (zeros, group))` builds an N:M mask on a 2-D weight whose
groups run along the last axis; keras_prune's public counterpart is
`kp.masks.n_of_m_mask(scores, n, m)` on the magnitudes (`n = group - zeros` kept, as
docs/migrating_from_tfmot.md maps `sparsity_m_by_n`), and invalid pairs are refused by `kp.granularity.NofM`.
The other tests there cover private helpers (README.md).
"""

import numpy as np
import pytest

import keras_prune as kp

from .helpers import nofm, value

GENERATE_M_BY_N_MASK_CASES = {
    "wt_2x1_mbyn_2x4": dict(weights=[[1.24], [1.11]], m_by_n=(2, 4), expected_mask=[[1], [1]]),
    "wt_2x3_mbyn_2x4": dict(
        weights=[[-0.49, -0.66, 0.42], [0.31, 0.63, -1.63]],
        m_by_n=(2, 4),
        expected_mask=[[1, 1, 0], [0, 1, 1]],
    ),
    "wt_2x3_mbyn_1x2": dict(
        weights=[[-0.49, -0.66, 0.42], [0.31, 0.63, -1.63]],
        m_by_n=(1, 2),
        expected_mask=[[0, 1, 1], [0, 1, 1]],
    ),
    "wt_2x4_mbyn_2x4": dict(
        weights=[[0.25, -1.33, 0.43, -0.11], [0.47, 0.92, -0.13, -2.23]],
        m_by_n=(2, 4),
        expected_mask=[[0, 1, 1, 0], [0, 1, 0, 1]],
    ),
    "wt_2x5_mbyn_3x5": dict(
        weights=[[1.71, -0.27, -0.3, -0.61, -0.19], [-0.4, 1.12, 0.46, -1.12, 0.17]],
        m_by_n=(3, 5),
        expected_mask=[[1, 0, 0, 1, 0], [0, 1, 0, 1, 0]],
    ),
}


@pytest.mark.parametrize("case", list(GENERATE_M_BY_N_MASK_CASES))
def test_generate_m_by_n_mask(case):
    case = GENERATE_M_BY_N_MASK_CASES[case]
    pattern = nofm(case["m_by_n"])
    scores = np.abs(np.asarray(case["weights"], "float32"))
    mask = kp.masks.n_of_m_mask(scores, pattern.n, pattern.m)
    np.testing.assert_array_equal(value(mask), np.asarray(case["expected_mask"]))


@pytest.mark.parametrize("m_by_n", [(4, 4), (5, 4)])
def test_generate_m_by_n_mask_raise(m_by_n):
    # tfmot raised tf.errors.InvalidArgumentError from a graph assert; the Keras 3 counterpart
    # validates the pattern where it is made.
    with pytest.raises(ValueError):
        nofm(m_by_n)
