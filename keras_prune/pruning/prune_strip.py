"""Whole-model transforms: `prune` wraps prunable layers, `strip` bakes masks into plain layers."""

import dataclasses
import re

import keras

from keras_prune.layers import layouts
from keras_prune.layers.wrapper import PruneWrapper


@dataclasses.dataclass
class PruneReport:
    """What `prune` wrapped and what it left alone, each with a reason.

    Attributes:
        wrapped: names of the layers now inside a `PruneWrapper`.
        skipped: `{layer name: reason}` for every layer left as it was.
    """

    wrapped: list = dataclasses.field(default_factory=list)
    skipped: dict = dataclasses.field(default_factory=dict)

    def __str__(self):
        lines = [f"Pruning {len(self.wrapped)} layer(s): {', '.join(self.wrapped) or '-'}"]
        for name, reason in self.skipped.items():
            lines.append(f"  skipped {name}: {reason}")
        return "\n".join(lines)


def _layer_filter(filters):
    """A predicate from `filters`: None (all), a regex, a list of regexes, or a callable."""
    if filters is None:
        return lambda layer: True
    if callable(filters):
        return filters
    if isinstance(filters, str):
        filters = [filters]
    if isinstance(filters, (list, tuple)) and all(isinstance(f, str) for f in filters):
        patterns = [re.compile(pattern) for pattern in filters]
        return lambda layer: any(pattern.search(layer.name) for pattern in patterns)
    raise TypeError(
        "Expected `filters` to be None, a regex string, a list of regex strings, or a callable "
        f"taking a layer and returning a bool. Received: filters={filters!r}"
    )


def _check_rebuildable(model):
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Expected a keras.Model (Sequential or Functional). To prune a single layer, use "
            f"`kp.PruneWrapper(layer, ...)`. Received: model={model!r}"
        )
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} is not built, so its weights do not exist yet. Build it first: "
            "give it a `keras.Input(...)`, call `model.build(input_shape)`, or call it on a batch."
        )
    is_sequential = isinstance(model, keras.Sequential)
    is_functional = hasattr(model, "inputs") and hasattr(model, "_nodes_by_depth")
    if not (is_sequential or is_functional):
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}) is a subclassed model, whose layers "
            "kp.prune cannot rewire. Wrap its layers where you create them, e.g. "
            "`self.dense = kp.PruneWrapper(keras.layers.Dense(64), schedule=...)`, or build the "
            "model with the Functional or Sequential API."
        )


def copy_layer(layer):
    """A new, built layer of the same class, config and weights."""
    copy = layer.__class__.from_config(layer.get_config())
    build_config = layer.get_build_config()
    if build_config is not None:
        copy.build_from_config(build_config)
    copy.set_weights(layer.get_weights())
    return copy


def _clone(model, clone_function):
    clone = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
    return clone


def prune(
    model,
    schedule=None,
    granularity="unstructured",
    mask="binary",
    filters=None,
    criterion="magnitude",
):
    """Return a copy of `model` whose prunable layers are wrapped in `PruneWrapper`.

    The original model is left untouched. Layers without prunable weights, and layers that
    `filters` rejects, are copied as they are. The returned model carries a `PruneReport` as
    `model.pruning_report`.

    Args:
        model: a built Sequential or Functional model (nested models are handled).
        schedule: a `kp.PruningSchedule` (default `ConstantSparsity(0.5)`).
        granularity: "unstructured", "channel", "2:4" or a `kp.Block` / `kp.NofM` /
            `kp.Channel` instance.
        mask: "binary", "learnable", "sigmoid" or a mask-type instance.
        filters: which layers to prune: None (all), a regex on the layer name, a list of regexes,
            or a callable `layer -> bool`.
        criterion: importance criterion for binary masks (see `kp.PruneWrapper`).

    Example:

    ```python
    pruned = kp.prune(model, schedule=kp.PolynomialDecay(0.0, 0.9, 0, 1000), filters="conv")
    print(pruned.pruning_report)
    ```
    """
    _check_rebuildable(model)
    selected = _layer_filter(filters)
    # Validate the shared arguments once, before touching anything.
    template = PruneWrapper(
        keras.layers.Dense(1),
        schedule=schedule,
        granularity=granularity,
        mask=mask,
        criterion=criterion,
    )
    report = PruneReport()

    def wrap(layer):
        copy = copy_layer(layer)
        if isinstance(layer, PruneWrapper):
            report.skipped[layer.name] = "already wrapped for pruning"
            return copy
        if not layouts.prunable_weights(layer):
            report.skipped[layer.name] = "no prunable weights"
            return copy
        if not selected(layer):
            report.skipped[layer.name] = "excluded by `filters`"
            return copy
        try:
            for target in layouts.prunable_weights(layer):
                template.granularity.check(target)
        except ValueError as error:
            report.skipped[layer.name] = str(error)
            return copy
        report.wrapped.append(layer.name)
        return PruneWrapper(
            copy,
            schedule=template.schedule,
            granularity=template.granularity,
            mask=template.mask_type,
            criterion=template.criterion,
        )

    pruned = _clone(model, wrap)
    if not report.wrapped:
        raise ValueError(
            f"kp.prune found nothing to prune in model {model.name!r}; the model is unchanged.\n"
            + str(report)
        )
    pruned.pruning_report = report
    return pruned


