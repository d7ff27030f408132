"""`SensitivityAllocation`: per-layer sparsities that cost every layer the same metric drop.

From the curves of `kp.auto.sensitivity` (the drop of a metric when one layer alone is pruned
to each sparsity of a grid), the allocation finds, for the overall sparsity a schedule asks for,
the drop `t` at which pruning each layer "as far as costs at most `t`" removes exactly that
many weights overall:

    s_l(t) = max { s in [0, max_sparsity] : drop_l(s) <= t }
    sum_l n_l * s_l(t) = sparsity * sum_l n_l          (n_l: weights of layer l)

`drop_l` is the curve made monotone (a running maximum, clipped at 0) and linear between grid
points, plus `1e-6 * s` so that layers whose curve is flat share the sparsity equally; `t` is
found by bisection. Layers without a curve get the scheduled sparsity, as with
`PerLayerAllocation`. If the target is beyond every layer at `max_sparsity`, every layer gets
`max_sparsity`.
"""

import keras
import numpy as np
from keras import ops

from keras_prune.core import validation
from keras_prune.core.allocation import Allocation

# Tie-breaker slope: makes every curve strictly increasing, so flat (insensitive) layers are
# pruned alike instead of one of them taking all the sparsity.
_SLOPE = 1e-6


def monotone_curve(grid, drops, worst=np.inf):
    """Points `(sparsities, drops)` of a sensitivity curve through (0, 0) made monotone: a
    running maximum, never below 0. A drop that is NaN or +inf (the metric diverged) counts
    as `worst`, worse than any real one.

    Example:

    ```python
    monotone_curve([0.5, 1.0], [0.2, 0.1])  # ([0, 0.5, 1], [0, 0.2, 0.2]): the dip is ignored
    ```
    """
    xs = np.concatenate([[0.0], np.asarray(grid, np.float64)])
    ys = np.concatenate([[0.0], np.asarray(drops, np.float64)])
    ys = np.nan_to_num(ys, nan=worst, posinf=worst, neginf=0.0)
    return xs, np.maximum.accumulate(np.maximum(ys, 0.0))


def _envelope(grid, drops):
    """The monotone curve, plus the tie-breaking slope."""
    xs, ys = monotone_curve(grid, drops)
    return xs, ys + _SLOPE * xs


def _sparsity_at(xs, ys, drop, cap):
    """The largest sparsity whose (interpolated) drop is at most `drop`, capped at `cap`."""
    if drop >= ys[-1]:
        return min(float(xs[-1]) if np.isfinite(ys[-1]) else cap, cap)
    position = int(np.searchsorted(ys, drop, side="right"))
    if position == 0:
        return 0.0
    x0, x1, y0, y1 = xs[position - 1], xs[position], ys[position - 1], ys[position]
    if not np.isfinite(y1) or y1 <= y0:
        return float(min(x0, cap))
    return float(min(x0 + (x1 - x0) * (drop - y0) / (y1 - y0), cap))


def equal_drop_sparsities(curves, grid, sizes, sparsity, max_sparsity=None):
    """Per-layer sparsities with equal metric drop whose size-weighted mean is `sparsity`.

    Args:
        curves: `{layer name: [drop at each grid sparsity]}`.
        grid: the sparsities the drops were measured at (increasing).
        sizes: `{layer name: number of weights}` (the weighting).
        sparsity: the overall target in [0, 1).
        max_sparsity: no layer goes beyond this (default: the largest grid sparsity).

    Returns:
        `{layer name: sparsity}`.

    Example:

    ```python
    kp.auto.equal_drop_sparsities(
        {"a": [0.0, 0.1], "b": [0.2, 0.9]}, [0.5, 0.9], {"a": 100, "b": 100}, 0.6
    )  # "a" prunes more than "b"
    ```
    """
    validation.check_sparsity("sparsity", sparsity)
    cap = float(max(grid)) if max_sparsity is None else float(max_sparsity)
    names = list(curves)
    if not names:
        return {}
    envelopes = {name: _envelope(grid, curves[name]) for name in names}
    weights = np.array([float(sizes[name]) for name in names])
    total = weights.sum()

    def mean_at(drop):
        values = np.array([_sparsity_at(*envelopes[n], drop, cap) for n in names])
        return float(values @ weights / total), values

    high = max(float(ys[np.isfinite(ys)].max()) for _, ys in envelopes.values()) + 1.0
    if mean_at(high)[0] <= sparsity:
        return {name: cap for name in names}
    low = 0.0
    for _ in range(60):
        middle = (low + high) / 2
        if mean_at(middle)[0] < sparsity:
            low = middle
        else:
            high = middle
    _, values = mean_at(high)
    return {name: float(value) for name, value in zip(names, values, strict=True)}


@keras.saving.register_keras_serializable(package="keras_prune")
class SensitivityAllocation(Allocation):
    """Prune each layer as far as costs every layer the same metric drop (from sensitivity
    curves); the overall sparsity is the schedule's.

    Args:
        curves: `{layer name: [metric drop at each grid sparsity]}`, e.g. from
            `kp.auto.sensitivity(...).allocation()`.
        grid: the sparsities the drops were measured at.
        max_sparsity: no layer goes beyond this (default: the largest grid sparsity).

    Example:

    ```python
    scan = kp.auto.sensitivity(model, (x, y), verbose=0)
    pruned = kp.prune_once(model, 0.9, allocation=scan.allocation())
    ```
    """

    def __init__(self, curves, grid, max_sparsity=None):
        if not isinstance(curves, dict) or not curves:
            raise ValueError(
                "Expected `curves` to be a non-empty dict {layer name: [drop per grid "
                f"sparsity]}}. Received: curves={curves!r}"
            )
        grid = [validation.check_sparsity(f"grid[{i}]", value) for i, value in enumerate(grid)]
        if sorted(grid) != grid or len(set(grid)) != len(grid):
            raise ValueError(f"Expected `grid` to be increasing. Received: grid={grid}")
        for name, drops in curves.items():
            if len(drops) != len(grid):
                raise ValueError(
                    f"Expected one drop per grid sparsity ({len(grid)}) for layer {name!r}. "
                    f"Received: {len(drops)}"
                )
        self.curves = {str(name): [float(d) for d in drops] for name, drops in curves.items()}
        self.grid = grid
        self.max_sparsity = (
            None
            if max_sparsity is None
            else validation.check_sparsity("max_sparsity", max_sparsity)
        )

    def sparsities_for(self, sparsity, sizes):
        """`{layer name: sparsity}` for an overall `sparsity`, weighting layers by `sizes`."""
        known = {name: self.curves[name] for name in sizes if name in self.curves}
        return equal_drop_sparsities(
            known, self.grid, {name: sizes[name] for name in known}, sparsity, self.max_sparsity
        )

    def allocate(self, layers, sparsities):
        if len(set(float(s) for s in sparsities)) > 1:
            raise ValueError(
                "SensitivityAllocation spreads one overall sparsity, so all schedules must ask "
                f"for the same sparsity at the same step. Received: {list(sparsities)}"
            )
        sizes = {
            layer.name: sum(int(np.prod(ops.shape(scores))) for scores in layer.scores)
            for layer in layers
        }
        target = float(sparsities[0]) if sparsities else 0.0
        chosen = self.sparsities_for(target, sizes)
        return [layer.masks_at(chosen.get(layer.name, target)) for layer in layers]

    def get_config(self):
        return {"curves": self.curves, "grid": self.grid, "max_sparsity": self.max_sparsity}
