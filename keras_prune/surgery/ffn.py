"""Feed-forward neurons of transformer blocks: score them, mask them while fine-tuning, and
remove them with `kp.shrink`.

A feed-forward network is a pair of Dense layers: the intermediate one creates the neurons
(`a = act(x W1 + b1)`), the output one consumes them (`y = a W2 + b2`). Neuron `j` owns column
`j` of `W1`, entry `j` of `b1` and row `j` of `W2`.

- In a Sequential or Functional model the pair is a channel group (`kp.graph.channel_groups`)
  created by one Dense and read only by Dense layers. `mask_neurons` wraps the intermediate Dense at
  channel granularity and masks the neuron's column and bias, so the neuron outputs exactly
  `act(0) = 0` (pairs whose activation does not map 0 to 0 are left out, with the reason), and
  `kp.shrink` removes it as it removes any zero channel.
- Inside a keras-hub `TransformerEncoder` / `TransformerDecoder` (a layer whose config has
  `intermediate_dim` and whose Dense sublayers are named `feedforward_intermediate_dense` and
  `feedforward_output_dense`, as keras-hub names them), `mask_neurons` masks the neuron's row of
  `W2` (and column of `W1`): it then contributes exactly nothing whatever its activation, and
  `kp.shrink` rebuilds the block with a smaller `intermediate_dim` and the weights sliced.

Neuron importance (`neuron_importance`): `criterion` is one of `CRITERIA`, the structure
criteria of `kp.surgery.heads` (a closed set that ranks a neuron as a whole; the per-weight
names of `kp.criteria` are refused with the reason):
- "activation" (default): `||a_j||_2 * ||W2[j, :]||_2`, the RMS of the neuron's activation over
  the calibration tokens times the norm of its output weights (Wanda's score, per neuron).
- "taylor": `|sum_e W2[j, e] * dL/dW2[j, e]|`, the first-order loss change when the neuron is
  scaled away (`kp.criteria`'s "taylor" summed over the neuron before the absolute value).
"""

import dataclasses

import keras
import numpy as np

from keras_prune.core import granularity as granularity_lib
from keras_prune.core import validation
from keras_prune.engine.engine import MaskEngine
from keras_prune.graph import groups as groups_lib
from keras_prune.graph import tracing
from keras_prune.layers import layouts
from keras_prune.layers.wrapper import PruneWrapper
from keras_prune.posttraining import calibration as calibration_lib
from keras_prune.posttraining.capture import recording_inputs
from keras_prune.pruning.prune_strip import layer_filter
from keras_prune.surgery import heads as heads_lib

__all__ = [
    "CRITERIA",
    "FeedForward",
    "NeuronReport",
    "feed_forwards",
    "mask_neurons",
    "neuron_importance",
]

layers = keras.layers

INTERMEDIATE_NAME = "feedforward_intermediate_dense"
OUTPUT_NAME = "feedforward_output_dense"
CRITERIA = heads_lib.CRITERIA
"""The structure criteria of `kp.surgery.heads`: the names `criterion` takes here."""


def _numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def _unwrap(layer):
    return layer.layer if isinstance(layer, PruneWrapper) else layer


@dataclasses.dataclass(eq=False)
class FeedForward:
    """One feed-forward Dense pair.

    Attributes:
        key: the intermediate Dense's path, unique in the model.
        intermediate: the Dense creating the neurons.
        outputs: the Dense layer(s) consuming them.
        holder: the model-level layer to wrap: the intermediate Dense itself, or the block
            holding the pair.
        in_block: True for a pair inside a composite layer (a keras-hub block).
    """

    key: str
    intermediate: object
    outputs: list
    holder: object
    in_block: bool

    @property
    def size(self):
        return int(self.intermediate.kernel.shape[-1])


def maps_zero_to_zero(activation):
    """Whether `activation(0) == 0` (ReLU, GELU, swish do; sigmoid does not)."""
    value = _numpy(activation(keras.ops.zeros((1,))))
    return bool(np.all(value == 0))


def _block_pair(layer):
    """`(intermediate, output)` Dense sublayers of a keras-hub style block, or None."""
    if "intermediate_dim" not in layer.get_config():
        return None
    named = {}

    def visit(current):
        for child in layouts.sublayers(current):
            child = _unwrap(child)
            if isinstance(child, layers.Dense) and child.name in (INTERMEDIATE_NAME, OUTPUT_NAME):
                named[child.name] = child
            visit(child)

    visit(layer)
    if set(named) != {INTERMEDIATE_NAME, OUTPUT_NAME}:
        return None
    return named[INTERMEDIATE_NAME], named[OUTPUT_NAME]


