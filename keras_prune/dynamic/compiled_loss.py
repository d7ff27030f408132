"""The loss a dynamic model was compiled with, as `loss(y_true, y_pred, sample_weight)`.

`SlimmableModel` and `EarlyExitModel` apply the compiled loss to outputs Keras's own loss
handling does not see (narrower widths, exit heads), so they need it as one callable whatever
the user passed to `compile`: a `keras.losses.Loss`, a name or a function.
"""

import keras
from keras import ops


def loss_function(loss, model_name):
    """`loss` (as given to `compile`) as a callable `(y_true, y_pred, sample_weight) -> scalar`."""
    if loss is None or isinstance(loss, (list, tuple, dict)):
        raise ValueError(
            f"Expected {model_name} to be compiled with one loss (a name, a keras.losses.Loss "
            "or a function) applied to every output. Received: "
            f"loss={loss!r}"
        )
    loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return loss

    def weighted(y_true, y_pred, sample_weight=None):
        values = loss(y_true, y_pred)
        if sample_weight is None:
            return ops.mean(values)
        weights = ops.cast(ops.reshape(sample_weight, ops.shape(values)), values.dtype)
        return ops.sum(values * weights) / ops.maximum(ops.sum(weights), 1e-12)

    return weighted
