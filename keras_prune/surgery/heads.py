"""Attention heads: score them, mask them while fine-tuning, and remove them with `kp.shrink`.

A head of `keras.layers.MultiHeadAttention` (keras-hub's `CachedMultiHeadAttention` included)
owns a slice of each projection: `[:, h, :]` of the query, key and value kernels ([C, heads,
dim]) and biases, and the rows `[h]` of the output projection ([heads, dim, E]). The attention
output is `sum_h z_h W_o[h] + b_o`, so a head whose output-projection rows are zero contributes
exactly nothing, whatever its query, key and value compute. `mask_heads` therefore masks all
four slices (so the head is also pruned weight by weight) and `kp.shrink` removes every head
whose output rows are zero: it rebuilds the layer with fewer `num_heads` (same `key_dim`) and
the weights sliced, and the outputs equal the masked model's.

What is supported:
- `MultiHeadAttention` layers of a Sequential or Functional model: scoring, masking, removal.
- Attention inside a composite layer (keras-hub `TransformerEncoder` / `TransformerDecoder`, a
  custom block): scoring and masking. Removal is not: such a layer builds its attention from
  its own config, and keras-hub's blocks derive `key_dim = hidden_dim // num_heads`, so fewer
  heads of the same size cannot be expressed; `kp.shrink` keeps those heads (they compute zero)
  and says so in its report. Their feed-forward neurons can be removed (`kp.surgery.ffn`).

Head importance (`head_importance`): `criterion` is one of `CRITERIA`, a closed set of
structure criteria that rank a head as a whole (feed-forward neurons take the same names,
`kp.surgery.ffn`). They are not the per-weight criteria of `kp.criteria` (`kp.prune`,
`kp.prune_channels`), whose names are refused here with the reason:
- "activation" (default): the mean L2 norm of each head's contribution to the attention output,
  `||z_h W_o[h]||`, over the calibration tokens (z_h: the head's attention output).
- "taylor": `|sum W_o[h] * dL/dW_o[h]|`, the first-order change of the loss when the head is
  scaled away (Michel et al., 2019: scaling head h by a gate g_h is scaling W_o[h] by it); the
  structure form of `kp.criteria`'s "taylor" (`|w * mean g|`), summed over the head before the
  absolute value.
"""

import dataclasses

import keras
import numpy as np

from keras_prune.core import validation
from keras_prune.core.schedules import OneShotSparsity
from keras_prune.engine import gradients as gradients_lib
from keras_prune.engine.engine import MaskEngine
from keras_prune.graph import tracing
from keras_prune.layers import layouts
from keras_prune.layers.wrapper import PruneWrapper, find_wrappers
from keras_prune.posttraining import calibration as calibration_lib
from keras_prune.posttraining.capture import recording_inputs
from keras_prune.pruning.prune_strip import layer_filter, prune
from keras_prune.surgery.structure_criteria import CRITERIA, check_criterion

__all__ = [
    "CRITERIA",
    "AttentionLayer",
    "HeadReport",
    "attention_layers",
    "head_contributions",
    "head_importance",
    "mask_heads",
    "zero_heads",
]

layers = keras.layers
ALLOCATIONS = ("per_layer", "global")


def _numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def layer_key(layer):
    """A layer's path (unique in its model), or its name before it is built."""
    return getattr(layer, "path", None) or layer.name


def _unwrap(layer):
    return layer.layer if isinstance(layer, PruneWrapper) else layer


@dataclasses.dataclass(eq=False)
class AttentionLayer:
    """A `MultiHeadAttention` of a model and the model-level layer holding it.

    Attributes:
        key: the attention layer's path (unique in the model), e.g. "block_0/attention" or
            "transformer_layer_0/self_attention_layer".
        attention: the `MultiHeadAttention`.
        holder: the layer of the model's graph that is or contains it (unwrapped).
    """

    key: str
    attention: object
    holder: object

    @property
    def num_heads(self):
        return int(self.attention.num_heads)

    def projections(self):
        """`[(EinsumDense, head axis of its kernel, head axis of its bias or None)]` for every
        projection of the attention: query, key, value (and gate), then the output projection."""
        found = []
        output = self.attention.output_dense
        for dense in layouts.sublayers(self.attention):
            if not isinstance(dense, layers.EinsumDense) or dense is output:
                continue
            found.append(_head_axes(dense, side="output"))
        found.append(_head_axes(output, side="input"))
        return found