def _graph_pairs(model, skipped):
    found = []
    for group in groups_lib.channel_groups(model):
        if not group.prunable:
            continue
        creators = {id(m.layer): m.layer for m in group.members if m.role == "output"}
        readers = {id(m.layer): m.layer for m in group.members if m.role == "input"}
        others = [m for m in group.members if m.role not in ("output", "input")]
        if len(creators) != 1 or not readers or others:
            continue
        creator = _unwrap(next(iter(creators.values())))
        consumers = [_unwrap(layer) for layer in readers.values()]
        if not isinstance(creator, layers.Dense) or not all(
            isinstance(c, layers.Dense) for c in consumers
        ):
            continue
        if any(m.offset or m.repeat != 1 or m.stride != group.size for m in group.members):
            continue
        if not maps_zero_to_zero(creator.activation):
            skipped[creator.name] = (
                f"activation {getattr(creator.activation, '__name__', creator.activation)} does "
                "not map 0 to 0, so a masked neuron would not output zero"
            )
            continue
        found.append(FeedForward(heads_lib.layer_key(creator), creator, consumers, creator, False))
    return found


def feed_forwards(model, skipped=None):
    """Every feed-forward Dense pair of `model` whose neurons can be masked and removed.

    Args:
        model: a built model.
        skipped: an optional dict filled with `{layer name: reason}` for pairs left out.

    Example:

    ```python
    [ffn.key for ffn in kp.surgery.ffn.feed_forwards(model)]   # ['ffn_in_0', 'ffn_in_1']
    ```
    """
    skipped = {} if skipped is None else skipped
    found = []
    if tracing.is_graph_model(model):
        found += _graph_pairs(model, skipped)
        holders = [_unwrap(layer) for layer in tracing.trace(model).layers()]
    else:
        holders = [_unwrap(layer) for layer in layouts.sublayers(model)]
    for holder in holders:
        if type(holder).__module__.startswith("keras."):
            continue
        pair = _block_pair(holder)
        if pair is not None:
            found.append(
                FeedForward(heads_lib.layer_key(pair[0]), pair[0], [pair[1]], holder, in_block=True)
            )
    return found


def _select(found, filters):
    selected = layer_filter(filters)
    return [ffn for ffn in found if selected(ffn.intermediate) or selected(ffn.holder)]


def neuron_importance(
    model, calibration_data, criterion="activation", loss=None, filters=None, batch_size=32
):
    """Importance of every feed-forward neuron: `{intermediate Dense key: scores}`.

    Args:
        model: a built model.
        calibration_data: x (or an iterable of batches) for "activation"; `(x, y)` for
            "taylor".
        criterion: "activation" or "taylor" (`CRITERIA`, see the module docstring); the
            per-weight names of `kp.criteria` are refused with a ValueError.
        loss: the loss for "taylor" (default: the compiled model's).
        filters: which pairs: None (all), a regex, a list of regexes or a callable, matched
            against the intermediate Dense or the block holding it.
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
    scores = kp.surgery.ffn.neuron_importance(lm, tokens)   # {"ffn_in": 32 scores}
    ```
    """
    heads_lib.check_criterion(criterion, "kp.surgery.ffn.neuron_importance", unit="neuron")
    found = _select(feed_forwards(model), filters)
    if not found:
        raise ValueError(
            f"kp.surgery.ffn found no feed-forward Dense pair in model {model.name!r}."
        )
    if criterion == "taylor":
        return _taylor_scores(model, found, calibration_data, loss, batch_size)
    calibration = calibration_lib.calibration_batches(
        calibration_data, model, batch_size, caller="kp.surgery.ffn.neuron_importance"
    )
    squares = {ffn.key: np.zeros(ffn.size) for ffn in found}
    counts = dict.fromkeys(squares, 0)
    # Every consumer of a pair reads the same activations: watch the first one.
    readers = {}
    for ffn in found:
        readers.setdefault(id(ffn.outputs[0]), (ffn.outputs[0], []))[1].append(ffn)

    def record(dense, inputs):
        values = _numpy(inputs).astype(np.float64)
        values = values.reshape(-1, values.shape[-1])
        for ffn in readers[id(dense)][1]:
            squares[ffn.key] += np.square(values).sum(0)
            counts[ffn.key] += values.shape[0]

    with recording_inputs([dense for dense, _ in readers.values()], record):
        for batch in calibration.batches:
            model(batch, training=False)
    scores = {}
    for ffn in found:
        rms = np.sqrt(squares[ffn.key] / max(counts[ffn.key], 1))
        out_norm = np.sqrt(sum(np.square(_numpy(d.kernel)).sum(1) for d in ffn.outputs))
        scores[ffn.key] = rms * out_norm
    return scores


