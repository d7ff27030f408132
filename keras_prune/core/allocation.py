"""How a target sparsity is spread across the pruned layers.

- `PerLayerAllocation` (the default): every tensor at the scheduled sparsity, with optional
  per-layer overrides (keep the first conv and the classifier denser).
- `GlobalAllocation`: one ranking of the criterion's scores across all pruned tensors; exactly
  the global target is pruned, and each tensor keeps at least `min_density` of its weights.
- `ThresholdAllocation`: prune every weight (or channel) scoring below a fixed threshold.
- `PercentileAllocation`: the threshold is a percentile of all scores pooled together.
- `ERKAllocation`: Erdos-Renyi-Kernel densities (Evci et al. 2020), denser for small layers;
  the usual distribution for sparse-from-scratch training. `erk_sparsities` computes it.

An allocation computes binary masks (the mask engine installs them); pass it to
`kp.PruningCallback(allocation=...)`, `kp.pruning.update_masks(..., allocation=...)` or
`kp.prune_once(..., allocation=...)`.
"""

import dataclasses
import functools
import math
import numbers
import re

import keras
from keras import ops

from keras_prune.core import granularity as granularity_lib
from keras_prune.core import masks, registry, validation
from keras_prune.core.config_object import ConfigObject

__all__ = [
    "Allocation",
    "ERKAllocation",
    "GlobalAllocation",
    "LayerScores",
    "PercentileAllocation",
    "PerLayerAllocation",
    "ThresholdAllocation",
    "deserialize",
    "erk_sparsities",
    "get",
    "global_masks",
    "serialize",
    "threshold_mask",
]


@dataclasses.dataclass
class LayerScores:
    """What an allocation sees of one pruned layer: its name, granularity, the layout of each
    pruned weight (`output_axis`, `input_axis`, `bias`) and one score tensor per weight.

    Allocations are pure: they read these and return masks; the mask engine installs them.
    """

    name: str
    granularity: object
    weights: list
    scores: list
    #: Whether every score is known to be >= 0 (magnitudes): rankings then skip a key transform.
    nonnegative: bool = False
    #: `rescore(index, after)` computes the scores of weight `index` again, the same values
    #: (None if the criterion cannot promise that): a ranking passing over the scores several
    #: times can then recompute them rather than hold every tensor's. `after` (None or a
    #: tensor) is what the ranking computes first: the mask engine makes a traced computation
    #: wait for it, so the tensors' scores are computed one after the other.
    rescore: object = None

    def masks_at(self, sparsity):
        """`[(mask, bias_mask_or_None)]` at one sparsity for all weights, or one per weight."""
        sparsities = (
            sparsity if isinstance(sparsity, (list, tuple)) else [sparsity] * len(self.weights)
        )
        if len(sparsities) != len(self.weights):
            raise ValueError(
                f"Expected one sparsity per pruned weight of {self.name!r} "
                f"({len(self.weights)}). Received: {len(sparsities)} values"
            )
        sparsities = [getattr(self.granularity, "sparsity", value) for value in sparsities]
        compute = self.granularity.compute_mask
        if type(self.granularity) is granularity_lib.Unstructured:
            # Exactly Unstructured (a subclass may override compute_mask): the masks come as
            # the wrappers store them (uint8, as GlobalAllocation's do), not as float32 masks
            # converted on install (two full passes fewer per tensor), and magnitudes rank by
            # their float bits as they are (three fewer). That counts when masks are updated
            # at every step.
            def compute(scores, sparsity, weight, nonnegative=self.nonnegative):
                return masks.sparsity_mask(scores, sparsity, nonnegative, dtype="uint8"), None

        return [
            compute(scores, value, weight)
            for scores, value, weight in zip(self.scores, sparsities, self.weights, strict=True)
        ]


class Allocation(ConfigObject):
    """Base class: subclasses implement `allocate(layers, sparsities)`.

    `allocate` takes one `LayerScores` per pruned layer and the sparsity each layer's schedule
    asks for, and returns for each layer its list of `(mask, bias_mask_or_None)` (one per
    pruned weight). It computes masks only; `keras_prune.engine` installs them.
    """

    #: Whether `allocate` is written in tensor operations only (sparsities may be tensors), so
    #: the mask engine can trace it once and call it at every update.
    compilable = False
    #: Whether `allocate` sets each layer's masks from that layer alone (so the layers can be
    #: computed in separate calls).
    separable = False

    def allocate(self, layers, sparsities):
        raise NotImplementedError(f"{type(self).__name__} must implement `allocate`.")

    def check(self, sizes, sparsities):
        """Refuse, before any work, what `allocate` cannot do: `sizes` holds each layer's
        weight sizes, `sparsities` each layer's asked sparsity (Python floats)."""


