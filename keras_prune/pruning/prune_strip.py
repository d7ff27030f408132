"""Whole-model transforms: `prune` wraps prunable layers, `strip` bakes masks into plain layers.

`prune` never touches the user's model. Sequential and Functional models (operators on
symbolic tensors, layers called with keywords, shared layers and nested models included) are
copied and rewired with `keras.models.clone_model`; models whose class has a config of its own
(keras-hub backbones and tasks) come back as a `PrunedModel` that saves and reloads; subclassed
models, whose `call` is Python code, are pruned in place (binary masks held on their layers'
own variables). `strip` reverses each of these.
"""

import dataclasses

import keras

from keras_prune.core import allocation as allocation_lib
from keras_prune.core import granularity as granularity_lib
from keras_prune.core import mask_types, validation
from keras_prune.core.validation import layer_filter
from keras_prune.engine.engine import engine_for
from keras_prune.graph import groups as groups_lib
from keras_prune.graph import rewire
from keras_prune.graph import tracing as trace_lib
from keras_prune.layers import layouts
from keras_prune.layers.in_place import IN_PLACE_ATTRIBUTE, InPlacePruning
from keras_prune.layers.wrapper import HoldMasked, PruneWrapper, find_wrappers
from keras_prune.pruning.pruned_model import PrunedModel, wrapper_settings

# Why a layer was not wrapped; shown in `PruneReport`.
ALREADY_WRAPPED = "already wrapped for pruning"
NO_PRUNABLE_WEIGHTS = "no prunable weights"
UNKNOWN_WEIGHTS = (
    "holds weights keras_prune does not know how to prune; give the layer a "
    "`get_prunable_weights()` method returning the variables to prune"
)
FILTERED = "excluded by `filters`"
NESTED_SUBCLASSED = (
    "a subclassed model inside the graph; prune it on its own with kp.prune (in place) first"
)
CHANNELS_NOT_REMOVABLE = "channel granularity: none of its channels can be removed"
NOT_BUILT = "not built and not a layer type keras_prune knows"
BATCH_NORM_NOT_FOLLOWING = "in no channel group that is pruned: its scales stay as they are"


@dataclasses.dataclass
class PruneReport:
    """What `prune` wrapped and what it left alone, each with a reason.

    Attributes:
        wrapped: names of the layers now inside a `PruneWrapper`.
        skipped: `{layer name: reason}` for every layer left as it was.
        left_alone: `{weight path: reason}` for every weight that is not pruned (biases,
            normalization, weights of layers keras_prune does not know, ...).
        in_place: True when a subclassed model was pruned in place.
        shares_weights: None, or why the pruned model could not be a copy and shares its layers
            (and weights) with the original.
    """

    wrapped: list = dataclasses.field(default_factory=list)
    skipped: dict = dataclasses.field(default_factory=dict)
    left_alone: dict = dataclasses.field(default_factory=dict)
    in_place: bool = False
    shares_weights: str | None = None

    def __str__(self):
        how = " in place" if self.in_place else ""
        lines = [f"Pruning {len(self.wrapped)} layer(s){how}: {', '.join(self.wrapped) or '-'}"]
        if self.shares_weights:
            lines.append(
                "  the pruned model shares its layers and weights with the original: "
                + self.shares_weights
            )
        for name, reason in self.skipped.items():
            lines.append(f"  skipped {name}: {reason}")
        unknown = {p: r for p, r in self.left_alone.items() if r == layouts.UNKNOWN}
        if unknown:
            lines.append(f"  weights not pruned ({layouts.UNKNOWN}):")
            lines.extend(f"    {path}" for path in unknown)
        return "\n".join(lines)


@dataclasses.dataclass
class _Settings:
    schedule: object
    granularity: object
    mask: object
    criterion: object
    allocation: object

    def wrap(self, layer):
        return PruneWrapper(
            layer,
            schedule=self.schedule,
            granularity=self.granularity,
            mask=self.mask,
            criterion=self.criterion,
            allocation=self.allocation,
        )


def default_allocation(granularity, mask):
    """The allocation `kp.prune` declares when given `allocation="auto"` (its default).

    Binary unstructured masks: one global ranking across all pruned tensors with a floor per
    tensor (`kp.allocation.GlobalAllocation()`). At high sparsity it keeps the accuracy that
    pruning every tensor to the same sparsity loses (docs/methods.md: digits CNN at 99%).
    Anything else is set per layer: learnable masks choose their top-k per layer in the forward
    pass, and structured granularities (channels, blocks, N:M) keep their structure per layer.
    """
    granularity = granularity_lib.get(granularity)
    mask = mask_types.get(mask)
    if isinstance(granularity, granularity_lib.Unstructured) and not mask.learnable:
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
    # A throwaway wrapper validates every argument once, before anything is copied.
    template = PruneWrapper(
        keras.layers.Dense(1),
        schedule=schedule,
        granularity=granularity,
        mask=mask,
        criterion=criterion,
        allocation=allocation,
    )
    return _Settings(
        template.schedule,
        template.granularity,
        template.mask_type,
        template.criterion,
        template.allocation,
    )


def _is_channel(settings):
    return isinstance(settings.granularity, granularity_lib.Channel)


