"""Run a traced model on real batches call by call, holding only the tensors still to be read.

`keras_prune.graph.tracing.trace(model).calls` lists every layer and operation call of a
Sequential or Functional model in run order. `GraphRun` evaluates them one at a time on
calibration batches: before a call's outputs are computed, a method may inspect the call on its
real inputs (and change the layer's weights); after it, every tensor that no later call reads is
dropped. At any moment the run holds the tensors that cross the current point of the graph
(one activation, plus the skip connections around it), never the whole model's activations.
"""

import collections

import keras
import numpy as np


def _is_value(value):
    return value is not None and (isinstance(value, np.ndarray) or keras.ops.is_tensor(value))


class GraphRun:
    """The live tensors of a traced graph over several batches.

    Args:
        graph: a `keras_prune.graph.tracing.Graph`.
        batches: one flat list of input arrays per batch, in the order of `graph.inputs`.
        bypass: `{id(call): input position}`: calls whose output is one of their inputs instead
            of what they compute (a removed residual block passes its input through).

    Example:

    ```python
    run = GraphRun(kp.graph.trace(model), [[x[:32]], [x[32:64]]])
    for call in run.graph.calls:
        run.advance(call)
    logits = run.outputs()          # one list of output arrays per batch
    ```
    """

    def __init__(self, graph, batches, bypass=None):
        self.graph = graph
        self.bypass = dict(bypass or {})
        self.values = []
        for batch in batches:
            if len(batch) != len(graph.inputs):
                raise ValueError(
                    f"Expected {len(graph.inputs)} input array(s) per batch for model "
                    f"{graph.model.name!r}. Received {len(batch)}."
                )
            self.values.append(
                {
                    id(tensor): keras.ops.convert_to_tensor(value, dtype=tensor.dtype)
                    for tensor, value in zip(graph.inputs, batch, strict=True)
                }
            )
        self.reads_left = collections.Counter()
        for call in graph.calls:
            for tensor in call.inputs:
                self.reads_left[id(tensor)] += 1
        for tensor in graph.outputs:
            self.reads_left[id(tensor)] += 1

    @property
    def num_batches(self):
        return len(self.values)

    def arguments(self, call, index):
        """`(args, kwargs)` of `call` on batch `index`, symbolic tensors replaced by values."""
        values = self.values[index]

        def value_of(item):
            return values[id(item)] if isinstance(item, keras.KerasTensor) else item

        return (
            keras.tree.map_structure(value_of, call.args),
            keras.tree.map_structure(value_of, call.kwargs),
        )

    def call_on(self, call, index):
        """Run `call` on batch `index` and return what it returns (not stored)."""
        args, kwargs = self.arguments(call, index)
        return call.operation(*args, **kwargs)

    def advance(self, call):
        """Compute and store `call`'s outputs on every batch; drop tensors no longer read."""
        for index, values in enumerate(self.values):
            position = self.bypass.get(id(call))
            if position is not None:
                flat = [values[id(call.inputs[position])]]
            else:
                flat = [v for v in keras.tree.flatten(self.call_on(call, index)) if _is_value(v)]
            if len(flat) != len(call.outputs):
                raise ValueError(
                    f"{call.name!r} returned {len(flat)} tensor(s) on real data and "
                    f"{len(call.outputs)} when the model was built."
                )
            for tensor, value in zip(call.outputs, flat, strict=True):
                # Held without its autograd history: on torch a stored output would otherwise
                # keep every earlier activation of the batch alive (and refuse `np.asarray`).
                values[id(tensor)] = keras.ops.stop_gradient(value)
        for tensor in call.inputs:
            self.reads_left[id(tensor)] -= 1
            if self.reads_left[id(tensor)] <= 0:
                for values in self.values:
                    values.pop(id(tensor), None)

    def outputs(self):
        """The model's outputs on each batch: one flat list per batch."""
        return [[values[id(tensor)] for tensor in self.graph.outputs] for values in self.values]


def run_graph(graph, batches, bypass=None):
    """The outputs of `graph` on `batches` (flat lists), with `bypass` applied (see `GraphRun`).

    Example:

    ```python
    outputs = run_graph(kp.graph.trace(model), [[x]])[0]
    ```
    """
    run = GraphRun(graph, batches, bypass)
    for call in graph.calls:
        run.advance(call)
    return run.outputs()