def _taylor_scores(model, found, calibration_data, loss, batch_size):
    if not (isinstance(calibration_data, tuple) and len(calibration_data) >= 2):
        raise ValueError(
            "criterion='taylor' ranks by the loss gradient: pass `calibration_data=(x, y)`."
        )
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError("criterion='taylor' needs a loss: compile the model or pass `loss=`.")
    gradients = heads_lib.mean_loss_gradients(model, calibration_data[:2], loss, batch_size)
    scores = {}
    for ffn in found:
        total = np.zeros(ffn.size)
        for dense in ffn.outputs:
            kernel = _numpy(dense.kernel).astype(np.float64)
            total += (kernel * gradients[id(dense.kernel)]).sum(1)
        scores[ffn.key] = np.abs(total)
    return scores


@dataclasses.dataclass
class NeuronReport:
    """What `mask_neurons` masked.

    Attributes:
        layers: one row per pair: `{"key", "neurons", "removed"}` (removed: indices).
        skipped: `{layer name: reason}` for pairs left out.
    """

    layers: list = dataclasses.field(default_factory=list)
    skipped: dict = dataclasses.field(default_factory=dict)

    def __str__(self):
        before = sum(row["neurons"] for row in self.layers)
        after = before - sum(len(row["removed"]) for row in self.layers)
        lines = [f"Feed-forward neurons: {before} -> {after}"]
        for row in self.layers:
            lines.append(f"  {row['key']}: {len(row['removed'])} of {row['neurons']} masked")
        for name, reason in self.skipped.items():
            lines.append(f"  left {name}: {reason}")
        return "\n".join(lines)


def _install_neuron_masks(model, ffn, neurons):
    engine = MaskEngine(model)
    if ffn.in_block:
        targets = [(ffn.outputs[0].kernel, 0, None), (ffn.intermediate.kernel, 1, None)]
    else:
        targets = [(ffn.intermediate.kernel, 1, 0)]
    edits = {}
    for variable, axis, bias_axis in targets:
        wrapper, index = heads_lib.wrapper_holding(model, variable)
        if wrapper is None:
            raise ValueError(
                f"Weight {variable.path!r} of feed-forward {ffn.key!r} is not pruned by any "
                "kp.PruneWrapper, so its neurons cannot be masked."
            )
        masks = edits.setdefault(id(wrapper), (wrapper, heads_lib.current_masks(wrapper)))[1]
        moved = np.moveaxis(masks[index][0], axis, 0)
        moved[neurons] = 0.0
        masks[index][0] = np.moveaxis(moved, 0, axis)
        if bias_axis is not None:
            if masks[index][1] is None:
                raise ValueError(
                    f"Layer {wrapper.name!r} is wrapped without bias masks, so its neurons' "
                    "biases cannot be masked: wrap it at channel granularity (or pass the plain "
                    "model to kp.surgery.ffn.mask_neurons)."
                )
            masks[index][1][neurons] = 0.0
    for wrapper, masks in edits.values():
        engine.install(wrapper, [tuple(pair) for pair in masks], float(wrapper.sparsity))
    engine.attach()