def _check_unstructured(layers, allocation):
    for layer in layers:
        if not isinstance(layer.granularity, granularity_lib.Unstructured):
            raise ValueError(
                f"{allocation} ranks single weights, but layer {layer.name!r} prunes with "
                f"{layer.granularity!r}. Use granularity='unstructured' with this allocation, "
                "or PerLayerAllocation for structured patterns."
            )


@keras.saving.register_keras_serializable(package="keras_prune")
class PerLayerAllocation(Allocation):
    """Each tensor at the scheduled sparsity, unless an override says otherwise.

    Args:
        overrides: None, a dict `{layer-name regex: value}` (first match wins) or a callable
            `(layer_name, scheduled_sparsity) -> sparsity`. A number caps the layer's sparsity
            (`{"conv1": 0.5}` prunes conv1 like the others until 0.5, then holds it there); a
            callable value `(layer_name, scheduled_sparsity) -> sparsity` sets it freely.

    Example:

    ```python
    callback = kp.PruningCallback(
        allocation=kp.allocation.PerLayerAllocation({"conv1": 0.3, "logits": 0.5}))
    ```
    """

    def __init__(self, overrides=None):
        if isinstance(overrides, dict) and "class_name" in overrides:
            overrides = keras.saving.deserialize_keras_object(overrides)
        if isinstance(overrides, dict):
            overrides = {
                pattern: keras.saving.deserialize_keras_object(value)
                if isinstance(value, dict)
                else value
                for pattern, value in overrides.items()
            }
            for pattern, value in overrides.items():
                validation.compile_regex("overrides", pattern)
                if not callable(value):
                    validation.check_sparsity(f"overrides[{pattern!r}]", value)
        elif overrides is not None and not callable(overrides):
            raise TypeError(
                "Expected `overrides` to be None, a dict {layer-name regex: sparsity cap or "
                "callable}, or a callable (layer_name, sparsity) -> sparsity. "
                f"Received: overrides={overrides!r}"
            )
        self.overrides = overrides

    separable = True

    @property
    def compilable(self):
        return self.overrides is None

    def sparsity_for(self, layer_name, sparsity):
        """The sparsity layer `layer_name` gets when the schedule asks for `sparsity`."""
        if self.overrides is None:
            return sparsity
        if callable(self.overrides):
            return self._checked(layer_name, self.overrides(layer_name, sparsity))
        for pattern, value in self.overrides.items():
            if re.search(pattern, layer_name):
                if callable(value):
                    return self._checked(layer_name, value(layer_name, sparsity))
                return min(sparsity, value)
        return sparsity

    @staticmethod
    def _checked(layer_name, sparsity):
        validation.check_sparsity(f"sparsity for {layer_name}", float(sparsity))
        return float(sparsity)

    def allocate(self, layers, sparsities):
        return [
            layer.masks_at(self.sparsity_for(layer.name, sparsity))
            for layer, sparsity in zip(layers, sparsities, strict=True)
        ]

    def get_config(self):
        if self.overrides is None or isinstance(self.overrides, dict):
            overrides = self.overrides and {
                pattern: keras.saving.serialize_keras_object(value) if callable(value) else value
                for pattern, value in self.overrides.items()
            }
        else:
            overrides = keras.saving.serialize_keras_object(self.overrides)
        return {"overrides": overrides}

    def __eq__(self, other):
        return type(self) is type(other) and repr(self.overrides) == repr(other.overrides)


def _check_floors(sizes, sparsity, min_density):
    floors = [max(math.ceil(min_density * size - 1e-9), 1) for size in sizes]
    kept = masks.keep_count(sum(sizes), sparsity)
    if sum(floors) > kept:
        raise ValueError(
            f"The per-layer floors keep {sum(floors)} weights but sparsity={sparsity} keeps only "
            f"{kept} of {sum(sizes)}. Lower `min_density` (now {min_density}) or the sparsity."
        )


