"""A model cut into the blocks a TFLite runtime executes as one unit, each rebuilt as a small
model of its own.

The TFLite converter folds a BatchNormalization into the convolution before it and fuses the
activation after it, so timing a Conv2D, its BatchNormalization and its ReLU as three models
would count three ops where the file has one. A block is therefore a Conv / Dense / depthwise
layer together with the BatchNormalization and activation layers that follow it on a single
path; every other call (Add, pooling, padding, reshaping, concatenation, ops) is a block alone.
"""

import dataclasses
import json

import keras
import numpy as np

from keras_prune.graph import groups as groups_lib
from keras_prune.graph import tracing
from keras_prune.reporting import macs as macs_lib

layers = keras.layers
_ANCHORS = groups_lib.MIXING + groups_lib.DEPTHWISE + groups_lib.TRANSPOSE
_FUSED = (layers.BatchNormalization,) + groups_lib.ACTIVATIONS


@dataclasses.dataclass(eq=False)
class Block:
    """Consecutive calls run as one unit.

    Attributes:
        name: the first call's name (layers keep their names when channels are removed, so
            it identifies the block across pruned copies of a model).
        calls: the `tracing.Call`s, in order.
        inputs: the symbolic tensors the block reads from outside.
        outputs: the symbolic tensors it produces for the rest of the model.
        mixing: whether its MACs grow with input times output channels (Conv, Dense) rather
            than with its channels alone (depthwise, element-wise).
    """

    name: str
    calls: list
    inputs: list
    outputs: list
    mixing: bool

    @property
    def kinds(self):
        return [type(groups_lib.unwrap(call.operation)).__name__ for call in self.calls]

    def macs(self):
        return sum(macs_lib.call_macs(call)[0] for call in self.calls)

    def params(self):
        seen, total = set(), 0
        for call in self.calls:
            if call.is_layer:
                for weight in groups_lib.unwrap(call.operation).weights:
                    if id(weight) not in seen:
                        seen.add(id(weight))
                        total += int(np.prod(weight.shape))
        return total

    def elements(self):
        """Activation elements read and written per example."""
        return sum(elements_of(t) for t in self.inputs) + sum(elements_of(t) for t in self.outputs)

    def small_model(self):
        """The block alone as a Keras model at batch size 1, with the block's own weights."""
        fresh = {
            id(t): keras.Input(batch_shape=(1, *tuple(t.shape)[1:]), dtype=t.dtype)
            for t in self.inputs
        }

        def mapped(value):
            return fresh.get(id(value), value) if isinstance(value, keras.KerasTensor) else value

        for call in self.calls:
            args = keras.tree.map_structure(mapped, call.args)
            kwargs = keras.tree.map_structure(mapped, call.kwargs)
            if call.is_layer:
                layer = groups_lib.unwrap(call.operation)
                copy = type(layer).from_config(layer.get_config())
                outputs = copy(*args, **kwargs)
                copy.set_weights(layer.get_weights())
            else:
                outputs = call.operation(*args, **kwargs)
            flat = [v for v in keras.tree.flatten(outputs) if isinstance(v, keras.KerasTensor)]
            for tensor, value in zip(call.outputs, flat, strict=True):
                fresh[id(tensor)] = value
        inputs = [fresh[id(t)] for t in self.inputs]
        outputs = [fresh[id(t)] for t in self.outputs]
        return keras.Model(
            inputs[0] if len(inputs) == 1 else inputs,
            outputs[0] if len(outputs) == 1 else outputs,
            name=f"block_{self.name}",
        )

    def signature(self):
        """What determines the block's cost: its layers' configs (names left out) and shapes.
        Equal signatures are timed once."""
        parts = []
        for call in self.calls:
            operation = groups_lib.unwrap(call.operation)
            try:
                config = operation.get_config()
            except (NotImplementedError, TypeError):
                config = {}
            config = {k: v for k, v in config.items() if not _training_only(k)}
            parts.append([type(operation).__name__, config])
        shapes = [list(t.shape)[1:] for t in self.inputs]
        weights = [
            [list(w.shape), int(np.count_nonzero(keras.ops.convert_to_numpy(w)))]
            for call in self.calls
            if call.is_layer
            for w in groups_lib.unwrap(call.operation).weights
        ]
        return json.dumps([parts, shapes, weights], sort_keys=True, default=str)


def _training_only(key):
    """Whether a layer config entry leaves inference unchanged (the name, initializers,
    regularizers, constraints, BatchNormalization's momentum): blocks that differ only there
    cost the same and share one timing (and one cache entry)."""
    return key in ("name", "trainable", "momentum") or key.endswith(
        ("_initializer", "_regularizer", "_constraint")
    )


def elements_of(tensor):
    """Elements of one example of a symbolic tensor (unknown sizes count as 1)."""
    return int(np.prod([d for d in tuple(tensor.shape)[1:] if d is not None], dtype=np.int64))


def _single_consumer(graph, tensor, graph_outputs):
    return id(tensor) not in graph_outputs and len(graph.consumers(tensor)) == 1


def blocks(model):
    """The `Block`s of a built Sequential or Functional model, in graph order.

    Example:

    ```python
    [block.name for block in blocks(model)]  # ['conv1', 'block_1_add', ...]
    ```
    """
    graph = tracing.trace(model)
    graph_outputs = {id(t) for t in graph.outputs}
    result, current = [], None
    for call in graph.calls:
        layer = groups_lib.unwrap(call.operation) if call.is_layer else None
        fusable = (
            current is not None
            and layer is not None
            and isinstance(layer, _FUSED)
            and len(call.inputs) == 1
            and len(current.outputs) == 1
            and call.inputs[0] is current.outputs[0]
            and _single_consumer(graph, current.outputs[0], graph_outputs)
        )
        if fusable:
            current.calls.append(call)
            current.outputs = list(call.outputs)
            continue
        current = Block(
            call.name,
            [call],
            list({id(t): t for t in call.inputs}.values()),
            list(call.outputs),
            isinstance(layer, groups_lib.MIXING + groups_lib.TRANSPOSE),
        )
        if not current.inputs:
            current = None  # a constant: nothing to run
            continue
        result.append(current)
        if not (layer is not None and isinstance(layer, _ANCHORS + _FUSED)):
            current = None  # only convolutions, BatchNorm and activations take fused followers
    return result
