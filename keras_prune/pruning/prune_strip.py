"""Whole-model transforms: `prune` wraps prunable layers, `strip` bakes masks into plain layers.

`prune` never touches the user's model. Sequential and Functional models (operators on
symbolic tensors, layers called with keywords, shared layers and nested models included) are
copied and rewired with `keras.models.clone_model`; models whose class has a config of its own
(keras-hub backbones and tasks) come back as a `PrunedModel` that saves and reloads; subclassed
models, whose `call` is Python code, are pruned in place (binary masks held on their layers'
own variables). `strip` reverses each of these.
"""

import keras

from keras_prune.core import allocation as allocation_lib
from keras_prune.core import granularity as granularity_lib
from keras_prune.core import mask_types, validation
from keras_prune.core.validation import layer_filter
from keras_prune.engine.engine import engine_for
from keras_prune.graph import rewire
from keras_prune.graph import tracing as trace_lib
from keras_prune.layers import layouts
from keras_prune.layers.in_place import IN_PLACE_ATTRIBUTE, InPlacePruning
from keras_prune.layers.mask_storage import HoldMasked
from keras_prune.layers.wrapper import PruneWrapper, find_wrappers
from keras_prune.pruning.planning import (
    FILTERED,
    NO_GRAPH,
    Planner,
    PruneReport,
    Settings,
    removable_layers,
)
from keras_prune.pruning.pruned_model import PrunedModel


def default_allocation(granularity, mask):
    """The allocation `kp.prune` declares when given `allocation="auto"` (its default).

    Binary unstructured masks: one global ranking across all pruned tensors with a floor per
    tensor (`kp.allocation.GlobalAllocation()`). At high sparsity it keeps the accuracy that
    pruning every tensor to the same sparsity loses (docs/methods.md: digits CNN at 99%).
    Anything else is set per layer: learnable masks choose their top-k per layer in the forward
    pass, structured granularities (channels, blocks, N:M) keep their structure per layer, and
    so does a `kp.granularity.ByLayer` mix ("mobile") unless every kind is unstructured.
    """
    granularity = granularity_lib.get(granularity)
    mask = mask_types.get(mask)
    chosen = (
        granularity.granularities()
        if isinstance(granularity, granularity_lib.ByLayer)
        else [granularity]
    )
    if all(isinstance(g, granularity_lib.Unstructured) for g in chosen) and not mask.learnable:
        return allocation_lib.GlobalAllocation()
    return None


def _check_allocation_name(allocation):
    """Name "auto" among the choices when an allocation name is not known."""
    if not isinstance(allocation, str) or allocation == "auto":
        return
    try:
        allocation_lib.get(allocation)
    except ValueError as error:
        raise ValueError(
            f"{error} `kp.prune` and `kp.prune_once` also take allocation='auto' (the default: "
            "a global ranking for binary unstructured masks, per layer otherwise)."
        ) from None


def _settings(schedule, granularity, mask, criterion, allocation):
    _check_allocation_name(allocation)
    if isinstance(allocation, str) and allocation == "auto":
        allocation = default_allocation(granularity, mask)
    elif isinstance(allocation, str) and allocation == "per_layer":
        allocation = None
    by_layer = granularity_lib.get(granularity)
    if not isinstance(by_layer, granularity_lib.ByLayer):
        by_layer = None
    # A throwaway wrapper validates every argument once, before anything is copied.
    template = PruneWrapper(
        keras.layers.Dense(1),
        schedule=schedule,
        granularity="unstructured" if by_layer else granularity,
        mask=mask,
        criterion=criterion,
        allocation=allocation,
    )
    return Settings(
        template.schedule,
        by_layer or template.granularity,
        template.mask_type,
        template.criterion,
        template.allocation,
    )


