"""Depth pruning ("layer pruning" in the survey's terms): score whole residual blocks by how much
the model's output changes without them, and remove the least important; the model gets
shallower and `kp.shrink` rebuilds it without them.

A residual block is found in the model's graph (`keras_prune.graph.tracing.trace`) in one of
two forms:

- "branch": a merge `x + f(x)` (an `Add` layer or `x + h`) whose one input `x` feeds the other
  through a branch of calls used by nothing else: a ResNet block, or the attention or the
  feed-forward half of a transformer layer written with Keras layers. Removing it leaves
  `x`: the merge passes its skip input through and the branch goes.
- "layer": one call of a composite layer whose output has the shape of its first input and
  which holds at least two prunable weights: a keras-hub `TransformerEncoder` /
  `TransformerDecoder`, a custom block layer. Removing it passes its input through.

A transformer layer written with Keras layers is two branch blocks (attention, then
feed-forward); `span=2` scores and removes them as one block (the blocks are grouped in
consecutive, non-overlapping runs of `span`, starting at the first).

Scores (`block_importance`): the relative squared change of the model's outputs on the
calibration data, `sum ||y_without - y||^2 / sum ||y||^2`, with each block removed alone.
"""

import dataclasses

import keras
import numpy as np

from keras_prune.core import validation
from keras_prune.graph import tracing
from keras_prune.layers import layouts
from keras_prune.layers.wrapper import PruneWrapper
from keras_prune.posttraining import calibration as calibration_lib
from keras_prune.posttraining.replay import run_graph

__all__ = [
    "DepthReport",
    "ResidualBlock",
    "block_importance",
    "prune_depth",
    "residual_blocks",
]

layers = keras.layers

KINDS = ("branch", "layer")


def _unwrap(layer):
    return layer.layer if isinstance(layer, PruneWrapper) else layer


@dataclasses.dataclass(eq=False)
class ResidualBlock:
    """A residual block of a model: what is bypassed to remove it.

    Attributes:
        name: the merge's name (branch blocks) or the layer's name, joined with "+" for blocks
            grouped by `span`.
        kind: "branch" or "layer" (see the module docstring); "+"-joined when grouped.
        layers: names of the layers removed with the block.
        bypass: `{id(call): input position}`: calls whose output becomes that input.
        parameters: number of weights removed with the block.
    """

    name: str
    kind: str
    layers: list
    bypass: dict
    parameters: int = 0

    def __repr__(self):
        return f"ResidualBlock({self.name!r}, {self.kind}, {self.parameters:,} parameters)"


def _is_merge(call):
    """The two inputs of an add of two same-shaped tensors, or None."""
    operation = call.operation
    if isinstance(operation, layers.Layer):
        if not isinstance(operation, layers.Add) or len(call.inputs) != 2:
            return None
    elif not (
        type(operation).__name__ == "Add"
        and len(call.args) == 2
        and not call.kwargs
        and all(isinstance(arg, keras.KerasTensor) for arg in call.args)
    ):
        return None
    shape = tuple(call.outputs[0].shape)
    if any(tuple(tensor.shape) != shape for tensor in call.inputs):
        return None
    return call.inputs


def _ancestors(graph, tensor):
    """The calls `tensor` depends on, and the tensors on the way (ids)."""
    calls, tensors, stack = set(), set(), [tensor]
    while stack:
        current = stack.pop()
        if id(current) in tensors:
            continue
        tensors.add(id(current))
        producer = graph.producer(current)
        if producer is not None and id(producer) not in calls:
            calls.add(id(producer))
            stack.extend(producer.inputs)
    return calls, tensors


def _descendants(graph, tensor):
    calls, stack, seen = set(), [tensor], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        for consumer in graph.consumers(current):
            if id(consumer) not in calls:
                calls.add(id(consumer))
                stack.extend(consumer.outputs)
    return calls


def _count(layer):
    return int(sum(int(np.prod(weight.shape)) for weight in layer.weights))


