"""Automated compression: sensitivity analysis, latency tables measured on the target
runtime, and a multi-objective search for the best pruned model under deployment budgets.

- `sensitivity(model, validation_data)`: per-layer (or per-channel-group) curves of a metric's
  drop when that unit alone is pruned; `.allocation()` turns them into per-layer sparsities.
- `profile(model, target=...)`: per-layer latency on LiteRT (a lookup table over channel
  counts), file bytes, TFLM arena and op support, checked against the whole model.
- `search(model, validation_data, objectives=..., constraints=...)`: per-layer / per-group
  sparsities searched with Optuna; returns the Pareto front, each point one call from a model.
"""

from keras_prune.auto.sensitivity import Sensitivity, sensitivity
from keras_prune.auto.sensitivity_allocation import SensitivityAllocation, equal_drop_sparsities

__all__ = [
    "Sensitivity",
    "SensitivityAllocation",
    "equal_drop_sparsities",
    "sensitivity",
]
