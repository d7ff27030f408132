"""Gradient statistics of the pruned weights, on any backend: what gradient criteria rank by.

`collect_gradients(model, x, y)` computes dL/dw of every pruned weight over a few batches with the
backend's own autodiff (TensorFlow, torch or JAX; the tests compare them) and records their
means in each wrapper's `GradientStatistics`. It is the one gradient collector: gradient
criteria, RigL's growth and Taylor channel scores all read what it records.
"""

import contextlib

import keras
from keras import ops

from keras_prune.layers.wrapper import find_wrappers


def _batches(x, y, batch_size, num_batches):
    size = len(y) if y is not None else len(x)
    starts = list(range(0, size, batch_size))
    if num_batches is not None:
        starts = starts[:num_batches]
    for start in starts:
        end = start + batch_size
        yield x[start:end], (None if y is None else y[start:end])


def _loss_gradients(model, x, y, variables):
    """dL/dw for each of `variables` on one batch, in inference mode, on the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_gradients(model, x, y, variables)
    if backend == "torch":
        return _torch_gradients(model, x, y, variables)
    if backend == "jax":
        return _jax_gradients(model, x, y, variables)
    raise NotImplementedError(
        f"kp.collect_gradients supports the TensorFlow, torch and JAX backends; the current "
        f"backend is {backend!r}. Use a criterion that needs no gradients ('magnitude', 'l2', "
        "'random')."
    )


def _or_zeros(gradients, variables):
    return [
        ops.zeros(variable.shape) if gradient is None else ops.convert_to_tensor(gradient)
        for variable, gradient in zip(variables, gradients, strict=True)
    ]


def _tensorflow_gradients(model, x, y, variables):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        y_pred = model(x, training=False)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred)
    return _or_zeros(tape.gradient(loss, [variable.value for variable in variables]), variables)


def _torch_gradients(model, x, y, variables):
    import torch

    values = [variable.value for variable in variables]
    tracked = [position for position, value in enumerate(values) if value.requires_grad]
    y_pred = model(x, training=False)
    loss = model.compute_loss(x=x, y=y, y_pred=y_pred)
    found = torch.autograd.grad(loss, [values[p] for p in tracked], allow_unused=True)
    gradients = [None] * len(values)
    for position, gradient in zip(tracked, found, strict=True):
        gradients[position] = None if gradient is None else gradient.detach()
    return _or_zeros(gradients, variables)


def _jax_gradients(model, x, y, variables):
    import jax

    trainable = model.trainable_variables
    non_trainable = model.non_trainable_variables
    non_trainable_values = [variable.value for variable in non_trainable]

    def loss_of(trainable_values):
        y_pred, _ = model.stateless_call(trainable_values, non_trainable_values, x, training=False)
        state = list(zip(trainable, trainable_values, strict=True))
        state += list(zip(non_trainable, non_trainable_values, strict=True))
        with keras.StatelessScope(state_mapping=state):
            return model.compute_loss(x=x, y=y, y_pred=y_pred)

    # On JAX binary masks act in the forward pass, which would also zero the gradient of every
    # masked weight. With the masked weights held at zero, running on the stored weights gives
    # dL/dw as on the other backends (RigL grows connections by it).
    wrappers = [wrapper for wrapper in find_wrappers(model) if wrapper.built]
    for wrapper in wrappers:
        wrapper.hold_masked_weights()
    with _stored_weights_in_forward_pass(wrappers):
        found = jax.grad(loss_of)([variable.value for variable in trainable])
    position = {id(variable): index for index, variable in enumerate(trainable)}
    gradients = [
        found[position[id(variable)]] if id(variable) in position else None
        for variable in variables
    ]
    return _or_zeros(gradients, variables)


@contextlib.contextmanager
def _stored_weights_in_forward_pass(wrappers):
    previous = [wrapper.forward_uses_stored_weights for wrapper in wrappers]
    for wrapper in wrappers:
        wrapper.forward_uses_stored_weights = True
    try:
        yield
    finally:
        for wrapper, value in zip(wrappers, previous, strict=True):
            wrapper.forward_uses_stored_weights = value


def collect_gradients(model, x, y=None, batch_size=32, num_batches=None):
    """Record gradient statistics of every pruned weight of `model` on `(x, y)`.

    The means over the given batches replace the previous ones; movement accumulates. The model
    must be compiled (its loss, regularization losses included, is used). The forward pass runs
    in inference mode (BatchNormalization uses its moving statistics, dropout is off), and no
    weight or statistic of the model is changed.

    Args:
        model: a compiled model containing `kp.PruneWrapper`s.
        x: inputs (arrays indexable by batch).
        y: targets, or None for models whose loss needs none.
        batch_size: examples per gradient batch.
        num_batches: at most this many batches (None: all of `x`).

    Returns:
        The number of batches used.

    Example:

    ```python
    pruned.compile("adam", "sparse_categorical_crossentropy")
    kp.collect_gradients(pruned, x[:256], y[:256])
    kp.update_masks(pruned, step=0)
    ```
    """
    if not getattr(model, "compiled", False):
        raise ValueError(
            f"kp.collect_gradients needs the model's loss: compile model {model.name!r} first, "
            "e.g. `model.compile('adam', 'sparse_categorical_crossentropy')`."
        )
    wrappers = [wrapper for wrapper in find_wrappers(model) if wrapper.built]
    if not wrappers:
        raise ValueError(
            f"kp.collect_gradients found no built kp.PruneWrapper in model {model.name!r}. "
            "Make the model prunable first: `model = kp.prune(model, ...)`."
        )
    targets = [
        (wrapper, index, target.variable)
        for wrapper in wrappers
        for index, target in enumerate(wrapper.targets)
    ]
    variables = [variable for _, _, variable in targets]
    per_variable = [[] for _ in variables]
    used = 0
    for x_batch, y_batch in _batches(x, y, batch_size, num_batches):
        for position, gradient in enumerate(_loss_gradients(model, x_batch, y_batch, variables)):
            per_variable[position].append(gradient)
        used += 1
    if used == 0:
        raise ValueError(f"Expected at least one example in `x`. Received {len(x)} examples.")
    for (wrapper, index, variable), gradients in zip(targets, per_variable, strict=True):
        wrapper.gradient_statistics[index].record(variable, gradients)
    return used
