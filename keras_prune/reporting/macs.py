"""Parameters and multiply-accumulates (MACs) per layer, and a before / after comparison.

MACs count the multiply-accumulates of one inference on one example in the layers that do
them: Conv1D/2D/3D and their Transpose variants, DepthwiseConv, SeparableConv and Dense
(`output positions x kernel size`). Element-wise layers (BatchNormalization, which the TFLite
converter folds, activations, adds, pooling) count zero MACs. Nested models are counted layer
by layer; layers called several times count their MACs once per call and their parameters once.
"""

import dataclasses

import keras
import numpy as np

from keras_prune.graph import groups as groups_lib

layers = keras.layers
_CONV = (layers.Conv1D, layers.Conv2D, layers.Conv3D)


@dataclasses.dataclass
class LayerCost:
    """Cost of one layer.

    Attributes:
        name: layer name.
        kind: layer class name.
        params: number of weights (trainable and not).
        macs: multiply-accumulates per example, summed over the layer's calls.
        bytes: weight storage in the layer's dtypes.
    """

    name: str
    kind: str
    params: int = 0
    macs: int = 0
    bytes: int = 0


def _size(variable):
    return int(np.prod(variable.shape, dtype=np.int64))


def _positions(shape):
    """Product of the spatial dims of a (batch, ..., channels) shape; None if unknown."""
    dims = shape[1:-1]
    if any(dim is None for dim in dims):
        return None
    return int(np.prod(dims, dtype=np.int64))


def call_macs(layer, input_shape, output_shape, size_of=_size):
    """MACs of one call of `layer` given its input / output shapes (batch first).

    `size_of(variable)` gives a kernel's element count: the real one by default, or the one it
    would have after removing channels (how `kp.prune_channels` predicts MACs).

    Example:

    ```python
    conv = keras.layers.Conv2D(8, 3, padding="same")
    conv.build((None, 32, 32, 3))
    kp.macs.call_macs(conv, (None, 32, 32, 3), (None, 32, 32, 8))  # 32*32*3*3*3*8 = 221184
    ```
    """
    layer = groups_lib._inner(layer)
    if isinstance(layer, (layers.SeparableConv1D, layers.SeparableConv2D)):
        kernels = [layer.depthwise_kernel, layer.pointwise_kernel]
        positions = _positions(output_shape)
    elif isinstance(
        layer, (layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
    ):
        kernels, positions = [layer.kernel], _positions(input_shape)
    elif isinstance(layer, _CONV + (layers.DepthwiseConv1D, layers.DepthwiseConv2D, layers.Dense)):
        kernels, positions = [layer.kernel], _positions(output_shape)
    else:
        return 0
    if positions is None:
        return 0
    return positions * sum(size_of(kernel) for kernel in kernels)


def _calls(model):
    """`[(layer, input_shape, output_shape)]` for every call in `model`, nested models inlined."""
    _, steps = groups_lib._trace(model)
    calls = []
    for step in steps:
        if isinstance(step, groups_lib._Call) and step.node.input_tensors and step.node.outputs:
            calls.append(
                (
                    step.layer,
                    tuple(step.node.input_tensors[0].shape),
                    tuple(step.node.outputs[0].shape),
                )
            )
    return calls


def layer_costs(model, size_of=_size):
    """Per-layer `LayerCost`s of a built Sequential or Functional model, in call order.

    Example:

    ```python
    for cost in kp.macs.layer_costs(model):
        print(cost.name, cost.params, cost.macs)
    ```
    """
    costs = {}
    for layer, input_shape, output_shape in _calls(model):
        if id(layer) not in costs:
            weights = layer.weights
            costs[id(layer)] = LayerCost(
                layer.name,
                type(groups_lib._inner(layer)).__name__,
                params=sum(size_of(weight) for weight in weights),
                bytes=sum(
                    size_of(weight)
                    * np.dtype(keras.backend.standardize_dtype(weight.dtype)).itemsize
                    for weight in weights
                ),
            )
        costs[id(layer)].macs += call_macs(layer, input_shape, output_shape, size_of)
    return list(costs.values())


def count(model):
    """`{"params", "macs", "bytes"}` totals of `model`.

    Example:

    ```python
    kp.macs.count(keras.applications.MobileNetV2((96, 96, 3), weights=None))["macs"]
    ```
    """
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
        return "\n".join(lines)


def _fmt(cost, key):
    return "-" if cost is None else _human(getattr(cost, key))


def compare(model_a, model_b):
    """Per-layer params and MACs of `model_a` (before) against `model_b` (after).

    Returns a `Comparison`; `print` it for a table with totals (params, MACs, size).

    Example:

    ```python
    small = kp.prune_channels(model, fraction=0.5)
    print(kp.macs.compare(model, small))
    ```
    """
    first, second = layer_costs(model_a), layer_costs(model_b)
    by_name = {cost.name: cost for cost in second}
    rows = []
    for cost in first:
        rows.append((cost.name, cost.kind, cost, by_name.pop(cost.name, None)))
    for cost in by_name.values():
        rows.append((cost.name, cost.kind, None, cost))
    return Comparison(rows, _totals(first), _totals(second))
