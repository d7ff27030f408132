"""Automated compression: sensitivity analysis, latency tables measured on the target
runtime, and a multi-objective search for the best pruned model under deployment budgets.

- `sensitivity(model, validation_data)`: per-layer (or per-channel-group) curves of a metric's
  drop when that unit alone is pruned; `.allocation()` turns them into per-layer sparsities.
- `profile(model, target=...)`: per-layer latency on LiteRT (a lookup table over channel
  counts), file bytes, TFLM arena and op support, checked against the whole model.
- `search(model, validation_data, objectives=..., constraints=...)`: per-layer / per-group
  sparsities searched with Optuna; returns the Pareto front, each point one call from a model.
"""

from keras_prune.auto.constraints import Constraint
from keras_prune.auto.latency_profile import BlockCost, Profile, profile
from keras_prune.auto.objectives import Objective
from keras_prune.auto.pareto_search import search
from keras_prune.auto.search_result import Candidate, SearchResult
from keras_prune.auto.sensitivity_allocation import SensitivityAllocation, equal_drop_sparsities
from keras_prune.auto.sensitivity_analysis import Sensitivity, sensitivity

__all__ = [
    "BlockCost",
    "Candidate",
    "Constraint",
    "Objective",
    "Profile",
    "SearchResult",
    "Sensitivity",
    "SensitivityAllocation",
    "equal_drop_sparsities",
    "profile",
    "search",
    "sensitivity",
]
