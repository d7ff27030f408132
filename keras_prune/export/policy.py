"""Which layers to prune so that XNNPACK's sparse inference can use the zeros.

XNNPACK's sparse (NCHW) kernels exploit zeros only in 1x1 convolutions, and its sparse region
must open with a dense 3x3 stride-2 convolution (docs/export.md). Pruning anything else makes the
file smaller (sparse encoding + DENSIFY) but no faster, and pruning the first convolution
gains nothing. `xnnpack_filter` selects exactly the layers worth pruning for that path; pass it
as `filters=` to `kp.prune`, then check the exported file with `check_xnnpack_sparse`.
"""

import keras

from keras_prune.graph import tracing
from keras_prune.layers.wrapper import PruneWrapper


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
    model = keras.Sequential([  # the stem XNNPACK's sparse inference needs
        keras.Input((32, 32, 3)),
        keras.layers.ZeroPadding2D(1),
        keras.layers.Conv2D(16, 3, strides=2),
        keras.layers.Conv2D(32, 1, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
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


# -- does the model have a region XNNPACK runs sparse? -------------------------------------------


def _pair(value):
    return tuple(value) if isinstance(value, (list, tuple)) else (value, value)


def _padding_of(layer):
    """A ZeroPadding2D's padding as ((top, bottom), (left, right))."""
    padding = layer.padding
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    return tuple(_pair(side) for side in padding)


def _inner(operation):
    return operation.layer if isinstance(operation, PruneWrapper) else operation


class _Flow:
    """Producers and consumers of each call of a traced model."""

    def __init__(self, graph):
        self.graph = graph

    def producers(self, call):
        return [p for p in (self.graph.producer(t) for t in call.inputs) if p is not None]

    def consumers(self, call):
        found = []
        for tensor in call.outputs:
            for consumer in self.graph.consumers(tensor):
                if consumer not in found:
                    found.append(consumer)
        return found


def _is_start(flow, call):
    layer = _inner(call.operation)
    if type(layer) is not keras.layers.Conv2D:
        return False
    producers = flow.producers(call)
    return (
        tuple(layer.kernel.shape[:3]) == (3, 3, 3)
        and _pair(layer.strides) == (2, 2)
        and layer.padding.lower() == "valid"
        and len(producers) == 1
        and isinstance(_inner(producers[0].operation), keras.layers.ZeroPadding2D)
        and _padding_of(_inner(producers[0].operation)) == ((1, 1), (1, 1))
    )


def _is_end(call):
    return isinstance(_inner(call.operation), keras.layers.GlobalAveragePooling2D)


def _lookup(sources, stop, following):
    """The calls satisfying `stop` reached from `sources` through `following`; empty if a
    branch ends before reaching one."""
    to_visit, used, found = list(sources), set(map(id, sources)), []
    while to_visit:
        call = to_visit.pop()
        if stop(call):
            found.append(call)
            continue
        nexts = following(call)
        if not nexts:
            return []
        for nxt in nexts:
            if id(nxt) not in used:
                used.add(id(nxt))
                to_visit.append(nxt)
    return found


_ELEMENTWISE_OPERATIONS = {"Add", "Subtract", "Multiply", "Identity"}
_ACTIVATIONS = {"relu", "relu6", "leaky_relu", "elu", "sigmoid"}


def _supported(flow, call):
    """Whether XNNPACK's sparse region can contain `call` (its subgraph compatibility rules)."""
    layer = _inner(call.operation)
    layers = keras.layers
    if not isinstance(layer, layers.Layer):
        return type(layer).__name__ in _ELEMENTWISE_OPERATIONS
    if isinstance(
        layer,
        (
            layers.Add,
            layers.Multiply,
            layers.ZeroPadding2D,
            layers.ReLU,
            layers.LeakyReLU,
            layers.ELU,
            layers.Dropout,
            layers.Identity,
        ),
    ):
        return True
    if isinstance(layer, layers.DepthwiseConv2D):
        padding = layer.padding.lower()
        producers = flow.producers(call)
        zero = (
            _inner(producers[0].operation)
            if len(producers) == 1
            and isinstance(_inner(producers[0].operation), layers.ZeroPadding2D)
            else None
        )
        kernel, strides = _pair(layer.kernel_size), _pair(layer.strides)
        for size, pad in ((3, 1), (5, 2)):
            if kernel != (size, size):
                continue
            if strides == (1, 1) and padding == "same":
                return layer.depth_multiplier == 1 and _pair(layer.dilation_rate) == (1, 1)
            if (
                strides in ((1, 1), (2, 2))
                and padding == "valid"
                and zero is not None
                and _padding_of(zero) == ((pad, pad), (pad, pad))
            ):
                return layer.depth_multiplier == 1 and _pair(layer.dilation_rate) == (1, 1)
        return False
    if isinstance(layer, layers.Conv2D):
        return (
            layer.groups == 1
            and _pair(layer.dilation_rate) == (1, 1)
            and _pair(layer.kernel_size) == (1, 1)
            and _pair(layer.strides) == (1, 1)
        )
    if isinstance(layer, layers.GlobalAveragePooling2D):
        return bool(layer.keepdims)
    if isinstance(layer, layers.BatchNormalization):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        return [a % 4 for a in axis] == [3]
    if isinstance(layer, layers.UpSampling2D):
        return layer.interpolation == "bilinear"
    if isinstance(layer, layers.Activation):
        return getattr(layer.activation, "__name__", "") in _ACTIVATIONS
    return False


def check_xnnpack_sparse_model(model):
    """Raise a ValueError saying why `model` cannot run sparse on XNNPACK, or return None.

    XNNPACK runs a region sparse only if every input branch opens with `ZeroPadding2D(1)` and a
    3x3 stride-2 `Conv2D` on 3 channels with `padding="valid"`, every output branch closes with
    `GlobalAveragePooling2D`, and everything in between is a layer its sparse kernels support
    (1x1 `Conv2D`, 3x3 / 5x5 depthwise, BatchNormalization, ReLU-like activations, add and
    multiply, bilinear upsampling; pooling inside the region must keep its dimensions).

    Example:

    ```python
    model = keras.Sequential([  # the stem XNNPACK's sparse inference needs
        keras.Input((32, 32, 3)),
        keras.layers.ZeroPadding2D(1),
        keras.layers.Conv2D(16, 3, strides=2),
        keras.layers.Conv2D(32, 1, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    kp.export.check_xnnpack_sparse_model(model)   # raises naming what is missing, if anything
    ```
    """
    if isinstance(model, keras.Sequential) and not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built, so its structure cannot be checked for "
            "XNNPACK's sparse inference. Start it with keras.Input(shape) or call "
            "model.build(input_shape) first."
        )
    try:
        graph = tracing.trace(model)
    except tracing.NotTraceable as error:
        raise ValueError(f"{error} Its structure cannot be checked for XNNPACK.") from error
    flow = _Flow(graph)
    sources = [c for t in graph.inputs for c in graph.consumers(t)]
    starts = _lookup(sources, lambda c: _is_start(flow, c), flow.consumers)
    if not starts:
        raise ValueError(
            f"Model {model.name!r} cannot use XNNPACK's sparse inference: could not find, in "
            "every input branch, a `Conv2D` 3x3 with strides 2, 3 input channels and "
            "padding='valid' right after `ZeroPadding2D(padding=1)`. Start the network that way."
        )
    sinks = [graph.producer(t) for t in graph.outputs if graph.producer(t) is not None]
    ends = _lookup(sinks, _is_end, flow.producers)
    if not ends:
        raise ValueError(
            f"Model {model.name!r} cannot use XNNPACK's sparse inference: could not find a "
            "`GlobalAveragePooling2D` layer in every output branch. End the sparse region with "
            "one."
        )
    end_ids = {id(c) for c in ends}

    def visit(call):
        if id(call) not in end_ids and not _supported(flow, call):
            operation = _inner(call.operation)
            raise ValueError(
                f"Model {model.name!r} cannot use XNNPACK's sparse inference: layer "
                f"{operation.name!r} ({type(operation).__name__}) is not supported inside the "
                "sparse region. Replace it, or move it after the GlobalAveragePooling2D."
            )
        return id(call) in end_ids

    _lookup([c for start in starts for c in flow.consumers(start)], visit, flow.consumers)
