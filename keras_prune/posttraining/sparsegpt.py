"""SparseGPT's solver for one layer (Frantar & Alistarh, 2023, Algorithm 1): choose a mask and
update the surviving weights so that the layer's output on the calibration inputs changes as
little as possible.

For one row `w` of `W` [outputs, inputs] and the Hessian `H = 2 X^T X` of the squared output
error, pruning weight `j` and compensating with the weights not yet processed is the Optimal
Brain Surgeon step

    delta = -(w_j / [H_F^-1]_jj) * [H_F^-1]_{j,:}        (F: columns j, j+1, ...)

Columns are processed left to right; the rows of `H_F^-1` for every `F` are the rows of the
upper Cholesky factor of `H^-1` (scaled), so one factorization serves all of them. Updates to
columns beyond the current block of `block_size` columns are applied once per block ("lazy
batch" updates). Masks are chosen adaptively: at the start of each block (unstructured: the
block's `sparsity` lowest `w^2 / [H_F^-1]_jj^2`), or at the start of each group of `m` columns
(N:M: its `m - n` lowest); or given. `damping` adds `damping * mean(diag(H))` to the diagonal
(the paper's 1%); inputs never active in the calibration data (`H_jj = 0`) get their weights
zeroed first, as in the reference implementation.

NumPy on the host, in float64: the solver runs once per layer, and the Cholesky factor of the
inverse needs the precision. Its result is checked against an explicit OBS computation in the
tests.
"""

import numpy as np


def prepare_hessian(hessian, damping):
    """`(H damped, dead)`: the Hessian with dead inputs set to 1 on the diagonal and
    `damping * mean(diag(H))` added to it, and the boolean vector of dead inputs."""
    hessian = np.array(hessian, dtype=np.float64, copy=True)
    diagonal = np.diag(hessian).copy()
    dead = diagonal == 0
    hessian[dead, dead] = 1.0
    hessian[np.diag_indices_from(hessian)] += damping * np.mean(np.diag(hessian))
    return hessian, dead


def inverse_cholesky(hessian):
    """The upper Cholesky factor `U` of `H^-1` (`H^-1 = U^T U`).

    With `R` the reversal of the axes, `chol(R H R) = L` gives `H = V V^T` with `V = R L R`
    upper triangular, so `H^-1 = (V^-1)^T V^-1` and `U = V^-1`: one factorization and one
    triangular inverse (LAPACK's `trtri` through SciPy when it is installed), instead of the
    reference code's three factorizations.
    """
    upper = np.linalg.cholesky(hessian[::-1, ::-1])[::-1, ::-1]
    try:
        from scipy.linalg import lapack
    except ImportError:  # NumPy alone: a general inverse of the triangular factor
        return np.triu(np.linalg.inv(upper))
    inverse, info = lapack.dtrtri(np.ascontiguousarray(upper), lower=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"Triangular inverse failed (LAPACK info {info}).")
    return inverse


def saliency(weight, hessian, damping=0.01):
    """SparseGPT's pruning saliency of every weight at the start of the solver,
    `w_ij^2 / [H_F^-1]_jj` (`F`: columns j, j+1, ...), used to choose a fixed mask (blocks).

    Example:

    ```python
    saliency(np.array([[1.0, 2.0]]), np.eye(2))   # [[0.99, 3.96]] (damping 0.01)
    ```
    """
    weight = np.array(weight, dtype=np.float64, copy=True)
    hessian, dead = prepare_hessian(hessian, damping)
    weight[:, dead] = 0.0
    diagonal = np.diag(inverse_cholesky(hessian))
    return weight**2 / diagonal[None, :] ** 2


def _lowest(values, count):
    """Boolean mask of the `count` lowest entries of `values` (ties: earlier positions)."""
    pruned = np.zeros(values.size, bool)
    if count > 0:
        pruned[np.argsort(values.reshape(-1), kind="stable")[:count]] = True
    return pruned.reshape(values.shape)


def sparsegpt(
    weight,
    hessian,
    sparsity=0.5,
    n=None,
    m=None,
    mask=None,
    block_size=128,
    damping=0.01,
):
    """Prune `weight` [outputs, inputs] with SparseGPT; returns `(weight, mask, loss)`.

    Args:
        weight: the matrix `W` [outputs, inputs] (see `matrix_view`).
        hessian: `2 X^T X / N` [inputs, inputs] from the calibration inputs.
        sparsity: fraction of each block's weights to prune (unstructured masks).
        n, m: keep `n` of every `m` consecutive inputs (N:M), instead of `sparsity`.
        mask: a fixed 0/1 keep-mask [outputs, inputs], instead of choosing one.
        block_size: columns per lazy-batch block (the paper's 128); with N:M it is rounded
            down to a multiple of `m`.
        damping: fraction of the mean Hessian diagonal added to the diagonal (the paper's 0.01).

    Returns:
        The updated weight (float64, zero where pruned), the keep-mask (float32 0/1) and the
        OBS estimate of the squared output error, `sum (w - q)^2 / [H_F^-1]_jj^2 / 2`.

    Example:

    ```python
    x = np.random.randn(256, 16)
    w = np.random.randn(8, 16)
    pruned, mask, loss = sparsegpt(w, 2 * x.T @ x / 256, sparsity=0.5)
    ```
    """
    weight = np.array(weight, dtype=np.float64, copy=True)
    rows, columns = weight.shape
    hessian, dead = prepare_hessian(hessian, damping)
    weight[:, dead] = 0.0
    inverse = inverse_cholesky(hessian)
    structured = n is not None
    if structured:
        block_size = max(m, block_size - block_size % m)
    fixed = None if mask is None else np.asarray(mask) > 0
    keep = np.ones((rows, columns), bool)
    loss = np.zeros(rows)
    for start in range(0, columns, block_size):
        end = min(start + block_size, columns)
        block = weight[:, start:end].copy()
        errors = np.zeros_like(block)
        inverse_block = inverse[start:end, start:end]
        diagonal = np.diag(inverse_block)
        if fixed is not None:
            pruned = ~fixed[:, start:end]
        elif structured:
            pruned = np.zeros_like(block, bool)
        else:
            saliency = block**2 / diagonal[None, :] ** 2
            pruned = _lowest(saliency, int(round(saliency.size * sparsity)))
        for i in range(end - start):
            if structured and fixed is None and i % m == 0:
                group = slice(i, i + m)
                saliency = block[:, group] ** 2 / diagonal[None, group] ** 2
                order = np.argsort(saliency, axis=1, kind="stable")[:, : m - n]
                np.put_along_axis(pruned[:, group], order, True, axis=1)
            column = block[:, i]
            kept = np.where(pruned[:, i], 0.0, column)
            loss += (column - kept) ** 2 / diagonal[i] ** 2 / 2
            error = (column - kept) / diagonal[i]
            block[:, i:] -= np.outer(error, inverse_block[i, i:])
            block[:, i] = kept
            errors[:, i] = error
        weight[:, start:end] = block
        keep[:, start:end] = ~pruned
        weight[:, end:] -= errors @ inverse[start:end, end:]
    return weight, keep.astype(np.float32), float(loss.sum())
