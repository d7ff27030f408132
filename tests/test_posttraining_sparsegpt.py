"""SparseGPT's solver against an explicit Optimal Brain Surgeon computation in NumPy.

The reference inverts the Hessian of the remaining columns, `H_F^-1` with F = {j, j+1, ...},
for every column j and applies the OBS update of every pruned weight of that column; masks are
chosen with the same rule (`w^2 / [H_F^-1]_jj`, per block of columns, or per N:M group). The
solver gets the same rows from one Cholesky factor and applies them lazily per block: the two
must agree to float64 precision.
"""

import sys

import numpy as np
import pytest

from keras_prune.posttraining import sparsegpt as sparsegpt_lib
from keras_prune.posttraining.sparsegpt import sparsegpt


def _problem(rows=6, columns=16, samples=64, seed=0, dead=()):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, columns))
    x[:, list(dead)] = 0.0
    weight = rng.normal(size=(rows, columns))
    return weight, 2.0 * x.T @ x / samples, x


def exact_obs(
    weight, hessian, sparsity=None, n=None, m=None, mask=None, block_size=8, damping=0.01
):
    weight = np.array(weight, dtype=np.float64)
    hessian = np.array(hessian, dtype=np.float64)
    dead = np.diag(hessian) == 0
    hessian[dead, dead] = 1.0
    hessian += damping * np.mean(np.diag(hessian)) * np.eye(len(hessian))
    weight[:, dead] = 0.0
    rows, columns = weight.shape
    inverses = [np.linalg.inv(hessian[j:, j:]) for j in range(columns)]
    pruned = np.zeros((rows, columns), bool)
    if mask is not None:
        pruned = ~(np.asarray(mask) > 0)
    loss = 0.0
    for start in range(0, columns, block_size):
        end = min(start + block_size, columns)
        if mask is None and n is None:
            saliency = np.stack(
                [weight[:, j] ** 2 / inverses[j][0, 0] for j in range(start, end)], axis=1
            )
            count = int(round(saliency.size * sparsity))
            chosen = np.argsort(saliency.reshape(-1), kind="stable")[:count]
            block = np.zeros(saliency.size, bool)
            block[chosen] = True
            pruned[:, start:end] = block.reshape(saliency.shape)
        for j in range(start, end):
            if n is not None and mask is None and (j - start) % m == 0:
                saliency = np.stack(
                    [weight[:, c] ** 2 / inverses[c][0, 0] for c in range(j, j + m)], axis=1
                )
                for r in range(rows):
                    for c in np.argsort(saliency[r], kind="stable")[: m - n]:
                        pruned[r, j + c] = True
            inverse = inverses[j]
            for r in range(rows):
                if pruned[r, j]:
                    loss += weight[r, j] ** 2 / inverse[0, 0] / 2
                    weight[r, j:] -= weight[r, j] / inverse[0, 0] * inverse[0, :]
                    weight[r, j] = 0.0
    return weight, (~pruned).astype(np.float32), loss


def test_unstructured_equals_exact_obs():
    weight, hessian, _ = _problem()
    expected, expected_mask, expected_loss = exact_obs(weight, hessian, sparsity=0.5)
    result, mask, loss = sparsegpt(weight, hessian, sparsity=0.5, block_size=8)
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_allclose(result, expected, atol=1e-10)
    assert loss == pytest.approx(expected_loss, rel=1e-10)
    assert mask.mean() == 0.5
    assert np.all(result[mask == 0] == 0)


def test_n_of_m_equals_exact_obs():
    weight, hessian, _ = _problem(seed=1)
    expected, expected_mask, _ = exact_obs(weight, hessian, n=2, m=4)
    result, mask, _ = sparsegpt(weight, hessian, n=2, m=4, block_size=8)
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_allclose(result, expected, atol=1e-10)
    assert np.all(mask.reshape(6, 4, 4).sum(-1) == 2)


