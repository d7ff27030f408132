"""Gradient statistics on any backend: what gradient criteria rank by.

`gradient_statistics(model, calibration_data)` computes dL/dw of any of a model's weights over a
few batches with the backend's own autodiff (TensorFlow, torch or JAX; the tests compare them)
and returns their means as `GradientStatistics`. `collect_gradients` records those of every
pruned weight in its wrapper. It is the one gradient collector: gradient criteria, RigL's
growth and Taylor channel scores (`kp.prune_channels(criterion="taylor")`) all read it.

`calibration_data` is `(x, y)`, `x` alone (for losses that need no target), or an iterable of
such batches (a `tf.data.Dataset`, a generator); arrays are cut into `batch_size` batches.
"""

import contextlib

import keras
import numpy as np
from keras import ops

from keras_prune.core import criteria as criteria_lib
from keras_prune.layers.wrapper import find_wrappers


def _is_array_data(value):
    leaves = keras.tree.flatten(value)
    return bool(leaves) and all(
        hasattr(leaf, "shape") and hasattr(leaf, "__len__") for leaf in leaves
    )


def _cut(structure, window):
    return keras.tree.map_structure(lambda array: array[window], structure)


def check_calibration_data(calibration_data, name="calibration_data", model=None, labels=False):
    """Raise a ValueError naming `name` unless `calibration_data` is `(x, y)` arrays of one
    length, `x` arrays (unless `labels`), or an iterable of batches; returns it.

    Arrays must hold finite numbers; with `model`, `x` must match its inputs' shapes.
    """
    if isinstance(calibration_data, (str, bytes)) or calibration_data is None:
        raise ValueError(
            f"Expected `{name}` to be `(x, y)` arrays, `x`, or an iterable of batches. "
            f"Received: {name}={calibration_data!r}"
        )
    if isinstance(calibration_data, tuple) and len(calibration_data) == 2:
        x, y = calibration_data
        if _is_array_data(x) and y is not None:
            if not _is_array_data(y):
                raise ValueError(
                    f"Expected `{name}` = (x, y) with array targets. Received: y of type "
                    f"{type(y).__name__}"
                )
            lengths = {len(leaf) for leaf in keras.tree.flatten(x) + keras.tree.flatten(y)}
            if len(lengths) != 1:
                raise ValueError(
                    f"Expected `{name}` = (x, y) with as many targets as inputs. Received "
                    f"lengths {sorted(lengths)}"
                )
            if lengths == {0}:
                raise ValueError(f"Expected at least one example in `{name}`. Received 0 examples.")
            _check_arrays(x, name, model)
        return calibration_data
    if _is_array_data(calibration_data):
        if labels:
            shapes = [tuple(leaf.shape) for leaf in keras.tree.flatten(calibration_data)]
            raise ValueError(
                f"Expected `{name}` = (x, y): the loss gradient needs the targets. Received: "
                f"{name} = arrays of shape {shapes[0] if len(shapes) == 1 else shapes} alone; "
                f"pass {name}=(x, y)."
            )
        if not len(keras.tree.flatten(calibration_data)[0]):
            raise ValueError(f"Expected at least one example in `{name}`. Received 0 examples.")
        _check_arrays(calibration_data, name, model)
        return calibration_data
    try:
        iter(calibration_data)
    except TypeError as error:
        raise ValueError(
            f"Expected `{name}` to be `(x, y)` arrays, `x`, or an iterable of batches. "
            f"Received: {name}={calibration_data!r} (of type {type(calibration_data).__name__})"
        ) from error
    return calibration_data