def _branch_block(graph, call, outputs):
    inputs = _is_merge(call)
    if inputs is None:
        return None
    for skip_position in (0, 1):
        skip, branch = inputs[skip_position], inputs[1 - skip_position]
        above, above_tensors = _ancestors(graph, branch)
        if id(skip) not in above_tensors or skip is branch:
            continue
        inside = above & _descendants(graph, skip)
        branch_calls = [c for c in graph.calls if id(c) in inside]
        if not any(c.is_layer and _unwrap(c.operation).weights for c in branch_calls):
            continue
        contained = True
        for member in branch_calls:
            for tensor in member.outputs:
                if id(tensor) in outputs or any(
                    id(reader) not in inside and reader is not call
                    for reader in graph.consumers(tensor)
                ):
                    contained = False
        if not contained:
            continue
        seen, names, parameters = set(), [], 0
        for member in branch_calls:
            if member.is_layer and id(member.operation) not in seen:
                seen.add(id(member.operation))
                names.append(member.name)
                parameters += _count(member.operation)
        return ResidualBlock(call.name, "branch", names, {id(call): skip_position}, parameters)
    return None


def _layer_block(call):
    if not call.is_layer or len(call.outputs) != 1 or not call.args:
        return None
    layer = _unwrap(call.operation)
    if type(layer).__module__.startswith("keras.") or isinstance(layer, keras.Model):
        return None
    first = call.args[0]
    if not isinstance(first, keras.KerasTensor) or first is not call.inputs[0]:
        return None
    if tuple(first.shape) != tuple(call.outputs[0].shape):
        return None
    if len(layouts.prunable_weights(layer)) < 2:
        return None
    return ResidualBlock(call.name, "layer", [call.name], {id(call): 0}, _count(layer))


def _join(blocks):
    bypass, names = {}, []
    for block in blocks:
        bypass.update(block.bypass)
        names += block.layers
    return ResidualBlock(
        "+".join(block.name for block in blocks),
        "+".join(block.kind for block in blocks),
        names,
        bypass,
        sum(block.parameters for block in blocks),
    )


def residual_blocks(model, span=1):
    """The residual blocks of a Sequential or Functional model, in graph order.

    Args:
        model: a built Sequential or Functional model (keras-hub backbones included; wrapped
            or not).
        span: group this many consecutive blocks into one (2 for transformer layers written
            with Keras layers: attention + feed-forward).

    Example:

    ```python
    for block in kp.surgery.depth.residual_blocks(model, span=2):
        print(block.name, block.layers)
    ```
    """
    validation.check_int("span", span, minimum=1)
    graph = tracing.trace(model)
    outputs = {id(tensor) for tensor in graph.outputs}
    found, used = [], set()
    for call in graph.calls:
        block = _branch_block(graph, call, outputs) or _layer_block(call)
        if block is None or id(call) in used:
            continue
        used.add(id(call))
        found.append(block)
    if span == 1:
        return found
    return [_join(found[start : start + span]) for start in range(0, len(found), span)]


def _relative_change(reference, changed):
    total = difference = 0.0
    for dense_batch, changed_batch in zip(reference, changed, strict=True):
        for dense, other in zip(dense_batch, changed_batch, strict=True):
            dense = np.asarray(keras.ops.convert_to_numpy(dense))
            if not np.issubdtype(dense.dtype, np.floating):
                continue
            other = np.asarray(keras.ops.convert_to_numpy(other), np.float64)
            dense = dense.astype(np.float64)
            total += float(np.square(dense).sum())
            difference += float(np.square(other - dense).sum())
    return difference / total if total > 0 else difference


def block_importance(model, calibration_data, blocks=None, span=1, batch_size=32):
    """How much the model's output changes without each block: `{block name: score}`.

    Args:
        model: a built Sequential or Functional model.
        calibration_data: x, `(x, y)` or an iterable of batches.
        blocks: the `ResidualBlock`s to score (default: `residual_blocks(model, span)`).
        span: see `residual_blocks`.
        batch_size: examples per batch.

    Example:

    ```python
    # a one-block transformer on 6 tokens of width 16, and 32 calibration sequences
    inputs = keras.Input((6, 16))
    h = keras.layers.MultiHeadAttention(4, 4, name="mha")(inputs, inputs)
    h = keras.layers.Add(name="res_a")([inputs, h])
    f = keras.layers.Dense(32, activation="relu", name="ffn_in")(h)
    h = keras.layers.Add(name="res_f")([h, keras.layers.Dense(16, name="ffn_out")(f)])
    lm = keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))
    tokens = np.random.default_rng(0).normal(size=(32, 6, 16)).astype("float32")
    scores = kp.surgery.depth.block_importance(lm, tokens)   # {"res_a": ..., "res_f": ...}
    least = min(scores, key=scores.get)
    ```
    """
    blocks = residual_blocks(model, span) if blocks is None else list(blocks)
    calibration = calibration_lib.calibration_batches(
        calibration_data, model, batch_size, caller="kp.surgery.depth.block_importance"
    )
    graph = tracing.trace(model)
    batches = [calibration.flat(i) for i in range(len(calibration.batches))]
    reference = run_graph(graph, batches)
    return {
        block.name: _relative_change(reference, run_graph(graph, batches, block.bypass))
        for block in blocks
    }