def mask_neurons(
    model,
    sparsity=None,
    calibration_data=None,
    *,
    neurons=None,
    criterion="activation",
    loss=None,
    filters=None,
    batch_size=32,
):
    """Mask the least important feed-forward neurons; `kp.shrink` then removes them.

    Args:
        model: a built model; copied if it holds no wrappers (see `kp.surgery.heads.mask_heads`).
        sparsity: fraction of each pair's neurons to mask, in [0, 1) (one neuron always stays).
        calibration_data: data for `criterion` (see `neuron_importance`).
        neurons: instead of `sparsity`, `{intermediate Dense key or name: [indices]}`.
        criterion: "activation" or "taylor" (see `neuron_importance`).
        loss: the loss for "taylor".
        filters: which pairs (see `neuron_importance`).
        batch_size: examples per batch.

    Returns:
        The masked model, with `neuron_report` (a `NeuronReport`).

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
    masked = kp.surgery.ffn.mask_neurons(lm, 0.5, tokens)
    small = kp.shrink(masked)       # smaller intermediate Dense layers
    ```
    """
    if (sparsity is None) == (neurons is None):
        raise ValueError(
            "kp.surgery.ffn.mask_neurons takes either `sparsity` or `neurons` "
            "({intermediate Dense key: "
            f"[indices]}}). Received: sparsity={sparsity!r}, neurons={neurons!r}"
        )
    if sparsity is not None:
        validation.check_sparsity("sparsity", sparsity)
    heads_lib.check_criterion(criterion, "kp.surgery.ffn.mask_neurons", unit="neuron")
    report = NeuronReport()
    found = _select(feed_forwards(model, report.skipped), filters)
    if not found:
        raise ValueError(
            f"kp.surgery.ffn found no feed-forward Dense pair in model {model.name!r}.\n{report}"
        )
    masked = heads_lib.prunable_copy(
        model,
        [ffn.holder for ffn in found if not ffn.in_block],
        sparsity or 0.0,
        "kp.surgery.ffn.mask_neurons",
        granularity=granularity_lib.Channel(),
    )
    masked = heads_lib.prunable_copy(
        masked, [ffn.holder for ffn in found if ffn.in_block], sparsity or 0.0, "kp.surgery.ffn"
    )
    by_key = {ffn.key: ffn for ffn in _select(feed_forwards(masked), filters)}
    if neurons is not None:
        names = {ffn.intermediate.name: key for key, ffn in by_key.items()}
        removed = {}
        for name, indices in dict(neurons).items():
            key = name if name in by_key else names.get(name)
            if key is None:
                raise ValueError(
                    f"`neurons` names {name!r}, which is not a feed-forward intermediate Dense. "
                    f"Pairs: {sorted(by_key)}"
                )
            indices = sorted({int(i) for i in indices})
            size = by_key[key].size
            if any(i < 0 or i >= size for i in indices) or len(indices) >= size:
                raise ValueError(
                    f"`neurons[{name!r}]` must list distinct neurons in [0, {size}) and leave at "
                    f"least one. Received: {neurons[name]!r}"
                )
            removed[key] = indices
    else:
        scores = neuron_importance(masked, calibration_data, criterion, loss, filters, batch_size)
        removed = {}
        for key, values in scores.items():
            count = min(int(round(len(values) * sparsity)), len(values) - 1)
            removed[key] = sorted(int(i) for i in np.argsort(values, kind="stable")[:count])
    for key, ffn in by_key.items():
        chosen = removed.get(key, [])
        if chosen:
            _install_neuron_masks(masked, ffn, chosen)
        report.layers.append({"key": key, "neurons": ffn.size, "removed": chosen})
    masked.neuron_report = report
    return masked


def shrink_plan(graph):
    """How `kp.shrink` removes zero feed-forward neurons inside keras-hub style blocks of
    `graph` (pairs in the graph itself are channel groups, which shrink handles already).

    Returns:
        `(slices, configs)`: `{id(variable): {axis: kept indices}}` and `{id(layer): config
        changes}`.
    """
    slices, configs = {}, {}
    for call in graph.calls:
        if not call.is_layer:
            continue
        layer = _unwrap(call.operation)
        if id(layer) in configs or type(layer).__module__.startswith("keras."):
            continue
        pair = _block_pair(layer)
        if pair is None:
            continue
        intermediate, output = pair
        rows = _numpy(output.kernel)
        kept = np.flatnonzero(np.any(rows != 0, axis=1))
        if len(kept) == rows.shape[0]:
            continue
        if len(kept) == 0:
            kept = np.array([0])
        slices[id(intermediate.kernel)] = {1: kept}
        if intermediate.bias is not None:
            slices[id(intermediate.bias)] = {0: kept}
        slices[id(output.kernel)] = {0: kept}
        configs[id(layer)] = {"intermediate_dim": int(len(kept))}
    return slices, configs
