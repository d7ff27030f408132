"""`sensitivity`: how much a metric drops when each layer (or channel group) alone is pruned.

For every prunable layer (`granularity="unstructured"`) or removable channel group
(`granularity="channel"`), the weights are pruned one-shot to each sparsity of a grid, the
metric is measured on a fixed sample of the validation data, and the weights are restored. The
layers are visited in graph order and the activations in front of each one are computed once
and reused (`keras_prune.auto.replay`), so each measurement runs only the part of the model
from that layer on. Results are cached on disk, keyed by the model, its weights, the data
sample and the settings.
"""

import dataclasses
import time

import keras
import numpy as np

from keras_prune.auto import cache as cache_lib
from keras_prune.auto import data as data_lib
from keras_prune.auto import selection
from keras_prune.auto.replay import Replay
from keras_prune.auto.sensitivity_allocation import SensitivityAllocation
from keras_prune.core import criteria as criteria_lib
from keras_prune.core import masks as masks_lib
from keras_prune.core import validation
from keras_prune.graph import channel_importance, tracing
from keras_prune.graph import groups as groups_lib
from keras_prune.layers import layouts
from keras_prune.reporting import text_tables
from keras_prune.surgery import zeros

DEFAULT_SPARSITIES = {
    # Dense near the top: an allocation can give a layer at most the grid's largest value,
    # so reaching 99% overall needs the robust layers above 99%.
    "unstructured": (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995),
    "channel": (0.125, 0.25, 0.5, 0.75),
}
_CACHE_KIND = "sensitivity"
_CACHE_VERSION = 1


def _is_lower_better(name):
    return any(word in name for word in ("loss", "error", "crossentropy", "mse", "mae"))


class _Scorer:
    """Scores predictions with the model's compiled loss and metrics, or a user function."""

    def __init__(self, model, metric, higher_is_better):
        self.function = None
        self.head = None
        if callable(metric):
            if higher_is_better is None:
                raise ValueError(
                    "Expected `higher_is_better=True` or `False` with a callable `metric` (is a "
                    "larger value better, like accuracy, or worse, like a loss?)."
                )
            self.function, self.name = metric, getattr(metric, "__name__", "metric")
            self.higher_is_better = validation.check_bool("higher_is_better", higher_is_better)
            return
        if not getattr(model, "compiled", False):
            raise ValueError(
                f"Expected a compiled model (its loss and metrics are measured) or a `metric`. "
                f"Model {model.name!r} is not compiled: call `model.compile(loss=..., "
                "metrics=[...])` first, or pass metric=lambda y_true, y_pred: ... with "
                "higher_is_better=."
            )
        self.head = _identity_head(model)
        self.name = "loss" if metric is None else metric
        if not isinstance(self.name, str):
            raise ValueError(
                "Expected `metric` to be None (the compiled loss), the name of a compiled "
                f"metric, or a callable (y_true, y_pred) -> float. Received: metric={metric!r}"
            )
        self.higher_is_better = (
            not _is_lower_better(self.name) if higher_is_better is None else higher_is_better
        )

    def __call__(self, y_true, y_pred):
        """`(primary value, {every value})`."""
        if self.function is not None:
            value = float(self.function(y_true, y_pred))
            return value, {self.name: value}
        values = self.head.test_on_batch(y_pred, y_true, return_dict=True)
        values = {key: float(value) for key, value in values.items()}
        if self.name not in values:
            raise ValueError(
                f"Expected `metric` to name one of the compiled values {sorted(values)}. "
                f"Received: metric={self.name!r}"
            )
        return values[self.name], values

    def drop(self, baseline, value):
        return baseline - value if self.higher_is_better else value - baseline


def _identity_head(model):
    """A model that passes predictions through, compiled like `model`: evaluating it on
    predictions gives `model`'s compiled loss and metrics."""
    outputs = [tuple(tensor.shape)[1:] for tensor in model.outputs]
    inputs = [keras.Input(shape) for shape in outputs]
    passed = [keras.layers.Identity()(tensor) for tensor in inputs]
    head = keras.Model(
        inputs if len(inputs) > 1 else inputs[0], passed if len(passed) > 1 else passed[0]
    )
    head.compile_from_config(model.get_compile_config())
    return head


