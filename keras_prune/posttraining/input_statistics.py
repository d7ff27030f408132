"""What SparseGPT and Wanda need to know about a layer's inputs, gathered batch by batch.

SparseGPT reconstructs a layer's output through the Hessian of the layer-wise squared error,
`H = 2 X^T X` (X: all calibration input vectors as rows); Wanda weighs each weight by the L2
norm of its input feature over the calibration tokens, `||X_j||_2 = sqrt((X^T X)_jj)`. Both come
from the sums `X^T X` (or only its diagonal), accumulated in float64 so that thousands of
batches add up without loss.
"""

import numpy as np


class InputStatistics:
    """Running sums over the input vectors (rows of x) of one weight.

    Args:
        features: length of an input vector (the columns of the weight's matrix view).
        full: True to keep all of `X^T X` (SparseGPT), False for its diagonal only (Wanda).

    Example:

    ```python
    statistics = InputStatistics(4)
    statistics.update(np.ones((10, 4), "float32"))
    statistics.hessian()[0, 0]   # 2.0: 2 X^T X / rows
    ```
    """

    def __init__(self, features, full=True):
        self.features = int(features)
        self.full = bool(full)
        self.rows = 0
        if self.full:
            self.gram = np.zeros((self.features, self.features), np.float64)
        else:
            self.squares = np.zeros(self.features, np.float64)

    def update(self, rows):
        """Add input vectors `rows` [N, features]."""
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.features:
            raise ValueError(
                f"Expected input rows of shape [N, {self.features}]. Received {rows.shape}."
            )
        if self.full:
            # A float32 product (twice as fast as float64) per batch, summed in float64.
            single = rows.astype(np.float32, copy=False)
            self.gram += single.T @ single
        else:
            self.squares += np.square(rows, dtype=np.float64).sum(axis=0)
        self.rows += rows.shape[0]

    def hessian(self):
        """`2 X^T X / N`: the Hessian of the mean squared reconstruction error (SparseGPT)."""
        if not self.full:
            raise ValueError("These statistics hold only the diagonal of X^T X (full=False).")
        return 2.0 * self.gram / max(self.rows, 1)

    def input_norms(self):
        """`||X_j||_2` for every input feature j (Wanda)."""
        diagonal = np.diag(self.gram) if self.full else self.squares
        return np.sqrt(np.maximum(diagonal, 0.0))