def _removable_layers(model, selected):
    """Names of the layers owning a weight in a channel group that can be removed once wrapped
    (removable by shrink, and every layer creating its channels selected by `filters`), and
    why the other channel-creating layers keep their channels."""
    removable, reasons = set(), {}
    for group in groups_lib.channel_groups(model):
        creators = [m for m in group.members if m.role == "output" and len(m.variable.shape) > 1]
        reason = group.reason
        if reason is None and not all(selected(m.layer) for m in creators):
            reason = "a layer creating its channels is excluded by `filters`"
        for member in group.members:
            if member.role == "input":
                continue
            if reason is None:
                removable.add(member.layer.name)
            elif member.role == "output":
                reasons.setdefault(member.layer.name, reason)
    return removable, reasons


class _Planner:
    """Decides, layer by layer, what `prune` wraps, and fills the report."""

    def __init__(self, settings, selected, report, removable=None, channel_reasons=None):
        self.settings = settings
        self.selected = selected
        self.report = report
        self.removable = removable
        self.channel_reasons = channel_reasons or {}
        self.plan = {}

    def decide(self, layer):
        """The wrapper for `layer`, or `layer` itself, with the reason recorded."""
        reason = self._reason_to_skip(layer)
        if reason is not None:
            why_each = {}
            if reason == NO_PRUNABLE_WEIGHTS:
                why_each = {id(v): why for v, why in layouts.weight_plan(layer).left_alone}
                if layouts.UNKNOWN in why_each.values():
                    reason = UNKNOWN_WEIGHTS
            self.report.skipped[layer.name] = reason
            for variable in layer.weights:
                self.report.left_alone.setdefault(variable.path, why_each.get(id(variable), reason))
            return layer
        wrapper = self.settings.wrap(layer)
        self.report.wrapped.append(layer.name)
        self.plan[layer.name] = wrapper_settings(wrapper)
        if layer.built:
            for variable, why in layouts.weight_plan(layer).left_alone:
                self.report.left_alone[variable.path] = why
            for target in layouts.prunable_weights(layer):
                try:
                    self.settings.granularity.check(target)
                except ValueError as error:
                    self.report.left_alone[target.variable.path] = str(error)
        return wrapper

    def _reason_to_skip(self, layer):
        if isinstance(layer, PruneWrapper):
            return ALREADY_WRAPPED
        if isinstance(layer, keras.Model):
            return NESTED_SUBCLASSED
        if not layer.built:
            return None if layouts.is_known_prunable(layer) else NOT_BUILT
        if _is_channel(self.settings) and layouts.channelwise_weights(layer):
            # A BatchNormalization follows the channels of its group, whatever `filters` says.
            if self.removable is None or layer.name in self.removable:
                return None
            return BATCH_NORM_NOT_FOLLOWING
        if not layouts.prunable_weights(layer):
            return NO_PRUNABLE_WEIGHTS
        if not self.selected(layer):
            return FILTERED
        if _is_channel(self.settings):
            if self.removable is not None and layer.name not in self.removable:
                if getattr(self.settings.granularity, "only_removable", True):
                    why = self.channel_reasons.get(layer.name)
                    return CHANNELS_NOT_REMOVABLE + (f" ({why})" if why else "")
        errors = []
        for target in layouts.prunable_weights(layer):
            try:
                self.settings.granularity.check(target)
            except ValueError as error:
                errors.append(str(error))
        if errors and len(errors) == len(layouts.prunable_weights(layer)):
            return errors[0]
        return None


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
        granularity: "unstructured", "channel", "2:4" or a `kp.granularity.Block` /
            `kp.granularity.NofM` / `kp.granularity.Channel` instance. At channel granularity
            only layers whose channels `kp.shrink` can remove are wrapped (their
            BatchNormalizations too), unless `kp.granularity.Channel(only_removable=False)`.
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
        return settings.wrap(model)
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
    if _is_channel(settings) and fresh.built:
        removable, reasons = _removable_layers(fresh, selected)
    planner = _Planner(settings, selected, report, removable, reasons)
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
    if keras.backend.backend() == "jax":
        raise NotImplementedError(
            f"Model {model.name!r} is subclassed, so kp.prune prunes it in place, which holds "
            "masked weights at zero with variable constraints that JAX's `fit` does not run. "
            "Use the TensorFlow or torch backend, or build the model with the Functional API."
        )
    if isinstance(settings.mask, type(settings.mask)) and settings.mask.learnable:
        raise ValueError(
            f"Model {model.name!r} is subclassed, so kp.prune prunes it in place with binary "
            "masks; learnable masks need the wrapper in the forward pass. Use mask='binary', or "
            "wrap layers yourself: `self.dense = kp.PruneWrapper(keras.layers.Dense(64), "
            "mask='learnable')`."
        )
    if _is_channel(settings):
        raise ValueError(
            f"Model {model.name!r} is subclassed: channel granularity needs the model's graph "
            "to couple channels (and kp.shrink to remove them). Use unstructured, block or N:M "
            "granularity in place, or build the model with the Functional API."
        )
    report = PruneReport(in_place=True)
    planner = _Planner(settings, selected, report)
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
