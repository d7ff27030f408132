"""Run a model from a point in its graph on stored activations.

Pruning one layer alone leaves everything computed before it unchanged, so a sensitivity scan
that visits layers in graph order computes those activations once: `Replay` keeps the tensors
that cross the current cut (the "frontier") for a fixed sample of inputs, moves the cut
forward by running the calls in between, and builds a Keras model of the rest of the graph
(sharing the model's layers, so weights edited in place are seen) to evaluate from the cut.
"""

import keras
import numpy as np

from keras_prune.graph import tracing


def _symbolic(value):
    return isinstance(value, keras.KerasTensor)


class Replay:
    """Activations of a fixed input sample at a moving cut through a traced model.

    Args:
        model: a built Sequential or Functional model.
        x: the inputs (an array, or a list in `model.inputs` order).
        batch_size: examples per eager call when moving the cut.

    Example:

    ```python
    replay = Replay(model, x[:256])
    cut = replay.first_call_of(model.get_layer("conv2"))
    replay.advance(cut)
    predictions = replay.predict_from(cut)
    ```
    """

    def __init__(self, model, x, batch_size=128):
        self.graph = tracing.trace(model)
        self.calls = self.graph.calls
        self.batch_size = batch_size
        flat = [np.asarray(array) for array in keras.tree.flatten(x)]
        self.values = {id(t): a for t, a in zip(self.graph.inputs, flat, strict=True)}
        self.tensors = {id(t): t for t in self.graph.inputs}
        self.position = 0
        self._last_use = {}
        for index, call in enumerate(self.calls):
            for tensor in call.inputs:
                self._last_use[id(tensor)] = index
        self._outputs = {id(t) for t in self.graph.outputs}
        self._models = {}

    def first_call_of(self, layer):
        """Index of the first call of `layer` (or of any of several layers) in the graph."""
        layers = layer if isinstance(layer, (list, tuple, set)) else [layer]
        wanted = {id(item) for item in layers}
        for index, call in enumerate(self.calls):
            if id(call.operation) in wanted:
                return index
        raise ValueError(f"None of {[item.name for item in layers]} is called in the model.")

    def advance(self, index):
        """Moves the cut to call `index` (forward only), computing what crosses it."""
        if index < self.position:
            raise ValueError(f"The cut only moves forward: at {self.position}, asked {index}.")
        for call in self.calls[self.position : index]:
            outputs = self._run(call)
            for tensor, value in zip(call.outputs, outputs, strict=True):
                self.values[id(tensor)] = value
                self.tensors[id(tensor)] = tensor
            self.position += 1
            self._forget(self.position)

    def _forget(self, index):
        for key in list(self.values):
            if self._last_use.get(key, -1) < index and key not in self._outputs:
                del self.values[key]
                del self.tensors[key]

    def _run(self, call):
        count = len(next(iter(self.values.values()))) if self.values else 0
        chunks = []
        for start in range(0, max(count, 1), self.batch_size):

            def value(item, start=start):
                if _symbolic(item):
                    return self.values[id(item)][start : start + self.batch_size]
                return item

            args = keras.tree.map_structure(value, call.args)
            kwargs = keras.tree.map_structure(value, call.kwargs)
            result = call.operation(*args, **kwargs)
            chunks.append([np.asarray(keras.ops.convert_to_numpy(r)) for r in _flat(result)])
        return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]

    def frontier(self):
        """The tensors crossing the cut, in a stable order."""
        return [self.tensors[key] for key in self.values]

    def _model_from(self, index):
        if index in self._models:
            return self._models[index]
        frontier = self.frontier()
        fresh = {
            id(t): keras.Input(batch_shape=(None, *tuple(t.shape)[1:]), dtype=t.dtype)
            for t in frontier
        }

        def mapped(item):
            return fresh.get(id(item), item) if _symbolic(item) else item

        for call in self.calls[index:]:
            args = keras.tree.map_structure(mapped, call.args)
            kwargs = keras.tree.map_structure(mapped, call.kwargs)
            outputs = call.operation(*args, **kwargs)
            for tensor, value in zip(call.outputs, _flat(outputs), strict=True):
                fresh[id(tensor)] = value
        inputs = [fresh[id(t)] for t in frontier]
        outputs = [fresh[id(t)] for t in self.graph.outputs]
        outputs = [
            keras.layers.Identity()(tensor) if any(tensor is i for i in inputs) else tensor
            for tensor in outputs
        ]
        model = keras.Model(
            inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs
        )
        self._models = {index: (model, [id(t) for t in frontier])}
        return self._models[index]

    def predict_from(self, index):
        """The model's outputs on the sample, run from the cut at `index` (== the position)."""
        if index != self.position:
            raise ValueError(f"Advance to {index} first (the cut is at {self.position}).")
        model, keys = self._model_from(index)
        inputs = [self.values[key] for key in keys]
        return predict(model, inputs[0] if len(inputs) == 1 else inputs, self.batch_size)


def predict(model, x, batch_size=128):
    """`model`'s outputs on `x`, called batch by batch in inference mode (without
    `model.predict`'s per-call data pipeline, which costs more than a small model's forward
    pass)."""
    count = len(keras.tree.flatten(x)[0])
    chunks = []
    for start in range(0, count, batch_size):
        batch = keras.tree.map_structure(
            lambda array, start=start: array[start : start + batch_size], x
        )
        outputs = model(batch, training=False)
        chunks.append(
            keras.tree.map_structure(lambda t: np.asarray(keras.ops.convert_to_numpy(t)), outputs)
        )
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts), *chunks)


def _flat(structure):
    return [item for item in keras.tree.flatten(structure) if item is not None]
