"""Wanda (Sun et al., 2024): prune by weights and activations, no weight update.

The score of weight `W_ij` ([outputs, inputs]) is `|W_ij| * ||X_j||_2`, the magnitude times the
L2 norm of its input feature over all calibration tokens. Weights compete within their output
row (the paper's per-output comparison group): each row keeps the same number of weights. With
N:M the competition is within each group of M consecutive inputs of a row, as in the paper.
"""

import numpy as np

from keras_prune.core import masks as masks_lib


def wanda_scores(weight, input_norms):
    """`|W_ij| * ||X_j||_2` for `weight` [outputs, inputs] and the input norms [inputs].

    Example:

    ```python
    kp.posttraining.wanda_scores(np.array([[1.0, -2.0]]), np.array([3.0, 0.5]))   # [[3.0, 1.0]]
    ```
    """
    weight = np.asarray(weight, dtype=np.float64)
    input_norms = np.asarray(input_norms, dtype=np.float64)
    if input_norms.shape != (weight.shape[1],):
        raise ValueError(
            f"Expected one input norm per input of the weight ({weight.shape[1]}). Received "
            f"{input_norms.shape}."
        )
    return np.abs(weight) * input_norms[None, :]


def per_output_mask(scores, sparsity):
    """Keep, in every row of `scores`, its `keep_count(inputs, sparsity)` highest entries.

    Example:

    ```python
    per_output_mask(np.array([[3.0, 1.0, 2.0, 0.0]]), 0.5)   # [[1, 0, 1, 0]]
    ```
    """
    scores = np.asarray(scores)
    kept = masks_lib.keep_count(scores.shape[1], sparsity)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :kept]
    mask = np.zeros(scores.shape, np.float32)
    np.put_along_axis(mask, order, 1.0, axis=1)
    return mask