def find_blocks(model, names):
    """The blocks of `model` named in `names` (`ResidualBlock`s or their names; grouped names
    "a+b" allowed)."""
    available = {block.name: block for block in residual_blocks(model)}
    chosen = []
    for item in names:
        name = item.name if isinstance(item, ResidualBlock) else item
        parts = name.split("+") if isinstance(name, str) else [name]
        missing = [part for part in parts if part not in available]
        if missing:
            raise ValueError(
                f"Model {model.name!r} has no residual block named {missing[0]!r}. Its blocks: "
                f"{sorted(available)}"
            )
        chosen.append(_join([available[part] for part in parts]))
    return chosen


@dataclasses.dataclass
class DepthReport:
    """What `prune_depth` measured and removed.

    Attributes:
        scores: `{block name: relative output change without it}`.
        removed: names of the blocks removed.
        parameters_removed: weights removed with them.
    """

    scores: dict
    removed: list
    parameters_removed: int

    def __str__(self):
        lines = [
            f"Removed {len(self.removed)} of {len(self.scores)} residual blocks "
            f"({self.parameters_removed:,} parameters): {', '.join(self.removed) or '-'}"
        ]
        for name, score in self.scores.items():
            mark = "removed" if name in self.removed else ""
            lines.append(f"  {name}: output change {score:.3e} {mark}")
        return "\n".join(lines)


def prune_depth(model, count, calibration_data, span=1, blocks=None, batch_size=32):
    """Remove the `count` residual blocks whose removal changes the output least.

    Args:
        model: a built Sequential or Functional model (masked heads, neurons or channels are
            removed as well: the result goes through `kp.shrink`).
        count: how many blocks to remove (at least one block stays).
        calibration_data: data for `block_importance`.
        span: see `residual_blocks`.
        blocks: candidate blocks (default: all of `residual_blocks(model, span)`).
        batch_size: examples per batch.

    Returns:
        The shallower plain Keras model from `kp.shrink(model, remove_blocks=...)`, with
        `depth_report` (a `DepthReport`) and `shrink_report`.

    Example:

    ```python
    # a one-block transformer on 6 tokens of width 16, and 32 calibration sequences
    inputs = keras.Input((6, 16))
    h = keras.layers.MultiHeadAttention(4, 4, name="mha")(inputs, inputs)
    h = keras.layers.Add(name="res_a")([inputs, h])
    f = keras.layers.Dense(32, activation="relu", name="ffn_in")(h)
    h = keras.layers.Add(name="res_f")([h, keras.layers.Dense(16, name="ffn_out")(f)])
    lm = keras.Model(inputs, keras.layers.Dense(10, name="logits")(h))
    tokens = np.random.default_rng(0).normal(size=(32, 6, 16)).astype("float32")
    shallow = kp.surgery.depth.prune_depth(lm, 1, tokens)
    print(shallow.depth_report)
    ```
    """
    from keras_prune.surgery.shrink import shrink

    candidates = residual_blocks(model, span) if blocks is None else list(blocks)
    validation.check_int("count", count, minimum=0, maximum=max(len(candidates) - 1, 0))
    scores = block_importance(model, calibration_data, candidates, batch_size=batch_size)
    order = sorted(candidates, key=lambda block: scores[block.name])
    removed = order[:count]
    small = shrink(model, remove_blocks=[block.name for block in removed])
    small.depth_report = DepthReport(
        scores, [block.name for block in removed], sum(block.parameters for block in removed)
    )
    return small