def _batch_count(calibration_data, batch_size, num_batches):
    """How many batches `batches` yields, or None if only iterating tells (a dataset)."""
    pair = isinstance(calibration_data, tuple) and len(calibration_data) == 2
    x = calibration_data[0] if pair else calibration_data
    if not _is_array_data(x):
        return num_batches
    count = -(-len(keras.tree.flatten(x)[0]) // batch_size)
    return count if num_batches is None else min(count, num_batches)


def _check_arrays(x, name, model):
    """Finite values, and (with `model`) one array per input whose shape matches it."""
    leaves = keras.tree.flatten(x)
    for leaf in leaves:
        values = ops.convert_to_numpy(leaf)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = "nan" if np.isnan(values).any() else "inf"
            raise ValueError(
                f"Expected `{name}` to hold finite numbers. Received: {name} with {bad} values "
                f"({int((~np.isfinite(values)).sum())} of {values.size}); clean or drop those "
                "examples first."
            )
    if model is None or not getattr(model, "built", False):
        return
    try:
        inputs = model.inputs
    except AttributeError:
        return
    expected = [tuple(tensor.shape[1:]) for tensor in inputs]
    received = [tuple(leaf.shape[1:]) for leaf in leaves]
    fits = len(expected) == len(received) and all(
        len(want) == len(got) and all(w is None or w == g for w, g in zip(want, got, strict=True))
        for want, got in zip(expected, received, strict=False)
    )
    if not fits:
        raise ValueError(
            f"Expected `{name}` to match the inputs of model {model.name!r}: examples of shape "
            f"{expected[0] if len(expected) == 1 else expected}. Received: x of shape "
            f"{tuple(leaves[0].shape) if len(leaves) == 1 else [tuple(v.shape) for v in leaves]}."
        )


def batches(calibration_data, batch_size=32, num_batches=None):
    """`(x, y)` batches from `calibration_data` (see the module docstring); `y` may be None."""
    if isinstance(calibration_data, tuple) and len(calibration_data) == 2:
        x, y = calibration_data
    else:
        x, y = calibration_data, None
    if not _is_array_data(x):
        if y is not None:
            raise ValueError(
                "Expected `calibration_data` as arrays `(x, y)` or `x`, or an iterable of "
                f"batches. Received: a pair whose x is {type(x).__name__}"
            )
        for count, batch in enumerate(calibration_data):
            if num_batches is not None and count >= num_batches:
                return
            if isinstance(batch, (tuple, list)) and len(batch) >= 2:
                yield batch[0], batch[1]
            else:
                yield batch, None
        return
    size = len(keras.tree.flatten(x)[0])
    starts = list(range(0, size, batch_size))
    if num_batches is not None:
        starts = starts[:num_batches]
    for start in starts:
        window = slice(start, start + batch_size)
        yield _cut(x, window), None if y is None else _cut(y, window)


def _loss(model, x, y, y_pred, loss):
    """The model's compiled loss, or `loss` plus the model's own losses (regularizers)."""
    if loss is None:
        return model.compute_loss(x=x, y=y, y_pred=y_pred)
    # A Loss object reduces over the batch itself; a plain function returns one value per
    # example, averaged here as compiled losses are.
    value = loss(y, y_pred)
    if not isinstance(loss, keras.losses.Loss):
        value = keras.ops.mean(value)
    for extra in model.losses:
        value = value + extra
    return value


def _loss_gradients(model, x, y, variables, loss=None):
    """dL/dw for each of `variables` on one batch, in inference mode, on the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow_gradients(model, x, y, variables, loss)
    if backend == "torch":
        return _torch_gradients(model, x, y, variables, loss)
    if backend == "jax":
        return _jax_gradients(model, x, y, variables, loss)
    raise NotImplementedError(
        f"kp.engine.collect_gradients supports the TensorFlow, torch and JAX backends; the current "
        f"backend is {backend!r}. Use a criterion that needs no gradients ('magnitude', 'l2', "
        "'random')."
    )


def _or_zeros(gradients, variables):
    return [
        ops.zeros(variable.shape) if gradient is None else ops.convert_to_tensor(gradient)
        for variable, gradient in zip(variables, gradients, strict=True)
    ]


def _tensorflow_gradients(model, x, y, variables, loss):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        y_pred = model(x, training=False)
        value = _loss(model, x, y, y_pred, loss)
    return _or_zeros(tape.gradient(value, [variable.value for variable in variables]), variables)


def _torch_gradients(model, x, y, variables, loss):
    import torch

    values = [variable.value for variable in variables]
    tracked = [position for position, value in enumerate(values) if value.requires_grad]
    y_pred = model(x, training=False)
    value = _loss(model, x, y, y_pred, loss)
    found = torch.autograd.grad(value, [values[p] for p in tracked], allow_unused=True)
    gradients = [None] * len(values)
    for position, gradient in zip(tracked, found, strict=True):
        gradients[position] = None if gradient is None else gradient.detach()
    return _or_zeros(gradients, variables)


def _jax_gradients(model, x, y, variables, loss):
    import jax

    trainable = model.trainable_variables
    non_trainable = model.non_trainable_variables
    non_trainable_values = [variable.value for variable in non_trainable]

    def loss_of(trainable_values):
        y_pred, _ = model.stateless_call(trainable_values, non_trainable_values, x, training=False)
        state = list(zip(trainable, trainable_values, strict=True))
        state += list(zip(non_trainable, non_trainable_values, strict=True))
        with keras.StatelessScope(state_mapping=state):
            return _loss(model, x, y, y_pred, loss)

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


def _check_loss(model, loss, caller):
    if loss is not None:
        return keras.losses.get(loss)
    if not getattr(model, "compiled", False):
        raise ValueError(
            f"{caller} needs a loss: compile model {model.name!r} first (e.g. "
            "`model.compile('adam', 'sparse_categorical_crossentropy')`) or pass `loss=`."
        )
    return None


def _gradients_per_batch(
    model, variables, calibration_data, loss, batch_size, num_batches, verbose
):
    """`([[gradient per batch] per variable], batches used)`, with a progress bar over batches."""
    per_variable = [[] for _ in variables]
    used = 0
    progress = keras.utils.Progbar(
        _batch_count(calibration_data, batch_size, num_batches), verbose=verbose, unit_name="batch"
    )
    for x_batch, y_batch in batches(calibration_data, batch_size, num_batches):
        found = _loss_gradients(model, x_batch, y_batch, variables, loss)
        for position, gradient in enumerate(found):
            per_variable[position].append(gradient)
        used += 1
        progress.update(used)
    if verbose:
        progress.update(used, finalize=True)
    if used == 0:
        raise ValueError(
            "Expected at least one example in `calibration_data`. Received an empty dataset."
        )
    return per_variable, used


def gradient_statistics(
    model, calibration_data, variables=None, loss=None, batch_size=32, num_batches=None, verbose=0
):
    """Mean gradients of `variables` (default: every trainable weight) over `calibration_data`.

    The forward pass runs in inference mode (BatchNormalization uses its moving statistics,
    dropout is off), and no weight or statistic of the model changes.

    Args:
        model: a built model.
        calibration_data: `(x, y)`, `x`, or an iterable of batches.
        variables: the Keras variables to differentiate (default `model.trainable_variables`).
        loss: a Keras loss (name or object); default the model's compiled loss.
        batch_size: examples per gradient batch when `calibration_data` holds arrays.
        num_batches: at most this many batches (None: all).
        verbose: 1 shows a progress bar over the batches.

    Returns:
        `{id(variable): GradientStatistics}`.

    Example:

    ```python
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    statistics = kp.engine.gradient_statistics(model, (x[:32], y[:32]), loss=loss)
    ```
    """
    loss = _check_loss(model, loss, "kp.engine.gradient_statistics")
    variables = list(model.trainable_variables if variables is None else variables)
    per_variable, used = _gradients_per_batch(
        model, variables, calibration_data, loss, batch_size, num_batches, verbose
    )
    result = {}
    for variable, gradients in zip(variables, per_variable, strict=True):
        statistics = criteria_lib.GradientStatistics()
        statistics.record(variable, gradients)
        result[id(variable)] = statistics
    return result


def collect_gradients(
    model, calibration_data, loss=None, batch_size=32, num_batches=None, verbose=0
):
    """Record gradient statistics of every pruned weight of `model` in its wrapper.

    The means over the given batches replace the previous ones; movement accumulates (see
    `GradientStatistics`). Gradients are taken as `gradient_statistics` does.

    Args:
        model: a model containing `kp.PruneWrapper`s, compiled (or pass `loss=`).
        calibration_data: `(x, y)`, `x`, or an iterable of batches.
        loss: a Keras loss; default the model's compiled loss.
        batch_size: examples per gradient batch.
        num_batches: at most this many batches (None: all).
        verbose: 1 shows a progress bar over the batches.

    Returns:
        The number of batches used.

    Example:

    ```python
    pruned.compile("adam", "sparse_categorical_crossentropy")
    kp.engine.collect_gradients(pruned, (x[:256], y[:256]))
    kp.pruning.update_masks(pruned, step=1)
    ```
    """
    loss = _check_loss(model, loss, "kp.engine.collect_gradients")
    wrappers = [wrapper for wrapper in find_wrappers(model) if wrapper.built]
    if not wrappers:
        raise ValueError(
            f"kp.engine.collect_gradients found no built kp.PruneWrapper in model "
            f"{model.name!r}. Make the model prunable first: `model = kp.prune(model, ...)`."
        )
    targets = [
        (wrapper, index, target.variable)
        for wrapper in wrappers
        for index, target in enumerate(wrapper.targets)
    ]
    variables = [variable for _, _, variable in targets]
    per_variable, used = _gradients_per_batch(
        model, variables, calibration_data, loss, batch_size, num_batches, verbose
    )
    for (wrapper, index, variable), gradients in zip(targets, per_variable, strict=True):
        wrapper.gradient_statistics[index].record(variable, gradients)
    return used