@dataclasses.dataclass
class _Unit:
    """One thing pruned alone: a layer's prunable weights or a channel group."""

    name: str
    layers: list  # names used by the allocation
    graph_layers: list  # layer objects, to find where the cut goes
    size: int
    prune: object  # callable(sparsity)
    variables: list  # everything `prune` may change

    def save(self):
        return [np.array(keras.ops.convert_to_numpy(v)) for v in self.variables]

    def restore(self, values):
        for variable, value in zip(self.variables, values, strict=True):
            variable.assign(value)


def _layer_units(model, selected, criterion):
    units = []
    for layer in tracing.trace(model).layers():
        if not selected(layer):
            continue
        weights = layouts.prunable_weights(layer)
        if not weights:
            continue

        def prune(sparsity, weights=weights):
            for weight in weights:
                scores = criterion(weight.variable, None)
                mask = masks_lib.sparsity_mask(scores, sparsity)
                weight.variable.assign(
                    weight.variable * keras.ops.cast(mask, weight.variable.dtype)
                )

        units.append(
            _Unit(
                layer.name,
                [layer.name],
                [layer],
                int(sum(np.prod(w.variable.shape) for w in weights)),
                prune,
                [w.variable for w in weights],
            )
        )
    return units


def _group_units(model, selected, criterion):
    units = []
    for group in groups_lib.channel_groups(model):
        creators = [m for m in group.members if m.role == "output" and len(m.variable.shape) > 1]
        if not group.prunable or not creators:
            continue
        if not all(selected(groups_lib.unwrap(m.layer)) for m in creators):
            continue
        touched = [m for m in group.members if m.role != "input"]
        variables = list({id(m.variable): m.variable for m in touched}.values())
        scores = channel_importance.channel_scores(group, criterion)

        def prune(sparsity, group=group, scores=scores):
            count = min(int(round(group.size * sparsity)), group.size - 1)
            if count > 0:
                channels = np.sort(np.argsort(scores, kind="stable")[:count])
                zeros.zero_group_channels(group, channels)

        names = list(dict.fromkeys(m.layer.name for m in creators))
        units.append(
            _Unit(
                f"group {group.index}: " + ", ".join(names),
                names,
                [m.layer for m in touched],
                int(sum(np.prod(m.variable.shape) for m in touched)),
                prune,
                variables,
            )
        )
    return units


