"""Parameters and multiply-accumulates (MACs) per layer, and a before / after comparison.

MACs count the multiply-accumulates of one inference on one example, call by call over the
model's graph (`keras_prune.graph.tracing.trace`, nested models inlined):

- Conv1D/2D/3D, DepthwiseConv, SeparableConv, Dense: output positions x kernel size;
  Conv*Transpose: input positions x kernel size.
- EinsumDense: output elements x contracted size (from its equation).
- MultiHeadAttention: its four projections, plus `Tq * Tk * heads * (key_dim + value_dim)` for
  the attention scores and the weighted sum (`2 * Tq * Tk * H * D` when the key and value
  dimensions are equal).
- SimpleRNN, GRU, LSTM, ConvLSTM*, Bidirectional: per time step the input and recurrent
  kernels (times the output positions for ConvLSTM), times the sequence length.
- Embedding: 0 MACs (a table look-up); its parameters are counted.
- A layer built from other layers (a keras-hub transformer block, `TimeDistributed`): the sum
  of its sublayers' MACs, found by running its `call` on symbolic inputs. If its `call` cannot
  run symbolically (keras-hub's GPT-2 decoder block), its Dense, EinsumDense and attention
  sublayers are counted once per position of its input, and `LayerCost.note` says so.
- Operations that are not layers: `keras.ops.matmul` / `einsum` count their multiply-adds;
  element-wise operations (`x + h`) count zero.
- BatchNormalization (which the TFLite converter folds), activations, pooling and every other
  element-wise layer count zero MACs.

Sizes that are unknown (a `None` sequence length or spatial size) count as 1: the MACs are then
per time step (per position), and `LayerCost.note` says so. Layers called several times count
their MACs once per call and their parameters once.
"""

import dataclasses
import inspect
import weakref

import keras
import numpy as np

from keras_prune.core import validation
from keras_prune.graph import groups as groups_lib
from keras_prune.graph import tracing
from keras_prune.layers import layouts

