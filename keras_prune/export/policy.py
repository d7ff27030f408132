"""Which layers to prune so that XNNPACK's sparse inference can use the zeros.

XNNPACK's sparse (NCHW) kernels exploit zeros only in 1x1 convolutions, and its sparse region
must open with a dense 3x3 stride-2 convolution (NOTES.md). Pruning anything else makes the
file smaller (sparse encoding + DENSIFY) but no faster, and pruning the first convolution
gains nothing. `xnnpack_filter` selects exactly the layers worth pruning for that path; pass it
as `filters=` to `kp.prune`, then check the exported file with `check_xnnpack_sparse`.
"""

import keras


def _convolutions(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _convolutions(layer)
        elif type(layer) is keras.layers.Conv2D:
            yield layer


def xnnpack_filter(model):
    """A `filters=` predicate for `kp.prune`: the 1x1, stride-1, ungrouped `Conv2D` layers of
    `model` after its first convolution.

    Args:
        model: The Keras model about to be pruned.

    Returns:
        A callable `layer -> bool`.

    Example:

    ```python
    pruned = kp.prune(model, schedule=kp.ConstantSparsity(0.8),
                      filters=kp.export.xnnpack_filter(model))
    ```
    """
    convolutions = list(_convolutions(model))
    first = convolutions[0] if convolutions else None
    selected = {
        id(layer)
        for layer in convolutions
        if layer is not first
        and tuple(layer.kernel_size) == (1, 1)
        and tuple(layer.strides) == (1, 1)
        and layer.groups == 1
    }
    names = {layer.name for layer in convolutions if id(layer) in selected}

    def accelerated_by_xnnpack(layer):
        # Matched by name, so the predicate also holds for copies (e.g. `clone_model`).
        return layer.name in names

    return accelerated_by_xnnpack
