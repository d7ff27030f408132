"""Sparsity penalties on learnable masks' scores (gates)."""

from keras_prune.layers.wrapper import find_wrappers


def penalize_masks(model, regularizer):
    """Add `regularizer` (e.g. `kp.regularizers.GateL0(1e-4)`) on every learnable mask's scores.

    The penalty joins `model.losses`, so `fit` minimises it with the task loss; its strength sets
    how hard the scores (gates) are pushed to close. It is attached to the variables, not saved:
    call this again after loading a model. Returns the number of score tensors penalized.

    Example:

    ```python
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.9), mask="sigmoid")
    kp.methods.penalize_masks(pruned, kp.regularizers.GateL0(1e-4))
    ```
    """
    if regularizer is not None and not callable(regularizer):
        raise TypeError(
            "Expected `regularizer` to be a callable such as kp.regularizers.GateL0(1e-4) or "
            f"kp.regularizers.L1(1e-4), or None to remove. Received: regularizer={regularizer!r}"
        )
    scores = [score for wrapper in find_wrappers(model) for score in wrapper.scores]
    if not scores:
        raise ValueError(
            f"Model {model.name!r} has no learnable mask scores to penalize. Prune with "
            "mask='learnable' or mask='sigmoid' first."
        )
    for variable in scores:
        variable.regularizer = regularizer
    return len(scores)