@dataclasses.dataclass
class Sensitivity:
    """Per-layer (or per-group) sensitivity curves.

    Attributes:
        granularity: "unstructured" or "channel".
        sparsities: the grid each unit was pruned to.
        metric: the measured value's name; `higher_is_better` its direction.
        baseline: its value on the unpruned model; `baseline_values`: every compiled value.
        units: one dict per layer / group: `name`, `layers` (the layer names an allocation
            uses), `size` (weights), `values` (metric at each sparsity) and `drops` (how much
            worse than the baseline, positive = worse).
        samples: examples the metric was measured on; `seconds`: time the scan took.

    Example:

    ```python
    scan = kp.auto.sensitivity(model, (x, y), verbose=0)
    scan.sparsities_for(0.9)  # {"conv1": 0.71, "dense": 0.93, ...}
    ```
    """

    granularity: str
    sparsities: list
    metric: str
    higher_is_better: bool
    baseline: float
    baseline_values: dict
    units: list
    samples: int
    seconds: float = 0.0

    def curves(self):
        """`{unit name: (sparsities, drops)}`."""
        return {unit["name"]: (list(self.sparsities), list(unit["drops"])) for unit in self.units}

    def layer_curves(self):
        """`{layer name: drops}` (a group's curve for each layer that creates its channels)."""
        return {name: list(unit["drops"]) for unit in self.units for name in unit["layers"]}

    def layer_sizes(self):
        return {name: unit["size"] for unit in self.units for name in unit["layers"]}

    def allocation(self, max_sparsity=None):
        """A `SensitivityAllocation` (equal drop per layer) for `kp.prune_once`,
        `kp.PruningCallback` or `kp.pruning.update_masks` (`allocation=`)."""
        return SensitivityAllocation(self.layer_curves(), list(self.sparsities), max_sparsity)

    def sparsities_for(self, sparsity, max_sparsity=None):
        """`{layer name: sparsity}` the allocation gives for an overall `sparsity`."""
        return self.allocation(max_sparsity).sparsities_for(sparsity, self.layer_sizes())

    def table(self, width=110):
        """The curves as a text table (drops; the most sensitive units first)."""
        from rich.table import Table

        direction = "higher is better" if self.higher_is_better else "lower is better"
        table = Table(
            title=f"Sensitivity: {self.metric} drop when pruned alone ({self.granularity}, "
            f"baseline {self.baseline:.4g}, {direction}, {self.samples} samples)"
        )
        table.add_column("layer" if self.granularity == "unstructured" else "channel group")
        table.add_column("weights", justify="right")
        for sparsity in self.sparsities:
            table.add_column(f"{sparsity:g}", justify="right")
        for unit in sorted(self.units, key=lambda u: -max(u["drops"], default=0)):
            table.add_row(
                unit["name"][:40],
                f"{unit['size']:,}",
                *(f"{drop:+.4f}" for drop in unit["drops"]),
            )
        return text_tables.as_text(table, width)

    def __str__(self):
        return self.table()

    def plot(self, path, legend_limit=12):
        """Writes the curves as a PNG (matplotlib: `pip install keras-prune[plots]`)."""
        from keras_prune.reporting import plots

        return plots.line_curves(
            self.curves(),
            path,
            title=f"Sensitivity ({self.granularity}): {self.metric} drop, one unit pruned alone",
            xlabel="sparsity of the unit",
            ylabel=f"{self.metric} drop",
            legend_limit=legend_limit,
        )

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        return cls(**values)