# From this many weights ranked together, the global ranking computes the scores again in each
# pass rather than hold them (4 bytes per weight: 16 MB here).
_RESCORE_FROM = 1 << 22


def global_masks(
    scores, sparsity, min_density=0.0, dtype="float32", nonnegative=False, rescore=None
):
    """Masks for a list of score tensors ranked together: exactly `keep_count(total, sparsity)`
    entries survive overall, and tensor i keeps at least `max(ceil(min_density * n_i), 1)` of its
    own highest-scored entries. `dtype` is the masks' ("uint8", as the wrappers store them, takes
    a quarter of float32's memory); `nonnegative=True` promises no score is negative, and
    `rescore` (functions computing each score tensor again) lets the ranking recompute the
    scores in each pass rather than hold them all (see `kp.masks.top_k_masks_together`).

    Example:

    ```python
    kp.allocation.global_masks([np.array([5.0, 4.0]), np.array([0.1, 0.2])], 0.5,
                               min_density=0.5)  # [[1, 0], [0, 1]]
    ```
    """
    sizes = [math.prod(ops.shape(tensor)) for tensor in scores]
    floors = [max(math.ceil(min_density * size - 1e-9), 1) for size in sizes]
    if isinstance(sparsity, numbers.Real):
        _check_floors(sizes, sparsity, min_density)
    kept = masks.keep_count(sum(sizes), sparsity)
    # Usually every tensor keeps its floor anyway: then the plain global ranking is the answer
    # (the floors' own selections, one per tensor, are skipped). Otherwise each tensor's floor
    # is forced in, 1 byte per entry rather than a boosted copy of the scores; where the plain
    # ranking already kept the floors, both give the same masks. So lower bounds of what each
    # tensor keeps are enough to choose (read from the ranking's histograms: no count over the
    # masks, two passes fewer per tensor at every update).
    plain, counts = masks.top_k_masks_and_counts(
        scores, kept, dtype=dtype, nonnegative=nonnegative, rescore=rescore, exact_counts=False
    )
    enough = ops.all(
        ops.stack([count >= floor for count, floor in zip(counts, floors, strict=True)])
    )
    sources = rescore or [lambda after, tensor=tensor: tensor for tensor in scores]

    def with_floors():
        forced = [
            masks.few_largest(source(None), floor)
            for source, floor in zip(sources, floors, strict=True)
        ]
        return masks.top_k_masks_together(
            scores, kept, forced, dtype=dtype, nonnegative=nonnegative, rescore=rescore
        )

    return ops.cond(enough, lambda: plain, with_floors)


def _split(flat, layers):
    result, position = [], 0
    for layer in layers:
        count = len(layer.weights)
        result.append([(mask, None) for mask in flat[position : position + count]])
        position += count
    return result


@keras.saving.register_keras_serializable(package="keras_prune")
class GlobalAllocation(Allocation):
    """One ranking of scores across every pruned tensor: exactly the target is pruned overall.

    Layers whose weights matter less (by the criterion) give up more, which lets a large
    classifier layer carry most of the sparsity while small layers stay dense. Every tensor
    keeps at least `max(ceil(min_density * n), 1)` weights, so no layer is emptied; keep
    `min_density` well below `1 - sparsity` (the floors are forced, the rest is ranked). Scores are
    compared as they are, so use a criterion whose scale is comparable across layers
    (magnitude with Keras' default initializers is).

    Args:
        min_density: fraction of each tensor always kept, in [0, 1).

    Example:

    ```python
    pruned.fit(x, y,
    callbacks=[kp.PruningCallback(allocation=kp.allocation.GlobalAllocation(0.001))])
    ```
    """

    def __init__(self, min_density=0.001):
        validation.check_sparsity("min_density", min_density)
        self.min_density = float(min_density)

    compilable = True

    def check(self, sizes, sparsities):
        if len(set(sparsities)) > 1:
            raise ValueError(
                "GlobalAllocation ranks all layers together, so their schedules must ask for the "
                f"same sparsity at the same step. Received: {sparsities}"
            )
        flat = [size for layer in sizes for size in layer]
        _check_floors(flat, sparsities[0], self.min_density)

    def allocate(self, layers, sparsities):
        _check_unstructured(layers, "GlobalAllocation")
        if all(isinstance(s, numbers.Real) for s in sparsities):
            self.check(
                [[math.prod(ops.shape(s)) for s in layer.scores] for layer in layers],
                list(sparsities),
            )
        scores = [tensor for layer in layers for tensor in layer.scores]
        # One byte per weight, the dtype the wrappers store: float32 masks of every tensor at
        # once would take as much memory as the weights themselves.
        nonnegative = all(layer.nonnegative for layer in layers)
        # Scores computed again in each radix pass (where every criterion allows it) are never
        # all alive at once: one tensor's at a time, rather than 4 bytes per weight of all.
        # Below `_RESCORE_FROM` weights holding them costs little memory and saves two passes
        # over every weight (reading and scoring it again): 10-20% of an update of a small
        # model, which matters when masks are updated at every step.
        rescore = None
        total = sum(math.prod(ops.shape(tensor)) for tensor in scores)
        if total >= _RESCORE_FROM and all(layer.rescore is not None for layer in layers):
            rescore = [
                functools.partial(layer.rescore, index)
                for layer in layers
                for index in range(len(layer.scores))
            ]
        flat = global_masks(
            scores,
            sparsities[0],
            self.min_density,
            dtype="uint8",
            nonnegative=nonnegative,
            rescore=rescore,
        )
        return _split(flat, layers)

    def get_config(self):
        return {"min_density": self.min_density}