def _head_axes(dense, side):
    """`(dense, kernel axis, bias axis or None)`: where the heads are in a projection; `side`
    says whether its output ("output": query / key / value) or its input ("input": the output
    projection) has the heads on its second-to-last axis."""
    inputs, output = dense.equation.split("->")
    input_spec, kernel_spec = inputs.split(",")
    letter = (output if side == "output" else input_spec)[-2]
    bias_axes = getattr(dense, "bias_axes", None) or ""
    bias_axis = bias_axes.index(letter) if letter in bias_axes else None
    return dense, kernel_spec.index(letter), bias_axis


def attention_layers(model):
    """Every `MultiHeadAttention` of `model`, in the order the model calls them (inside
    composite layers and wrappers too).

    Example:

    ```python
    [layer.key for layer in kp.surgery.heads.attention_layers(model)]   # ['mha', 'mha_1']
    ```
    """
    if tracing.is_graph_model(model):
        holders = [_unwrap(layer) for layer in tracing.trace(model).layers()]
    else:
        holders = [_unwrap(layer) for layer in layouts.sublayers(model)]
    found, seen = [], set()

    def visit(layer, holder):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, layers.MultiHeadAttention):
            found.append(AttentionLayer(layer_key(layer), layer, holder))
            return
        for child in layouts.sublayers(layer):
            visit(_unwrap(child), holder)

    for holder in holders:
        visit(holder, holder)
    return found


def head_contributions(output_input, output_kernel, chunk=4096):
    """Mean L2 norm of each head's contribution to the attention output.

    Args:
        output_input: the input of the output projection, [..., heads, dim].
        output_kernel: its kernel, [heads, dim, E].
        chunk: rows handled at once (bounds memory).

    Returns:
        `(sum of norms per head, number of rows)`.

    Example:

    ```python
    z = np.ones((2, 3, 2, 4))            # batch 2, 3 tokens, 2 heads of size 4
    w = np.ones((2, 4, 8))
    total, count = kp.surgery.heads.head_contributions(z, w)   # total / count == [sqrt(8) * 4] * 2
    ```
    """
    heads, dim = output_kernel.shape[0], output_kernel.shape[1]
    z = np.asarray(output_input, np.float32).reshape(-1, heads, dim)
    kernel = np.asarray(output_kernel, np.float32).reshape(heads, dim, -1)
    total = np.zeros(heads, np.float64)
    for start in range(0, z.shape[0], chunk):
        part = np.einsum("nhd,hde->nhe", z[start : start + chunk], kernel)
        total += np.sqrt(np.square(part).sum(-1)).sum(0)
    return total, z.shape[0]


def mean_loss_gradients(model, calibration_data, loss, batch_size):
    """`{id(variable): mean dL/dw}` (float64 NumPy) for the trainable weights of `model` over
    `calibration_data` (`(x, y)`), through the engine's `gradient_statistics`."""
    statistics = gradients_lib.gradient_statistics(
        model, calibration_data, loss=loss, batch_size=batch_size
    )
    return {
        key: np.asarray(keras.ops.convert_to_numpy(value.mean_gradient), np.float64)
        for key, value in statistics.items()
    }


def _gradient_scores(model, found, calibration_data, loss, batch_size):
    if not (isinstance(calibration_data, tuple) and len(calibration_data) >= 2):
        raise ValueError(
            "criterion='taylor' ranks by the loss gradient: pass `calibration_data=(x, y)`."
        )
    loss = loss if loss is not None else getattr(model, "loss", None)
    if loss is None:
        raise ValueError(
            "criterion='taylor' needs a loss: compile the model or pass `loss=` (e.g. "
            "`loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)`)."
        )
    gradients = mean_loss_gradients(model, calibration_data[:2], loss, batch_size)
    scores = {}
    for layer in found:
        kernel = layer.attention.output_dense.kernel
        product = _numpy(kernel).astype(np.float64) * gradients[id(kernel)]
        dense, axis, _ = layer.projections()[-1]
        moved = np.moveaxis(product, axis, 0).reshape(layer.num_heads, -1)
        scores[layer.key] = np.abs(moved.sum(1))
    return scores