def prune(
    model,
    schedule=None,
    granularity="unstructured",
    mask="binary",
    filters=None,
    criterion="magnitude",
    allocation="auto",
):
    """Return a copy of `model` whose prunable layers are wrapped in `PruneWrapper`.

    The original model is left untouched. Layers without prunable weights, and layers that
    `filters` rejects, are kept as they are. The returned model carries a `PruneReport` as
    `model.pruning_report` naming every layer and weight left alone and why.

    Any model a Keras user brings works:
    - Sequential (built or not) and Functional models, with operators on symbolic tensors
      (`x + h`), `keras.ops` calls, layers called with keywords, shared layers and nested models;
    - models whose class has a config of its own (keras-hub backbones and tasks): the result is
      a `kp.pruning.PrunedModel` that saves, reloads and strips back to the original class;
    - subclassed models: pruned in place (the same object is returned), with binary masks held
      on their layers' own variables (TensorFlow and torch backends);
    - a single layer or a list of layers: wrapped and returned (tfmot's behaviour).

    Args:
        model: a model, a layer, or a list of layers.
        schedule: a `kp.PruningSchedule` (default `ConstantSparsity(0.5)`).
        granularity: "unstructured", "channel", "2:4", "mobile" or a `kp.granularity.Block` /
            `kp.granularity.NofM` / `kp.granularity.Channel` instance, or a
            `kp.granularity.ByLayer` giving one per kind of layer (fully connected,
            convolution, other). At channel granularity only layers whose channels
            `kp.shrink` can remove are wrapped (their BatchNormalizations too), unless
            `kp.granularity.Channel(only_removable=False)`. "mobile" is the preset that gets
            speed on LiteRT: 1x4 blocks on fully-connected weights (float sparse
            FULLY_CONNECTED kernel), channels on convolutions (removed by `kp.shrink`), other
            layers unpruned (`kp.granularity.mobile`; measured in docs/export.md).
        mask: "binary", "learnable", "sigmoid" or a mask-type instance.
        filters: which layers to prune: None (all), a regex on the layer name, a list of regexes,
            or a callable `layer -> bool`.
        criterion: importance criterion for binary masks (see `kp.PruneWrapper`).
        allocation: how the scheduled sparsity is spread across the pruned tensors, declared on
            every wrapper and followed by `kp.PruningCallback` and `kp.prune_once`:
            - "auto" (default): `kp.allocation.GlobalAllocation()` (one ranking across all
              tensors, each keeping at least 0.1% of its weights) for binary unstructured
              masks; per layer for learnable masks and structured granularities (see
              `kp.pruning.default_allocation`);
            - "per_layer" or None: every tensor at the scheduled sparsity (tfmot's semantics,
              kept by `kp.tfmot.prune_low_magnitude`);
            - a `kp.allocation.Allocation` or its name ("global", "erk").

    Example:

    ```python
    pruned = kp.prune(model, schedule=kp.PolynomialDecay(0.0, 0.9, 0, 1000), filters="conv")
    print(pruned.pruning_report)
    ```
    """
    settings = _settings(schedule, granularity, mask, criterion, allocation)
    selected = layer_filter(filters)
    if isinstance(model, (list, tuple)):
        return [
            prune(layer, schedule, granularity, mask, filters, criterion, settings.allocation)
            for layer in model
        ]
    if isinstance(model, keras.layers.Layer) and not isinstance(model, keras.Model):
        layouts.check_wrappable(model, unbuilt_custom=True)
        return settings.wrap(model, settings.granularity_for(model, channel_planned=False))
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Expected a keras.Model, a keras.layers.Layer or a list of layers. To prune a "
            f"single layer, use `kp.PruneWrapper(layer, ...)`. Received: model={model!r} "
            f"(of type {type(model).__name__})"
        )
    if trace_lib.is_graph_model(model) or (isinstance(model, keras.Sequential) and not model.built):
        pruned, report = _prune_graph(model, settings, selected)
    else:
        pruned, report = _prune_in_place(model, settings, selected)
    if not report.wrapped and not find_wrappers(pruned):
        raise ValueError(
            f"kp.prune found nothing to prune in model {model.name!r}; the model is unchanged."
            + _filters_hint(filters, report)
            + "\n"
            + str(report)
        )
    pruned.pruning_report = report
    return pruned


def _filters_hint(filters, report):
    """Why `filters` selected nothing, with the prunable layers' names (typos are common)."""
    excluded = [name for name, why in report.skipped.items() if why == FILTERED]
    if filters is None or not excluded:
        return ""
    hint = f" Received: filters={filters!r}, which matches none of the prunable layers {excluded}."
    if isinstance(filters, str):
        hint += validation.did_you_mean(filters, excluded)
    return hint + " Pass a regex that matches some of them (re.search on the layer name)."


def _prune_graph(model, settings, selected):
    report = PruneReport()
    try:
        fresh = rewire.copy_model(model)
    except rewire.CannotCopy as error:
        # A layer whose config does not round-trip: wrap the model's own layers, as tfmot does.
        fresh = model
        report.shares_weights = str(error)
    removable = reasons = None
    if settings.prunes_channels() and fresh.built:
        removable, reasons = removable_layers(fresh, selected, settings)
    planner = Planner(settings, selected, report, removable, reasons)
    rewired = rewire.replace_layers(fresh, planner.decide)
    if isinstance(model, keras.Sequential) or rewire.has_default_config(model):
        if model.compiled:
            rewired.compile_from_config(model.get_compile_config())
        return rewired, report
    source = keras.saving.serialize_keras_object(model)
    source.pop("compile_config", None)
    pruned = PrunedModel(
        rewired.input, rewired.output, source=source, plan=planner.plan, name=model.name
    )
    return pruned, report