def threshold_mask(scores, threshold):
    """Keep `scores >= threshold`, and always the single highest score (no tensor is emptied)."""
    above = ops.cast(ops.greater_equal(scores, threshold), "float32")
    return ops.maximum(above, masks.top_k_mask(scores, 1))


@keras.saving.register_keras_serializable(package="keras_prune")
class ThresholdAllocation(Allocation):
    """Prune every weight whose score is below `threshold` (with channel granularity: every
    channel whose score norm is below it); the schedule only decides when.

    Pair it with a sparsity-inducing penalty (`kp.regularizers.L1`, `GroupLasso`) to zero what
    the penalty shrank. Each tensor keeps at least its highest-scored weight or channel.

    Args:
        threshold: scores below it are pruned (>= 0).

    Example:

    ```python
    pruned = kp.prune_once(model, sparsity=0.0, granularity="channel",
                           allocation=kp.allocation.ThresholdAllocation(1e-3))
    ```
    """

    def __init__(self, threshold):
        self.threshold = validation.check_real("threshold", threshold, low=0)

    def allocate(self, layers, sparsities):
        result = []
        for layer in layers:
            granularity = layer.granularity
            layer_masks = []
            for weight, scores in zip(layer.weights, layer.scores, strict=True):
                if isinstance(granularity, granularity_lib.Unstructured):
                    layer_masks.append((threshold_mask(scores, self.threshold), None))
                elif isinstance(granularity, granularity_lib.Channel):
                    keep = self._channels_above(granularity.norm)
                    layer_masks.append(granularity.mask_of_kept_channels(scores, weight, keep))
                else:
                    raise ValueError(
                        f"ThresholdAllocation supports unstructured and channel granularity; "
                        f"layer {layer.name!r} uses {granularity!r}."
                    )
            result.append(layer_masks)
        return result

    def _channels_above(self, norm):
        """Chooses the channels (rows) whose score norm reaches the threshold."""
        return lambda view: threshold_mask(masks.row_norms(view, norm), self.threshold)

    def get_config(self):
        return {"threshold": self.threshold}


@keras.saving.register_keras_serializable(package="keras_prune")
class PercentileAllocation(Allocation):
    """Prune scores below the `percentile`-th percentile of all scores pooled across layers.

    Like `GlobalAllocation` but by threshold: ties at the threshold are all kept, so the
    realised sparsity can fall short of `percentile / 100` when many scores are equal.

    Args:
        percentile: in [0, 100).

    Example:

    ```python
    kp.pruning.update_masks(pruned, step=0, allocation=kp.allocation.PercentileAllocation(80))
    ```
    """

    def __init__(self, percentile):
        self.percentile = validation.check_real(
            "percentile", percentile, low=0, high=100, high_open=True
        )

    def allocate(self, layers, sparsities):
        _check_unstructured(layers, "PercentileAllocation")
        scores = [tensor for layer in layers for tensor in layer.scores]
        pooled = ops.concatenate([ops.reshape(ops.cast(t, "float32"), (-1,)) for t in scores])
        threshold = ops.quantile(pooled, self.percentile / 100.0, method="lower")
        flat = [threshold_mask(tensor, threshold) for tensor in scores]
        return _split(flat, layers)

    def get_config(self):
        return {"percentile": self.percentile}