def sensitivity(
    model,
    validation_data,
    *,
    granularity="unstructured",
    sparsities=None,
    metric=None,
    higher_is_better=None,
    criterion="magnitude",
    filters=None,
    samples=512,
    batch_size=128,
    cache_dir=None,
    verbose=1,
):
    """Prune each layer (or channel group) alone at a grid of sparsities and measure the drop.

    Every measurement prunes one unit of a copy of `model` one-shot, evaluates the metric on a
    fixed sample of `validation_data` and restores the weights (`model` is never changed).
    Activations in front of each unit are computed once and reused. The result's
    `allocation()` turns the curves into per-layer sparsities of equal drop for any overall
    target.

    Args:
        model: a built Sequential or Functional model, compiled unless `metric` is a callable.
        validation_data: `(x, y)` arrays or a dataset of `(x, y)` batches the metric is
            measured on (at most `samples` examples of it, a fixed random subset).
        granularity: "unstructured" (one curve per prunable layer, weights ranked by
            `criterion`) or "channel" (one curve per removable channel group, channels ranked
            by `criterion` over every weight they own, as `kp.prune_channels`).
        sparsities: the grid, increasing, in (0, 1). Default: 0.3 ... 0.995 (unstructured),
            1/8, 1/4, 1/2, 3/4 (channel). The allocation prunes no layer beyond the largest
            value, so an overall target needs a grid reaching above it.
        metric: None (the compiled loss; every compiled metric is recorded too), the name of a
            compiled metric ("accuracy"), or a callable `(y_true, y_pred) -> float`.
        higher_is_better: the metric's direction; inferred for names (losses and errors are
            lower-better), required for a callable.
        criterion: how weights (or channels) are ranked: a `kp.criteria` name or instance
            that needs no gradients ("magnitude", the default, "l2", "random", "bn_scale").
        filters: which layers to scan (see `kp.prune`); a group is scanned when every layer
            creating its channels matches.
        samples: at most this many examples are evaluated.
        batch_size: examples per forward batch.
        cache_dir: where results are cached (default `~/.cache/keras_prune`; False: off).
        verbose: 1 shows a progress bar.

    Returns:
        A `Sensitivity`: `.table()`, `.plot(path)`, `.allocation()`, `.sparsities_for(s)`.

    Example:

    ```python
    scan = kp.auto.sensitivity(model, (x, y), metric="accuracy", verbose=0)
    print(scan.table())
    scan.plot("sensitivity.png")
    pruned = kp.prune_once(model, 0.95, allocation=scan.allocation())
    ```
    """
    validation.check_choice("granularity", granularity, set(DEFAULT_SPARSITIES))
    grid = list(DEFAULT_SPARSITIES[granularity] if sparsities is None else sparsities)
    if not grid:
        raise ValueError("Expected at least one value in `sparsities`. Received: sparsities=[]")
    grid = [validation.check_sparsity(f"sparsities[{i}]", value) for i, value in enumerate(grid)]
    if sorted(set(grid)) != grid or grid[0] <= 0:
        raise ValueError(
            f"Expected `sparsities` increasing and above 0. Received: sparsities={grid}"
        )
    batch_size = validation.check_int("batch_size", batch_size, minimum=1)
    chosen = criteria_lib.get(criterion)
    if chosen.needs_gradients:
        raise ValueError(
            f"Expected a `criterion` that needs no gradients (e.g. 'magnitude'). Received: "
            f"criterion={criterion!r}"
        )
    if not isinstance(model, keras.Model):
        raise TypeError(f"Expected a keras.Model. Received: model={model!r}")
    x, y = data_lib.evaluation_arrays(model, validation_data, samples=samples)
    scorer = _Scorer(model, metric, higher_is_better)
    key = None
    if not callable(metric):
        key = cache_lib.key(
            _CACHE_VERSION,
            cache_lib.model_digest(model),
            model.get_compile_config() if getattr(model, "compiled", False) else None,
            data_lib.digest_arrays(x, y),
            granularity,
            grid,
            scorer.name,
            repr(chosen),
            filters if isinstance(filters, (str, list, tuple, type(None))) else repr(filters),
        )
        cached = cache_lib.load(cache_dir, _CACHE_KIND, key)
        if cached is not None:
            return Sensitivity.from_dict(cached)
    start = time.perf_counter()
    working = selection.working_copy(model)
    selected = selection.layer_filter(filters)
    units = (
        _layer_units(working, selected, chosen)
        if granularity == "unstructured"
        else _group_units(working, selected, chosen)
    )
    if not units:
        what = "prunable layer" if granularity == "unstructured" else "removable channel group"
        raise ValueError(
            f"Model {model.name!r} has no {what}"
            + (f" matching filters={filters!r}" if filters is not None else "")
            + "."
        )
    replay = Replay(working, x, batch_size)
    baseline, baseline_values = scorer(y, replay.predict_from(0))
    order = sorted(units, key=lambda unit: replay.first_call_of(unit.graph_layers))
    progress = keras.utils.Progbar(len(order) * len(grid)) if verbose else None
    rows = []
    for unit in order:
        replay.advance(replay.first_call_of(unit.graph_layers))
        saved = unit.save()
        values = []
        for sparsity in grid:
            unit.prune(sparsity)
            value, _ = scorer(y, replay.predict_from(replay.position))
            values.append(value)
            unit.restore(saved)
            if progress is not None:
                progress.add(1, [("unit", len(rows) + 1)])
        rows.append(
            {
                "name": unit.name,
                "layers": unit.layers,
                "size": unit.size,
                "values": values,
                "drops": [scorer.drop(baseline, value) for value in values],
            }
        )
    result = Sensitivity(
        granularity=granularity,
        sparsities=grid,
        metric=scorer.name,
        higher_is_better=scorer.higher_is_better,
        baseline=baseline,
        baseline_values=baseline_values,
        units=rows,
        samples=len(keras.tree.flatten(x)[0]),
        seconds=time.perf_counter() - start,
    )
    if key is not None:
        cache_lib.store(cache_dir, _CACHE_KIND, key, result.to_dict())
    return result
