"""The post-training methods `kp.posttraining.prune_posttraining` runs on each weight:
SparseGPT, Wanda and magnitude, as small configurable objects (`method="sparsegpt"` is
`SparseGPT()`).

A method receives one weight (as the kernel and its `MatrixView`), the statistics of its
layer's calibration inputs, the sparsity and the granularity, and returns the keep-mask in the
kernel's shape, plus new kernel values if it updates the surviving weights (SparseGPT does).

Mask patterns: unstructured masks follow each paper (SparseGPT chooses per block of columns,
Wanda per output row, magnitude per tensor as `kp.prune_once`); N:M and block masks are the
library's patterns (`kp.granularity.NofM`, `kp.granularity.Block`, defined on the TFLite
view), so a mask from here is what `kp.prune(..., granularity=...)` would install. SparseGPT
picks N:M groups as it goes, as in the paper; for blocks it chooses the mask once, from its
saliency `w^2 / [H_F^-1]_jj`, pooled per block, and then reconstructs.
"""

import keras
import numpy as np

from keras_prune.core import granularity as granularity_lib
from keras_prune.core import validation
from keras_prune.core.config_object import ConfigObject
from keras_prune.core.registry import Registry
from keras_prune.posttraining import sparsegpt as sparsegpt_lib
from keras_prune.posttraining import wanda as wanda_lib


def _numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def library_mask(granularity, scores, sparsity, weight):
    """The keep-mask the granularity gives `scores` (kernel-shaped) at `sparsity`."""
    mask, _ = granularity.compute_mask(scores.astype(np.float32), sparsity, weight)
    return _numpy(mask).astype(np.float32)


class PosttrainingMethod(ConfigObject):
    """Base class of the methods `kp.posttraining.prune_posttraining` runs on each weight.

    Attributes:
        needs_data: whether the method reads calibration inputs.
        full_statistics: whether it needs all of `X^T X` (else only its diagonal).
    """

    needs_data = True
    full_statistics = False
    name = ""

    def prune(self, view, kernel, statistics, sparsity, granularity):
        """`(new kernel or None, keep-mask, OBS loss or None)`, all in the kernel's shape.

        Args:
            view: the weight's `MatrixView`.
            kernel: its current values (NumPy).
            statistics: the `InputStatistics` of its layer's calibration inputs (None when
                `needs_data` is False).
            sparsity: the target sparsity.
            granularity: a `kp.granularity.Unstructured`, `kp.granularity.NofM` or
                `kp.granularity.Block`.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement `prune`.")


# Registered under its own name: "keras_prune>Magnitude" is the criterion `kp.criteria.Magnitude`.
@keras.saving.register_keras_serializable(package="keras_prune", name="PosttrainingMagnitude")
class Magnitude(PosttrainingMethod):
    """Keep the largest `|w|` of each weight tensor (no calibration data needed): the baseline.

    Example:

    ```python
    kp.posttraining.prune_posttraining(model, method=kp.posttraining.Magnitude(), sparsity=0.5)
    ```
    """

    needs_data = False
    name = "magnitude"

    def prune(self, view, kernel, statistics, sparsity, granularity):
        return None, library_mask(granularity, np.abs(kernel), sparsity, view.weight), None


@keras.saving.register_keras_serializable(package="keras_prune")
class Wanda(PosttrainingMethod):
    """Keep the largest `|W_ij| * ||X_j||_2` of each output row (Sun et al., 2024); no update.

    Example:

    ```python
    kp.posttraining.prune_posttraining(model, x, method=kp.posttraining.Wanda(), sparsity=0.5)
    ```
    """

    name = "wanda"

    def prune(self, view, kernel, statistics, sparsity, granularity):
        scores = wanda_lib.wanda_scores(view.matrix(kernel), statistics.input_norms())
        if isinstance(granularity, granularity_lib.Unstructured):
            return None, view.kernel(wanda_lib.per_output_mask(scores, sparsity)), None
        return None, library_mask(granularity, view.kernel(scores), sparsity, view.weight), None


@keras.saving.register_keras_serializable(package="keras_prune")
class SparseGPT(PosttrainingMethod):
    """Prune and reconstruct: the surviving weights are updated so the layer's output on the
    calibration inputs stays as close as possible (Frantar & Alistarh, 2023).

    Args:
        block_size: columns per lazy-batch block, and per adaptive mask choice (paper: 128).
        damping: fraction of the mean Hessian diagonal added to the diagonal (paper: 0.01).

    Example:

    ```python
    kp.posttraining.prune_posttraining(model, x, method=kp.posttraining.SparseGPT(damping=0.1))
    ```
    """

    full_statistics = True
    name = "sparsegpt"

    def __init__(self, block_size=128, damping=0.01):
        self.block_size = validation.check_int("block_size", block_size, minimum=1)
        self.damping = validation.check_real(
            "damping", damping, low=0.0, low_open=True, hint="The paper uses 0.01."
        )

    def prune(self, view, kernel, statistics, sparsity, granularity):
        matrix = view.matrix(kernel)
        hessian = statistics.hessian()
        options = {"block_size": self.block_size, "damping": self.damping}
        if isinstance(granularity, granularity_lib.NofM):
            options.update(n=granularity.n, m=granularity.m)
        elif isinstance(granularity, granularity_lib.Block):
            scores = sparsegpt_lib.saliency(matrix, hessian, self.damping)
            fixed = library_mask(granularity, view.kernel(scores), sparsity, view.weight)
            options["mask"] = view.matrix(fixed)
        else:
            options["sparsity"] = sparsity
        updated, mask, loss = sparsegpt_lib.sparsegpt(matrix, hessian, **options)
        return view.kernel(updated), view.kernel(mask), loss

    def get_config(self):
        return {"block_size": self.block_size, "damping": self.damping}


REGISTRY = Registry(
    "method",
    PosttrainingMethod,
    {"sparsegpt": SparseGPT, "wanda": Wanda, "magnitude": Magnitude},
    examples="kp.posttraining.SparseGPT(block_size=128, damping=0.01)",
)


def get(identifier):
    """A method from an instance, a name ("sparsegpt", "wanda", "magnitude") or a config.

    Example:

    ```python
    kp.posttraining.methods.get("wanda")   # Wanda()
    ```
    """
    return REGISTRY.get(identifier)