layers = keras.layers
_CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D)
_DEPTHWISE = (layers.DepthwiseConv1D, layers.DepthwiseConv2D)
_SEPARABLE = (layers.SeparableConv1D, layers.SeparableConv2D)
_TRANSPOSE = (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
# Layers with weights but no multiply-accumulates worth counting (folded, or look-ups).
_NO_MACS = (
    layers.Embedding,
    layers.BatchNormalization,
    layers.LayerNormalization,
    layers.GroupNormalization,
    layers.Normalization,
    layers.PReLU,
)
PER_STEP = "unknown sizes counted as 1: MACs per time step / position"


@dataclasses.dataclass
class LayerCost:
    """Cost of one layer (or of an operation that does multiply-adds).

    Attributes:
        name: layer name.
        kind: layer class name.
        params: number of weights (trainable and not; a `PruneWrapper`'s masks are not counted).
        macs: multiply-accumulates per example, summed over the layer's calls.
        bytes: weight storage in the layer's dtypes.
        note: what the count leaves out or assumes ("" if nothing), e.g. MACs per time step
            when the sequence length is unknown.
    """

    name: str
    kind: str
    params: int = 0
    macs: int = 0
    bytes: int = 0
    note: str = ""


def _size(variable):
    return int(np.prod(variable.shape, dtype=np.int64))


class _Count:
    """MACs of one call, and notes on what the count assumed."""

    def __init__(self, size_of):
        self.size_of = size_of
        self.notes = []

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    def product(self, dims):
        """Product of `dims`; unknown (None) sizes count as 1 and are noted."""
        total = 1
        for dim in dims:
            if dim is None:
                self.note(PER_STEP)
            else:
                total *= int(dim)
        return total

    def positions(self, shape):
        """Product of the spatial / time dims of a (batch, ..., channels) shape."""
        return self.product(tuple(shape)[1:-1])

    def kernels(self, *variables):
        return sum(self.size_of(variable) for variable in variables)


def _shape(tensor):
    return tuple(tensor.shape)


def _bound_arguments(layer, call):
    """The call's arguments by parameter name of `layer.call`."""
    try:
        return inspect.signature(layer.call).bind(*call.args, **call.kwargs).arguments
    except TypeError:
        return {}


def _einsum_dense(count, layer, output_shape):
    """Output elements x contracted size = (output elements / kernel output size) x kernel."""
    inputs, output_spec = layer.equation.split("->")
    kernel_spec = inputs.split(",")[1]
    output_dims = [
        dim
        for letter, dim in zip(kernel_spec, layer.kernel.shape, strict=True)
        if letter in output_spec
    ]
    kernel_output = int(np.prod(output_dims, dtype=np.int64))
    elements = count.product(tuple(output_shape)[1:])
    return elements // max(kernel_output, 1) * count.size_of(layer.kernel)


def _attention(count, layer, call):
    arguments = _bound_arguments(layer, call)
    query, value = arguments.get("query"), arguments.get("value")
    key = arguments.get("key")
    key = value if key is None else key
    if not isinstance(query, keras.KerasTensor) or not isinstance(value, keras.KerasTensor):
        count.note("MultiHeadAttention called without query / value tensors: not counted")
        return 0
    return _attention_at(
        count,
        layer,
        count.positions(_shape(query)),
        count.positions(_shape(key)),
        count.positions(_shape(value)),
    )


def _attention_at(count, layer, query_steps, key_steps, value_steps):
    projections = (
        query_steps * count.size_of(layer.query_dense.kernel)
        + key_steps * count.size_of(layer.key_dense.kernel)
        + value_steps * count.size_of(layer.value_dense.kernel)
        + query_steps * count.size_of(layer.output_dense.kernel)
    )
    heads, key_dim = layer.query_dense.kernel.shape[-2:]
    value_dim = layer.value_dense.kernel.shape[-1]
    return projections + query_steps * key_steps * int(heads) * (int(key_dim) + int(value_dim))


def _cells(cell):
    if isinstance(cell, layers.StackedRNNCells):
        return [each for inner in cell.cells for each in _cells(inner)]
    return [cell]


def _recurrent(count, layer, call):
    """Per time step: every cell's input and recurrent kernels; times the sequence length."""
    if isinstance(layer, layers.Bidirectional):
        return _recurrent(count, layer.forward_layer, call) + _recurrent(
            count, layer.backward_layer, call
        )
    steps = count.product([_shape(call.inputs[0])[1]])
    total = 0
    for cell in _cells(layer.cell):
        kernel = getattr(cell, "kernel", None)
        recurrent = getattr(cell, "recurrent_kernel", None)
        if not isinstance(kernel, keras.Variable) or not isinstance(recurrent, keras.Variable):
            count.note(f"recurrent cell {type(cell).__name__} not counted")
            continue
        per_step = count.kernels(kernel, recurrent)
        if len(kernel.shape) > 2:  # ConvLSTM: both kernels run at every output position
            spatial = len(kernel.shape) - 2
            per_step *= count.product(_shape(call.outputs[0])[-1 - spatial : -1])
        total += per_step
    return steps * total


def _einsum_op(count, call, output_shape):
    """Output elements x the sizes of the contracted letters."""
    subscripts = call.operation.subscripts.replace(" ", "")
    inputs, output_spec = subscripts.split("->") if "->" in subscripts else (subscripts, None)
    operands = [arg for arg in keras.tree.flatten(call.args) if hasattr(arg, "shape")]
    specs = inputs.split(",")
    if output_spec is None or len(specs) != len(operands) or "..." in inputs:
        count.note("einsum without an explicit output or with '...': not counted")
        return 0
    sizes = {}
    for spec, operand in zip(specs, operands, strict=True):
        for letter, dim in zip(spec, tuple(operand.shape), strict=True):
            if dim is not None:
                sizes[letter] = int(dim)
    contracted = {letter for spec in specs for letter in spec} - set(output_spec)
    return count.product(tuple(output_shape)[1:]) * count.product(
        [sizes.get(letter) for letter in sorted(contracted)]
    )


def _operation_macs(count, call):
    kind = type(call.operation).__name__
    if not call.outputs:
        return 0
    output_shape = _shape(call.outputs[0])
    if kind == "Matmul" and call.inputs:
        first = [arg for arg in call.args if hasattr(arg, "shape")][0]
        return count.product(output_shape[1:]) * count.product([_shape(first)[-1]])
    if kind == "Einsum":
        return _einsum_op(count, call, output_shape)
    return 0


# A composite layer's inner graph, per layer and call signature: built once, read every count.
_INNER_GRAPHS = weakref.WeakKeyDictionary()


def _inner_graph(layer, call):
    """The graph of `layer.call` run on fresh symbolic inputs shaped like `call`'s: what a
    layer built from sublayers does, call by call. None if it cannot run symbolically."""
    key = tuple((_shape(tensor), str(tensor.dtype)) for tensor in call.inputs)
    cache = _INNER_GRAPHS.setdefault(layer, {})
    if key not in cache:
        cache[key] = None
        # Sizes 1, not None: some composite layers size tensors from `ops.shape(x)` (keras-hub's
        # ViT patch embedding from the batch, its causal decoder blocks from the sequence
        # length), which None breaks. The batch is not counted (MACs are per example), and an
        # open sequence length counts as 1 everywhere in `macs` (noted by the caller).
        fresh = {
            id(tensor): keras.Input(
                batch_shape=(1, *(1 if d is None else d for d in _shape(tensor)[1:])),
                dtype=tensor.dtype,
            )
            for tensor in call.inputs
        }

        def replace(value):
            return fresh[id(value)] if isinstance(value, keras.KerasTensor) else value

        try:
            outputs = layer.call(
                *keras.tree.map_structure(replace, call.args),
                **keras.tree.map_structure(replace, call.kwargs),
            )
            flat = [v for v in keras.tree.flatten(outputs) if isinstance(v, keras.KerasTensor)]
            inputs = [fresh[id(tensor)] for tensor in call.inputs]
            cache[key] = tracing.trace(keras.Model(inputs, flat))
        except Exception:  # noqa: BLE001 - a call Keras cannot run symbolically is not counted
            cache[key] = None
    return cache[key]


def _layer_macs(count, layer, call):
    input_shape = _shape(call.inputs[0]) if call.inputs else ()
    output_shape = _shape(call.outputs[0]) if call.outputs else ()
    if isinstance(layer, _SEPARABLE):
        positions = count.positions(output_shape)
        return positions * count.kernels(layer.depthwise_kernel, layer.pointwise_kernel)
    if isinstance(layer, _TRANSPOSE):
        return count.positions(input_shape) * count.kernels(layer.kernel)
    if isinstance(layer, _CONV + _DEPTHWISE + (layers.Dense,)):
        return count.positions(output_shape) * count.kernels(layer.kernel)
    if isinstance(layer, layers.EinsumDense):
        return _einsum_dense(count, layer, output_shape)
    if isinstance(layer, layers.MultiHeadAttention):
        return _attention(count, layer, call)
    if isinstance(layer, (layers.RNN, layers.Bidirectional)):
        return _recurrent(count, layer, call)
    if isinstance(layer, _NO_MACS):
        return 0
    if not layouts.sublayers(layer):
        if layer.weights:
            count.note(f"{type(layer).__name__} is a layer macs does not know: MACs not counted")
        return 0
    inner = _inner_graph(layer, call)
    if any(d is None for tensor in call.inputs for d in _shape(tensor)[1:]):
        count.note(PER_STEP)
    if inner is None:
        return _sublayer_macs(count, layer, input_shape)
    return sum(_call_macs(count, each) for each in inner.calls)


def _sublayer_macs(count, layer, input_shape):
    """MACs of a composite layer whose `call` cannot run symbolically (keras-hub's cached
    attention asks Keras for an output spec with a `cache=` argument it does not take).

    Its Dense, EinsumDense and attention sublayers are counted token-wise: each once, at every
    position of the composite's input, as in a transformer block (self-attention over the
    input's positions). Other sublayers with weights are named in the note, not counted."""
    name = type(layer).__name__
    count.note(f"{name} could not be run symbolically: its sublayers counted token-wise")
    positions = count.positions(input_shape)
    total = 0
    for sublayer in layouts.sublayers(layer):
        sublayer = groups_lib.unwrap(sublayer)
        if isinstance(sublayer, layers.MultiHeadAttention):
            total += _attention_at(count, sublayer, positions, positions, positions)
        elif isinstance(sublayer, layers.Dense):
            total += positions * count.kernels(sublayer.kernel)
        elif isinstance(sublayer, layers.EinsumDense):
            total += positions * count.size_of(sublayer.kernel)
        elif isinstance(sublayer, _NO_MACS) or not sublayer.weights:
            continue
        elif layouts.sublayers(sublayer):
            total += _sublayer_macs(count, sublayer, input_shape)
        else:
            count.note(f"{type(sublayer).__name__} in {name}: MACs not counted")
    return total


def _call_macs(count, call):
    if not call.is_layer:
        return _operation_macs(count, call)
    return _layer_macs(count, groups_lib.unwrap(call.operation), call)


def call_macs(call, size_of=_size):
    """MACs of one call of a traced graph (a `keras_prune.graph.tracing.Call`), and a note
    ("" or what the count assumed).

    `size_of(variable)` gives a kernel's element count: the real one by default, or the one it
    would have after removing channels (how `kp.prune_channels` predicts MACs).

    Example:

    ```python
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, padding="same")])
    call = kp.graph.trace(model).calls[0]
    kp.reporting.macs.call_macs(call)  # (32*32*3*3*3*8, "") = (221184, "")
    ```
    """
    count = _Count(size_of)
    macs = _call_macs(count, call)
    return int(macs), "; ".join(count.notes)


def _weights(layer):
    return groups_lib.unwrap(layer).weights


def layer_costs(model, size_of=_size):
    """Per-layer `LayerCost`s of a built Sequential or Functional model, in call order
    (operations that are not layers appear only if they do multiply-adds).

    Example:

    ```python
    for cost in kp.reporting.macs.layer_costs(model):
        print(cost.name, cost.params, cost.macs, cost.note)
    ```
    """
    validation.check_model("model", model)
    validation.check_callable("size_of", size_of)
    costs = {}
    for call in tracing.trace(model).calls:
        macs, note = call_macs(call, size_of)
        operation = call.operation
        if id(operation) not in costs:
            if not call.is_layer and macs == 0:
                continue
            weights = _weights(operation) if call.is_layer else []
            kind = type(groups_lib.unwrap(operation)).__name__
            costs[id(operation)] = LayerCost(
                operation.name,
                kind,
                params=sum(size_of(weight) for weight in weights),
                bytes=sum(
                    size_of(weight)
                    * np.dtype(keras.backend.standardize_dtype(weight.dtype)).itemsize
                    for weight in weights
                ),
            )
        cost = costs[id(operation)]
        cost.macs += macs
        if note and note not in cost.note:
            cost.note = f"{cost.note}; {note}" if cost.note else note
    return list(costs.values())


def count(model):
    """`{"params", "macs", "bytes"}` totals of `model`.

    Example:

    ```python
    kp.reporting.macs.count(keras.applications.MobileNetV2((96, 96, 3), weights=None))["macs"]
    ```
    """
    validation.check_model("model", model)
    return _totals(layer_costs(model))


def _totals(costs):
    return {
        "params": sum(cost.params for cost in costs),
        "macs": sum(cost.macs for cost in costs),
        "bytes": sum(cost.bytes for cost in costs),
    }


def _human(value):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(value)


@dataclasses.dataclass
class Comparison:
    """Side-by-side costs of two models, matched by layer name.

    Attributes:
        rows: `[(name, kind, LayerCost or None, LayerCost or None)]`.
        before, after: totals dicts of `count`.
    """

    rows: list
    before: dict
    after: dict

    def ratio(self, key):
        """How many times smaller `key` ("params", "macs", "bytes") got; inf if it reached 0."""
        return self.before[key] / self.after[key] if self.after[key] else float("inf")

    def __str__(self):
        header = f"{'layer':<32} {'kind':<20} {'params':>17} {'MACs':>19}"
        lines = [header, "-" * len(header)]
        for name, kind, first, second in self.rows:
            if (
                first is not None
                and second is not None
                and (first.params == second.params and first.macs == second.macs == 0)
            ):
                continue
            params = f"{_fmt(first, 'params')} -> {_fmt(second, 'params')}"
            macs = f"{_fmt(first, 'macs')} -> {_fmt(second, 'macs')}"
            lines.append(f"{name[:32]:<32} {kind[:20]:<20} {params:>17} {macs:>19}")
        lines.append("-" * len(header))
        for key, label in (("params", "params"), ("macs", "MACs"), ("bytes", "size (bytes)")):
            lines.append(
                f"{label:<14} {_human(self.before[key]):>9} -> {_human(self.after[key]):>9}"
                f"   ({self.ratio(key):.2f}x smaller)"
            )
        notes = sorted(
            {cost.note for _, _, *pair in self.rows for cost in pair if cost and cost.note}
        )
        lines.extend(f"note: {note}" for note in notes)
        return "\n".join(lines)


def _fmt(cost, key):
    return "-" if cost is None else _human(getattr(cost, key))


def compare(model_a, model_b):
    """Per-layer params and MACs of `model_a` (before) against `model_b` (after).

    Returns a `Comparison`; `print` it for a table with totals (params, MACs, size).

    Example:

    ```python
    small = kp.prune_channels(model, sparsity=0.5)
    print(kp.reporting.compare(model, small))
    ```
    """
    validation.check_model("model_a", model_a)
    validation.check_model("model_b", model_b)
    first, second = layer_costs(model_a), layer_costs(model_b)
    by_name = {cost.name: cost for cost in second}
    rows = []
    for cost in first:
        rows.append((cost.name, cost.kind, cost, by_name.pop(cost.name, None)))
    for cost in by_name.values():
        rows.append((cost.name, cost.kind, None, cost))
    return Comparison(rows, _totals(first), _totals(second))