def strip(model):
    """Return a plain Keras copy of `model`: every `PruneWrapper` replaced by its inner layer with
    the mask baked into the weights. No keras_prune class is left, so the result saves, loads
    and converts without keras_prune installed; its outputs equal the pruned model's.

    Example:

    ```python
    plain = kp.strip(pruned)
    plain.save("pruned_plain.keras")
    ```
    """
    _check_rebuildable(model)

    def unwrap(layer):
        if not isinstance(layer, PruneWrapper):
            return copy_layer(layer)
        plain = copy_layer(layer.layer)
        baked = {id(variable): value for variable, value in layer.effective_weights()}
        values = [
            keras.ops.convert_to_numpy(baked.get(id(variable), variable))
            for variable in layer.layer.weights
        ]
        plain.set_weights(values)
        return plain

    return _clone(model, unwrap)


def find_wrappers(model):
    """Every `PruneWrapper` inside `model`, nested models and subclassed containers included."""
    found, seen = [], set()

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, PruneWrapper):
            found.append(layer)
            return
        for child in getattr(layer, "layers", None) or []:
            visit(child)
        for value in vars(layer).values():
            if isinstance(value, keras.layers.Layer):
                visit(value)

    visit(model)
    return found


def update_masks(model, step, allocation=None):
    """Apply every wrapper's schedule at optimizer step `step` (what `PruningCallback` does each
    batch); returns the wrappers whose masks were recomputed.

    `allocation` (a `kp.allocation.Allocation`, e.g. `kp.GlobalAllocation()`) decides how the
    scheduled sparsity is spread across layers; None prunes each tensor to it.

    Use it in custom training loops:

    ```python
    for step, (x, y) in enumerate(dataset):
        kp.update_masks(model, step)
        train_step(x, y)
    ```
    """
    step = int(step)
    if allocation is not None:
        from keras_prune.core import allocation as allocation_lib

        return allocation_lib.get(allocation).update(find_wrappers(model), step)
    from keras_prune.graph.groups import update_channel_masks

    # Channel masks are ranked per dependency group so that what is masked can be removed.
    return update_channel_masks(model, step)


def prune_low_magnitude(
    to_prune, pruning_schedule=None, block_size=(1, 1), block_pooling_type="AVG", **kwargs
):
    """tfmot-compatible entry point: magnitude pruning of a model or a single layer.

    `block_size` follows tfmot: (1, 1) is unstructured, anything else prunes blocks.

    Example:

    ```python
    pruned = kp.prune_low_magnitude(model, pruning_schedule=kp.ConstantSparsity(0.5, 0))
    ```
    """
    from keras_prune.core import granularity as granularity_lib

    block_size = tuple(block_size)
    granularity = (
        granularity_lib.Unstructured()
        if block_size == (1, 1)
        else granularity_lib.Block(block_size, pooling=block_pooling_type.lower())
    )
    if isinstance(to_prune, keras.Model):
        return prune(to_prune, schedule=pruning_schedule, granularity=granularity, **kwargs)
    return PruneWrapper(to_prune, schedule=pruning_schedule, granularity=granularity, **kwargs)


def strip_pruning(model):
    """tfmot-compatible name for `strip`."""
    return strip(model)
