"""See the input of a layer that runs inside another layer (a projection inside
`MultiHeadAttention`, the feed-forward Dense inside a keras-hub transformer block).

A composite layer's `call` is Python code, so its sublayers' inputs are not tensors of the
model's graph and no `keras.Model` can expose them. They can still be seen by the sublayer
itself: Keras's `Layer.__call__` runs `self.call(...)`, so an instance attribute `call` that
records its first argument and then runs the layer's own `call` sees every input the sublayer
gets, with nothing changed in the computation. `recording_inputs` installs such a recorder for
the duration of a `with` block and removes it afterwards, leaving the layer as it was (no
wrapper, no change to the model's structure, weights or saved config).
"""

import contextlib


def _first_input(args, kwargs):
    if args:
        return args[0]
    if "inputs" in kwargs:
        return kwargs["inputs"]
    return next(iter(kwargs.values()), None)


@contextlib.contextmanager
def recording_inputs(layers, record):
    """Within the block, every call of a layer in `layers` first runs `record(layer, input)`.

    Args:
        layers: the layers to watch (each at most once).
        record: a function `(layer, input tensor) -> None`.

    Example:

    ```python
    seen = []
    with recording_inputs([block_dense], lambda layer, x: seen.append(x)):
        model.predict(x_batch)
    ```
    """
    installed = []
    try:
        for layer in layers:
            if any(layer is done for done, _ in installed):
                continue
            previous = vars(layer).get("call")
            original = layer.call

            def recorder(*args, _layer=layer, _original=original, **kwargs):
                record(_layer, _first_input(args, kwargs))
                return _original(*args, **kwargs)

            layer.call = recorder
            installed.append((layer, previous))
        yield
    finally:
        for layer, previous in reversed(installed):
            if previous is None:
                del layer.call
            else:
                layer.call = previous