def erk_sparsities(shapes, sparsity, power_scale=1.0):
    """Per-tensor sparsities of the Erdos-Renyi-Kernel distribution at overall `sparsity`.

    Density of a tensor is proportional to `(sum(shape) / prod(shape)) ** power_scale`, scaled so
    that the total number of kept weights equals `(1 - sparsity) * total`; tensors that would
    exceed density 1 are kept dense and the rest rescaled (RigL's algorithm). `power_scale=0`
    gives the uniform distribution.

    Args:
        shapes: list of weight shapes.
        sparsity: overall sparsity in [0, 1).
        power_scale: exponent on the ERK ratio.

    Example:

    ```python
    kp.allocation.erk_sparsities([(3, 3, 1, 8), (1152, 256), (256, 10)], 0.9)
    ```
    """
    validation.check_sparsity("sparsity", sparsity)
    density = 1.0 - sparsity
    sizes = [math.prod(shape) for shape in shapes]
    raw = [(sum(shape) / size) ** power_scale for shape, size in zip(shapes, sizes, strict=True)]
    dense = set()
    while True:
        budget = sum(size * density for size in sizes) - sum(sizes[i] for i in dense)
        divisor = sum(raw[i] * sizes[i] for i in range(len(shapes)) if i not in dense)
        if divisor == 0:
            break
        epsilon = budget / divisor
        overfull = [i for i in range(len(shapes)) if i not in dense and epsilon * raw[i] > 1.0]
        if not overfull:
            break
        dense.update(overfull)
    return [0.0 if i in dense else max(0.0, 1.0 - epsilon * raw[i]) for i in range(len(shapes))]


@keras.saving.register_keras_serializable(package="keras_prune")
class ERKAllocation(Allocation):
    """Erdos-Renyi-Kernel per-tensor sparsities for the scheduled overall sparsity.

    Small tensors (first conv, classifier) stay denser, large ones sparser; the overall count
    matches the target. Within each tensor the criterion picks which weights stay.

    Args:
        power_scale: exponent on the ERK ratio; 0 is uniform.

    Example:

    ```python
    pruned.fit(x, y, callbacks=[kp.PruningCallback(allocation=kp.allocation.ERKAllocation())])
    ```
    """

    def __init__(self, power_scale=1.0):
        self.power_scale = validation.check_real(
            "power_scale", power_scale, low=0, hint="0 spreads the sparsity uniformly."
        )

    def allocate(self, layers, sparsities):
        shapes = [tuple(ops.shape(scores)) for layer in layers for scores in layer.scores]
        if len(set(sparsities)) > 1:
            raise ValueError(
                "ERKAllocation spreads one overall sparsity, so all schedules must ask for the "
                f"same sparsity at the same step. Received: {sparsities}"
            )
        per_tensor = iter(erk_sparsities(shapes, sparsities[0], self.power_scale))
        return [layer.masks_at([next(per_tensor) for _ in layer.weights]) for layer in layers]

    def get_config(self):
        return {"power_scale": self.power_scale}


ALIASES = {
    "per_layer": PerLayerAllocation,
    "global": GlobalAllocation,
    "erk": ERKAllocation,
}

REGISTRY = registry.Registry(
    "allocation",
    Allocation,
    ALIASES,
    examples="kp.allocation.GlobalAllocation(min_density=0.01), "
    "kp.allocation.ThresholdAllocation(1e-3)",
)


def get(identifier):
    """An allocation from an instance, a name ("per_layer", "global", "erk"),
    `(name, {arguments})` or a serialized dict.

    Example:

    ```python
    kp.allocation.get(("global", {"min_density": 0.01}))
    ```
    """
    return REGISTRY.get(identifier)


def serialize(allocation):
    """A JSON-able config of `allocation`."""
    return REGISTRY.serialize(allocation)


def deserialize(config, custom_objects=None):
    """The allocation `serialize` described."""
    return REGISTRY.deserialize(config, custom_objects)