def test_fixed_mask_equals_exact_obs():
    weight, hessian, _ = _problem(seed=2)
    fixed = (np.random.default_rng(3).random(weight.shape) > 0.6).astype(np.float32)
    expected, _, _ = exact_obs(weight, hessian, mask=fixed)
    result, mask, _ = sparsegpt(weight, hessian, mask=fixed, block_size=8)
    np.testing.assert_array_equal(mask, fixed)
    np.testing.assert_allclose(result, expected, atol=1e-10)


def test_pruning_one_column_is_the_least_squares_optimum():
    # Column 0 is processed first, with all columns left to compensate: the OBS step is then
    # the exact optimum of min ||X w - X w'||^2 subject to w'_0 = 0.
    weight, hessian, x = _problem(rows=3, columns=5)
    keep = np.ones_like(weight, np.float32)
    keep[:, 0] = 0
    result, _, loss = sparsegpt(weight, hessian, mask=keep, damping=1e-12)
    for row in range(3):
        target = x @ weight[row]
        optimum, *_ = np.linalg.lstsq(x[:, 1:], target, rcond=None)
        np.testing.assert_allclose(result[row, 1:], optimum, rtol=1e-6, atol=1e-8)
    delta = weight - result
    true_error = np.einsum("ij,jk,ik->", delta, hessian, delta)
    assert 2 * loss == pytest.approx(true_error, rel=1e-6)


def test_dead_inputs_are_zeroed_and_pruned_first():
    weight, hessian, _ = _problem(dead=(3, 9))
    result, mask, _ = sparsegpt(weight, hessian, sparsity=0.25, block_size=8)
    assert np.all(result[:, [3, 9]] == 0)
    assert np.all(mask[:, [3, 9]] == 0)
    expected, _, _ = exact_obs(weight, hessian, sparsity=0.25)
    np.testing.assert_allclose(result, expected, atol=1e-10)


def test_block_size_rounds_down_to_whole_n_of_m_groups():
    weight, hessian, _ = _problem(seed=4)
    result, mask, _ = sparsegpt(weight, hessian, n=1, m=4, block_size=6)
    expected, expected_mask, _ = exact_obs(weight, hessian, n=1, m=4, block_size=4)
    np.testing.assert_array_equal(mask, expected_mask)
    np.testing.assert_allclose(result, expected, atol=1e-10)


def test_reconstruction_beats_masking_alone():
    # Correlated inputs (as activations are): the kept weights can stand in for pruned ones.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(256, 8)) @ rng.normal(size=(8, 32)) + 0.1 * rng.normal(size=(256, 32))
    weight = rng.normal(size=(8, 32))
    hessian = 2 * x.T @ x / 256
    result, mask, _ = sparsegpt(weight, hessian, sparsity=0.5, block_size=8)

    def error(pruned):
        return np.square(x @ weight.T - x @ pruned.T).sum()

    assert error(result) < 0.5 * error(weight * mask)


def test_saliency_is_the_obs_saliency():
    weight, hessian, _ = _problem(seed=6)
    damped, _ = sparsegpt_lib.prepare_hessian(hessian, 0.01)
    expected = np.stack(
        [weight[:, j] ** 2 / np.linalg.inv(damped[j:, j:])[0, 0] for j in range(16)], axis=1
    )
    np.testing.assert_allclose(sparsegpt_lib.saliency(weight, hessian), expected, rtol=1e-10)


@pytest.mark.parametrize("with_scipy", [True, False])
def test_inverse_cholesky_is_the_upper_factor_of_the_inverse(with_scipy, monkeypatch):
    if not with_scipy:  # NumPy alone: `from scipy.linalg import lapack` raises ImportError
        monkeypatch.setitem(sys.modules, "scipy.linalg", None)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(12, 30))
    hessian = a @ a.T + np.eye(12)
    upper = sparsegpt_lib.inverse_cholesky(hessian)
    np.testing.assert_array_equal(upper, np.triu(upper))
    np.testing.assert_allclose(upper.T @ upper, np.linalg.inv(hessian), atol=1e-12)