def _activation_scores(model, found, calibration_data, batch_size):
    calibration = calibration_lib.calibration_batches(
        calibration_data, model, batch_size, caller="kp.surgery.heads.head_importance"
    )
    totals = {layer.key: np.zeros(layer.num_heads) for layer in found}
    counts = dict.fromkeys(totals, 0)
    by_output = {id(layer.attention.output_dense): layer for layer in found}

    def record(dense, inputs):
        layer = by_output[id(dense)]
        kernel = np.moveaxis(_numpy(dense.kernel), layer.projections()[-1][1], 0)
        total, count = head_contributions(_numpy(inputs), kernel)
        totals[layer.key] += total
        counts[layer.key] += count

    with recording_inputs([layer.attention.output_dense for layer in found], record):
        for batch in calibration.batches:
            model(batch, training=False)
    return {key: totals[key] / max(counts[key], 1) for key in totals}


def head_importance(
    model, calibration_data, criterion="activation", loss=None, filters=None, batch_size=32
):
    """Importance of every head of every attention layer: `{attention key: scores}`.

    Args:
        model: a built model (Functional, Sequential, keras-hub backbone, subclassed).
        calibration_data: x (or an iterable of batches) for "activation"; `(x, y)` for
            "taylor".
        criterion: "activation" or "taylor" (`CRITERIA`, see the module docstring); the
            per-weight names of `kp.criteria` are refused with a ValueError.
        loss: the loss for "taylor" (default: the compiled model's).
        filters: which attention layers: None (all), a regex, a list of regexes or a callable,
            matched against the attention layer or the layer holding it.
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
    scores = kp.surgery.heads.head_importance(lm, tokens)
    scores["mha"]          # one score per head
    ```
    """
    check_criterion(criterion, "kp.surgery.heads.head_importance")
    found = _select(attention_layers(model), filters)
    if not found:
        raise ValueError(
            f"kp.surgery.heads found no keras.layers.MultiHeadAttention in model {model.name!r}"
            + (" matching `filters`." if filters is not None else ".")
        )
    if criterion == "taylor":
        return _gradient_scores(model, found, calibration_data, loss, batch_size)
    return _activation_scores(model, found, calibration_data, batch_size)


def _select(found, filters):
    selected = layer_filter(filters)
    return [layer for layer in found if selected(layer.attention) or selected(layer.holder)]


def _removed_heads(scores, sparsity, allocation):
    """`{key: sorted head indices to mask}`; every layer keeps at least one head."""
    if allocation == "per_layer":
        removed = {}
        for key, values in scores.items():
            count = min(int(round(len(values) * sparsity)), len(values) - 1)
            order = np.argsort(values, kind="stable")
            removed[key] = sorted(int(h) for h in order[:count])
        return removed
    normalized = []
    for key, values in scores.items():
        norm = float(np.linalg.norm(values)) or 1.0
        normalized += [(float(v) / norm, key, h) for h, v in enumerate(values)]
    total = len(normalized)
    budget = int(round(total * sparsity))
    left = {key: len(values) for key, values in scores.items()}
    removed = {key: [] for key in scores}
    for _, key, head in sorted(normalized):
        if budget == 0:
            break
        if left[key] > 1:
            removed[key].append(head)
            left[key] -= 1
            budget -= 1
    return {key: sorted(heads) for key, heads in removed.items()}


@dataclasses.dataclass
class HeadReport:
    """What `mask_heads` masked.

    Attributes:
        layers: one row per attention layer: `{"key", "heads", "removed", "scores"}`.
    """

    layers: list = dataclasses.field(default_factory=list)

    @property
    def heads_before(self):
        return sum(row["heads"] for row in self.layers)

    @property
    def heads_after(self):
        return sum(row["heads"] - len(row["removed"]) for row in self.layers)

    def __str__(self):
        lines = [f"Attention heads: {self.heads_before} -> {self.heads_after}"]
        for row in self.layers:
            lines.append(f"  {row['key']}: masked heads {row['removed']} of {row['heads']}")
        return "\n".join(lines)


def prunable_copy(model, holders, sparsity, caller, granularity="unstructured"):
    """`model` with every layer in `holders` (model-level layers) inside a `PruneWrapper`:
    `kp.prune` copies a plain model; a model that already has wrappers gets the missing ones
    (a copy again) or, when none are missing, is returned as it is."""
    wrapped = {wrapper.layer.name for wrapper in find_wrappers(model)}
    missing = {holder.name for holder in holders} - wrapped
    if not missing:
        return model
    if not tracing.is_graph_model(model) and find_wrappers(model):
        raise ValueError(
            f"{caller}: subclassed model {model.name!r} is already pruned in place; mask its "
            "structures before pruning it any other way."
        )
    return prune(
        model,
        schedule=OneShotSparsity(sparsity),
        granularity=granularity,
        filters=lambda layer: layer.name in missing,
    )


