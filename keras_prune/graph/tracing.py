"""A model's graph, read through public Keras only: every layer and operation call in run order.

`trace(model)` replays the model with `keras.models.clone_model(clone_function=..., call_function=
...)`, which sees each call with its real positional and keyword arguments, including operation
nodes that are not layers (`x + h`, `x[:, 0]`, `keras.ops.*` on symbolic tensors, the
`NotEqual` that `Embedding(mask_zero=True)` inserts). Nested Sequential and Functional models
are inlined, so the result is one flat list of `Call`s over the model's own layer objects and
their variables. Subclassed models (and subclassed layers) are opaque: they appear as one call.

Replaying calls each layer once more on new symbolic inputs, which Keras records as one more
(unused) node of that layer; the model, its weights and its outputs are not changed. Traces are
cached per model, so a model is replayed once however often it is analysed.
"""

import dataclasses
import weakref

import keras


class NotTraceable(ValueError):
    """The model has no graph Keras can replay (a subclassed model, or an unbuilt one)."""


@dataclasses.dataclass(eq=False)
class Call:
    """One call of a layer or operation while the model runs.

    Attributes:
        operation: the model's own layer or operation object (shared layers appear once per
            call, as the same object).
        args, kwargs: the arguments of the call, symbolic tensors included, as Keras passed them.
        inputs: the symbolic tensors among `args` and `kwargs`, flattened in order.
        outputs: the symbolic output tensors, flattened.
    """

    operation: object
    args: tuple
    kwargs: dict
    inputs: list
    outputs: list

    @property
    def is_layer(self):
        return isinstance(self.operation, keras.layers.Layer)

    @property
    def name(self):
        return self.operation.name

    def __repr__(self):
        return f"Call({type(self.operation).__name__} {self.operation.name!r})"


@dataclasses.dataclass(eq=False)
class Graph:
    """The calls of a traced model and its symbolic inputs and outputs (flat lists).

    Tensors are keyed by `id()`: `producer(tensor)` is the call that made it (None for a model
    input), `consumers(tensor)` the calls that read it.
    """

    model: object
    inputs: list
    outputs: list
    calls: list
    output_structure: object = None

    def __post_init__(self):
        self._producer = {}
        self._consumers = {}
        for call in self.calls:
            for tensor in call.outputs:
                self._producer[id(tensor)] = call
            for tensor in call.inputs:
                self._consumers.setdefault(id(tensor), []).append(call)

    def producer(self, tensor):
        return self._producer.get(id(tensor))

    def consumers(self, tensor):
        return list(self._consumers.get(id(tensor), ()))

    def layers(self):
        """The distinct layers called, in first-call order (operations that are not layers are
        left out)."""
        seen, result = set(), []
        for call in self.calls:
            if call.is_layer and id(call.operation) not in seen:
                seen.add(id(call.operation))
                result.append(call.operation)
        return result

    def calls_of(self, operation):
        return [call for call in self.calls if call.operation is operation]


def is_graph_model(model):
    """Whether `model` is a Sequential or Functional model (one whose graph can be replayed)."""
    if isinstance(model, keras.Sequential):
        return True
    if not isinstance(model, keras.Model):
        return False
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return False
    # A subclassed model built by calling it has no symbolic inputs; a Functional one does.
    return bool(inputs) and bool(outputs) and all(_is_symbolic(t) for t in inputs)


def _is_symbolic(value):
    return isinstance(value, keras.KerasTensor)


def _flat_tensors(structure):
    return [value for value in keras.tree.flatten(structure) if _is_symbolic(value)]


class _Recorder:
    """The `call_function` handed to `clone_model`: calls each operation, records the call and
    inlines nested graph models."""

    def __init__(self):
        self.calls = []

    def __call__(self, operation, *args, **kwargs):
        if isinstance(operation, keras.Model) and is_graph_model(operation):
            return self.inline(operation, args, kwargs)
        outputs = operation(*args, **kwargs)
        self.calls.append(
            Call(operation, args, kwargs, _flat_tensors((args, kwargs)), _flat_tensors(outputs))
        )
        return outputs

    def inline(self, model, args, kwargs):
        """Replay a nested Sequential / Functional model's own calls on the outer tensors."""
        inner = trace(model)
        given = args[0] if args else kwargs.get("inputs")
        outer = {
            id(tensor): value
            for tensor, value in zip(inner.inputs, _flat_tensors(given), strict=True)
        }

        def outer_value(value):
            return outer.get(id(value), value) if _is_symbolic(value) else value

        for call in inner.calls:
            call_args = keras.tree.map_structure(outer_value, call.args)
            call_kwargs = keras.tree.map_structure(outer_value, call.kwargs)
            outputs = self(call.operation, *call_args, **call_kwargs)
            for tensor, value in zip(call.outputs, _flat_tensors(outputs), strict=True):
                outer[id(tensor)] = value
        flat = [outer[id(tensor)] for tensor in inner.outputs]
        return keras.tree.pack_sequence_as(inner.output_structure, flat)


def _same(operation):
    return operation


def _input_like(tensor):
    return keras.Input(batch_shape=tuple(tensor.shape), dtype=tensor.dtype, name=tensor.name)


_CACHE = weakref.WeakKeyDictionary()


def trace(model):
    """The `Graph` of a built Sequential or Functional model (nested models inlined).

    Raises `NotTraceable` for subclassed or unbuilt models, saying what to do instead.

    Example:

    ```python
    inputs = keras.Input((8,))
    h = keras.layers.Dense(8)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(8)(h) + h)
    [call.name for call in kp.graph.trace(model).calls]  # ['dense', 'dense_1', 'add']
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model to trace. Received: model={model!r} "
            f"(of type {type(model).__name__})"
        )
    cached = _CACHE.get(model)
    if cached is not None:
        return cached
    if not model.built or not is_graph_model(model):
        if isinstance(model, keras.Sequential) or not model.built:
            raise NotTraceable(
                f"Model {model.name!r} is not built, so it has no graph yet. Build it first: "
                "start it with `keras.Input(shape)`, call `model.build(input_shape)`, or call it "
                "on a batch."
            )
        raise NotTraceable(
            f"Model {model.name!r} ({type(model).__name__}) is a subclassed model: its `call` is "
            "Python code, not a graph Keras can replay."
        )
    recorder = _Recorder()
    if isinstance(model, keras.Sequential):
        inputs = [_input_like(tensor) for tensor in model.inputs]
        outputs = inputs[0]
        for layer in model.layers:
            outputs = recorder(layer, outputs)
        graph = Graph(model, inputs, _flat_tensors(outputs), recorder.calls, outputs)
    else:
        clone = keras.models.clone_model(model, clone_function=_same, call_function=recorder)
        graph = Graph(model, list(clone.inputs), list(clone.outputs), recorder.calls, clone.output)
    _CACHE[model] = graph
    return graph