def _prune_in_place(model, settings, selected):
    if not model.built:
        raise ValueError(
            f"Model {model.name!r} ({type(model).__name__}) is not built, so its weights do not "
            "exist yet. Call it on a batch first (`model(x[:1])`), then prune it."
        )
    # Arguments first, then the backend: a bad argument reads the same on every backend.
    if isinstance(settings.mask, type(settings.mask)) and settings.mask.learnable:
        raise ValueError(
            f"Model {model.name!r} is subclassed, so kp.prune prunes it in place with binary "
            "masks; learnable masks need the wrapper in the forward pass. Use mask='binary', or "
            "wrap layers yourself: `self.dense = kp.PruneWrapper(keras.layers.Dense(64), "
            "mask='learnable')`."
        )
    if keras.backend.backend() == "jax":
        raise NotImplementedError(
            f"Model {model.name!r} is subclassed, so kp.prune prunes it in place, which holds "
            "masked weights at zero with variable constraints that JAX's `fit` does not run. "
            "Use the TensorFlow or torch backend, or build the model with the Functional API."
        )
    if isinstance(settings.granularity, granularity_lib.Channel):
        raise ValueError(
            f"Model {model.name!r} is subclassed: channel granularity needs the model's graph "
            "to couple channels (and kp.shrink to remove them). Use unstructured, block or N:M "
            "granularity in place, or build the model with the Functional API."
        )
    report = PruneReport(in_place=True)
    planner = Planner(settings, selected, report)
    if settings.prunes_channels():
        # A `ByLayer` mix: the kinds pruned by channels are left unpruned, the others pruned.
        planner.removable, planner.channel_reason = set(), NO_GRAPH
    wrappers = []
    for layer in _leaf_layers(model):
        decided = planner.decide(layer)
        if decided is not layer:
            decided.build_from_config({})
            wrappers.append(decided)
    existing = getattr(model, IN_PLACE_ATTRIBUTE, None)
    if existing is not None:
        wrappers = existing.wrappers + wrappers
    setattr(model, IN_PLACE_ATTRIBUTE, InPlacePruning(wrappers))
    return model, report


def _leaf_layers(model):
    """The weight-bearing layers of a subclassed model, outermost known layer first."""
    found, seen = [], set()

    def visit(layer):
        for child in layouts.sublayers(layer):
            if id(child) in seen:
                continue
            seen.add(id(child))
            if isinstance(child, PruneWrapper):
                continue
            if layouts.builtin_prunable_weights(child) is not None or hasattr(
                child, "get_prunable_weights"
            ):
                found.append(child)
            else:
                visit(child)

    visit(model)
    return found


def strip(model):
    """Return a plain Keras model: every `PruneWrapper` replaced by its inner layer with the
    masks baked into the weights. Its outputs equal the pruned model's.

    - Sequential / Functional: a new model with no keras_prune class left, which saves, loads
      and converts without keras_prune installed.
    - `kp.pruning.PrunedModel` (keras-hub backbones and tasks): an instance of the original
      class again, rebuilt from its config, holding the pruned weights.
    - Subclassed models pruned in place: the same model, with masks baked in and keras_prune's
      constraints removed. Wrappers you placed inside a subclassed model yourself stay (Python
      attributes cannot be swapped from outside); they are switched to pass-through with their
      masks baked in.

    Example:

    ```python
    plain = kp.strip(pruned)
    plain.save("pruned_plain.keras")
    ```
    """
    if isinstance(model, PruneWrapper):
        return _stripped_layer(model)
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Expected a keras.Model or a kp.PruneWrapper to strip. Received: model={model!r} "
            f"(of type {type(model).__name__})"
        )
    if isinstance(model, PrunedModel):
        return _strip_to_source(model)
    if trace_lib.is_graph_model(model):
        return _strip_graph(model)
    return _strip_in_place(model)


def _baked_values(model):
    """`{id(variable): value}` for every pruned weight of `model`, masks applied."""
    return {
        id(variable): keras.ops.convert_to_numpy(value)
        for wrapper in find_wrappers(model)
        if wrapper.built
        for variable, value in wrapper.effective_weights()
    }