def wrapper_holding(model, variable):
    """`(wrapper, target index)` of the wrapper pruning `variable`, or `(None, None)`."""
    for wrapper in find_wrappers(model):
        for index, target in enumerate(wrapper.targets):
            if target.variable is variable:
                return wrapper, index
    return None, None


def current_masks(wrapper):
    """The wrapper's installed masks as NumPy `[[kernel mask, bias mask or None]]`."""
    return [
        [
            _numpy(mask).astype(np.float32),
            None if bias is None else _numpy(bias).astype(np.float32),
        ]
        for mask, bias in zip(wrapper.masks, wrapper.bias_masks, strict=True)
    ]


def _install_head_masks(model, layer, heads):
    """Zero the mask slices of `heads` in every projection kernel of `layer`."""
    edits = {}
    for dense, kernel_axis, _ in layer.projections():
        wrapper, index = wrapper_holding(model, dense.kernel)
        if wrapper is None:
            raise ValueError(
                f"The kernel {dense.kernel.path!r} of attention layer {layer.key!r} is not "
                "pruned by any kp.PruneWrapper, so its heads cannot be masked."
            )
        masks = edits.setdefault(id(wrapper), (wrapper, current_masks(wrapper)))[1]
        moved = np.moveaxis(masks[index][0], kernel_axis, 0)
        moved[heads] = 0.0
        masks[index][0] = np.moveaxis(moved, 0, kernel_axis)
    engine = MaskEngine(model)
    for wrapper, masks in edits.values():
        engine.install(wrapper, [tuple(pair) for pair in masks], float(wrapper.sparsity))
    engine.attach()


def mask_heads(
    model,
    sparsity=None,
    calibration_data=None,
    *,
    heads=None,
    criterion="activation",
    loss=None,
    allocation="per_layer",
    filters=None,
    batch_size=32,
):
    """Mask the least important attention heads; `kp.shrink` then removes them.

    Masks go through the mask engine into `kp.PruneWrapper`s (schedule
    `kp.schedules.OneShotSparsity`), so the masked heads stay zero while the model is
    fine-tuned with `kp.PruningCallback`. The masked model computes what the shrunk model
    computes.

    Args:
        model: a built model. A plain model is copied (`kp.prune` wraps its attention layers or
            the blocks holding them); a model that already holds wrappers (from `kp.surgery.ffn`,
            `kp.prune`) gets the missing wrappers, or is masked in place if none are missing.
        sparsity: fraction of heads to mask, in [0, 1). Every attention layer keeps at least
            one head.
        calibration_data: data for `criterion` (see `head_importance`).
        heads: instead of `sparsity`, the heads to mask: `{attention key or name: [indices]}`.
        criterion: "activation" or "taylor" (see `head_importance`).
        loss: the loss for "taylor".
        allocation: "per_layer" (each layer loses the same fraction) or "global" (heads ranked
            across layers, each layer's scores normalized by their L2 norm, as Michel et al.).
        filters: which attention layers (see `head_importance`).
        batch_size: examples per batch.

    Returns:
        The masked model, with `head_report` (a `HeadReport`).

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
    labels = np.random.default_rng(1).integers(0, 10, (32, 6))
    masked = kp.surgery.heads.mask_heads(lm, 0.25, tokens)
    masked.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    masked.fit(tokens, labels, epochs=1, callbacks=[kp.PruningCallback()], verbose=0)
    small = kp.shrink(masked)            # fewer heads per MultiHeadAttention
    ```
    """
    if (sparsity is None) == (heads is None):
        raise ValueError(
            "kp.surgery.heads.mask_heads takes either `sparsity` (the fraction of heads to "
            "mask) or "
            f"`heads` ({{attention key: [head indices]}}). Received: sparsity={sparsity!r}, "
            f"heads={heads!r}"
        )
    if sparsity is not None:
        validation.check_sparsity("sparsity", sparsity)
    validation.check_choice("allocation", allocation, set(ALLOCATIONS))
    check_criterion(criterion, "kp.surgery.heads.mask_heads")
    found = _select(attention_layers(model), filters)
    if not found:
        raise ValueError(
            f"kp.surgery.heads found no keras.layers.MultiHeadAttention in {model.name!r}."
        )
    masked = prunable_copy(
        model, [layer.holder for layer in found], sparsity or 0.0, "kp.surgery.heads.mask_heads"
    )
    by_key = {layer.key: layer for layer in _select(attention_layers(masked), filters)}
    if heads is not None:
        removed = _explicit_heads(heads, by_key)
        scores = {}
    else:
        scores = head_importance(masked, calibration_data, criterion, loss, filters, batch_size)
        removed = _removed_heads(scores, sparsity, allocation)
    report = HeadReport()
    for key, layer in by_key.items():
        chosen = removed.get(key, [])
        if chosen:
            _install_head_masks(masked, layer, chosen)
        report.layers.append(
            {
                "key": key,
                "heads": layer.num_heads,
                "removed": list(chosen),
                "scores": None if key not in scores else [float(s) for s in scores[key]],
            }
        )
    masked.head_report = report
    return masked


def _explicit_heads(heads, by_key):
    if not isinstance(heads, dict):
        raise ValueError(
            "Expected `heads` to be a dict {attention key or name: [head indices]}. "
            f"Received: heads={heads!r}"
        )
    names = {layer.attention.name: key for key, layer in by_key.items()}
    removed = {}
    for name, indices in heads.items():
        key = name if name in by_key else names.get(name)
        if key is None:
            raise ValueError(
                f"`heads` names {name!r}, which is not an attention layer of the model. "
                f"Attention layers: {sorted(by_key)}"
            )
        count = by_key[key].num_heads
        indices = sorted({int(index) for index in indices})
        if any(index < 0 or index >= count for index in indices) or len(indices) >= count:
            raise ValueError(
                f"`heads[{name!r}]` must list distinct heads in [0, {count}) and leave at least "
                f"one. Received: {heads[name]!r}"
            )
        removed[key] = indices
    return removed


def zero_heads(attention):
    """Indices of the heads of `attention` whose output-projection rows are all zero: they
    contribute nothing and can be removed."""
    _, axis, _ = _head_axes(attention.output_dense, side="input")
    kernel = np.moveaxis(_numpy(attention.output_dense.kernel), axis, 0)
    return [h for h in range(kernel.shape[0]) if not np.any(kernel[h])]


def shrink_plan(graph):
    """How `kp.shrink` removes zero heads from the attention layers of `graph`.

    Returns:
        `(slices, configs, kept_whole)`: `{id(variable): {axis: kept indices}}`,
        `{id(layer): config changes}`, and `{layer name: reason}` for zero heads that stay.
    """
    slices, configs, kept_whole = {}, {}, {}
    for call in graph.calls:
        if not call.is_layer:
            continue
        layer = _unwrap(call.operation)
        if id(layer) in configs:
            continue
        if isinstance(layer, layers.MultiHeadAttention):
            zero = zero_heads(layer)
            if not zero:
                continue
            if len(zero) == layer.num_heads:
                zero = zero[1:]  # a layer keeps one head; a zero head changes nothing
            kept = np.array([h for h in range(layer.num_heads) if h not in zero])
            record = AttentionLayer(layer_key(layer), layer, layer)
            for dense, kernel_axis, bias_axis in record.projections():
                slices[id(dense.kernel)] = {kernel_axis: kept}
                if dense.bias is not None and bias_axis is not None:
                    slices[id(dense.bias)] = {bias_axis: kept}
            configs[id(layer)] = {"num_heads": int(len(kept))}
            continue
        for inner in attention_layers_in(layer):
            zero = zero_heads(inner)
            if zero:
                kept_whole[layer.name] = (
                    f"{len(zero)} zero head(s) of {layer_key(inner)} kept: {type(layer).__name__} "
                    "builds its attention from its own config, which cannot express fewer heads "
                    "of the same size (they compute exactly zero)"
                )
    return slices, configs, kept_whole


def attention_layers_in(layer):
    """The `MultiHeadAttention` layers inside a composite layer (not the layer itself)."""
    found = []
    for child in layouts.sublayers(layer):
        child = _unwrap(child)
        if isinstance(child, layers.MultiHeadAttention):
            found.append(child)
        else:
            found.extend(attention_layers_in(child))
    return found