def _unwrapped(model):
    return rewire.replace_layers(
        model, lambda layer: layer.layer if isinstance(layer, PruneWrapper) else layer
    )


def _strip_graph(model):
    baked = _baked_values(model)
    shared = _unwrapped(model)
    try:
        plain = rewire.copy_model(shared)
    except rewire.CannotCopy:
        # The layers cannot be rebuilt from their configs (kp.prune then shared them too): bake
        # the masks into the layers themselves and take keras_prune's constraints off.
        _release_constraints(model)
        for variable in shared.weights:
            if id(variable) in baked:
                variable.assign(baked[id(variable)])
        plain = shared
    else:
        for original, copy in zip(shared.weights, plain.weights, strict=True):
            if id(original) in baked:
                copy.assign(baked[id(original)])
    if model.compiled:
        plain.compile_from_config(model.get_compile_config())
    return plain


def _strip_to_source(model):
    baked = _baked_values(model)
    shared = _unwrapped(model)
    by_path = {variable.path: variable for variable in shared.weights}
    plain = model.rebuild_source()
    for variable in plain.weights:
        original = by_path.get(variable.path)
        if original is None or tuple(original.shape) != tuple(variable.shape):
            raise ValueError(
                f"kp.strip could not match weight {variable.path!r} of a rebuilt "
                f"{type(plain).__name__} to the pruned model {model.name!r}."
            )
        variable.assign(baked.get(id(original), keras.ops.convert_to_numpy(original)))
    return plain


def _stripped_layer(wrapper):
    baked = _baked_values_of(wrapper)
    plain = wrapper.layer.__class__.from_config(wrapper.layer.get_config())
    plain.build_from_config(wrapper.layer.get_build_config() or {})
    values = [baked.get(id(v), keras.ops.convert_to_numpy(v)) for v in wrapper.layer.weights]
    plain.set_weights(values)
    return plain


def _baked_values_of(wrapper):
    return {
        id(variable): keras.ops.convert_to_numpy(value)
        for variable, value in wrapper.effective_weights()
    }


def _release_constraints(model):
    """Take the constraints holding masked weights at zero off every wrapper's variables."""
    for wrapper in find_wrappers(model):
        if not wrapper.built:
            continue
        for variable in [t.variable for t in wrapper.targets] + [
            t.bias for t in wrapper.targets if t.bias is not None
        ]:
            if isinstance(variable.constraint, HoldMasked):
                variable.constraint = variable.constraint.original


def _strip_in_place(model):
    for wrapper in find_wrappers(model):
        if not wrapper.built:
            continue
        for variable, value in wrapper.effective_weights():
            variable.assign(value)
    _release_constraints(model)
    for wrapper in find_wrappers(model):
        wrapper.pass_through = True
    if getattr(model, IN_PLACE_ATTRIBUTE, None) is not None:
        setattr(model, IN_PLACE_ATTRIBUTE, None)
    return model


def update_masks(model, step, allocation=None):
    """Apply every wrapper's schedule at optimizer step `step` (what `PruningCallback` does
    each batch); returns the wrappers whose masks were recomputed.

    `allocation` (a `kp.allocation.Allocation`, e.g. `kp.allocation.GlobalAllocation()`) decides
    how the scheduled sparsity is spread across layers; None follows what `kp.prune` declared
    (see its `allocation=`). Channel masks are coupled by dependency group, so `kp.shrink`
    removes what they mask.

    Use it in custom training loops:

    ```python
    dataset = [(x[i : i + 16], y[i : i + 16]) for i in range(0, len(x), 16)]
    for step, (x_batch, y_batch) in enumerate(dataset):
        kp.pruning.update_masks(pruned, step)
        pruned.train_on_batch(x_batch, y_batch)  # or your own train step
    ```
    """
    if isinstance(step, bool) or not isinstance(step, int) and not _is_integral(step):
        raise TypeError(
            f"Expected `step` to be an integer optimizer step (e.g. "
            f"`int(model.optimizer.iterations)`). Received: step={step!r}"
        )
    if int(step) < 0:
        raise ValueError(
            f"Expected `step` >= 0 (an optimizer step counts from 0). Received: step={step!r}"
        )
    engine = engine_for(model)
    if not engine.wrappers:
        raise ValueError(
            f"kp.pruning.update_masks found no kp.PruneWrapper in model {model.name!r}. Make "
            "the model prunable first: `model = kp.prune(model, schedule=...)`."
        )
    engine.attach()
    return engine.update(int(step), allocation=allocation)


def _is_integral(value):
    try:
        return float(value) == int(value)
    except (TypeError, ValueError):
        return False
