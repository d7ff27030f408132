"""The prunable wrapper and what it knows about layers' weights."""

from keras_prune.layers.layouts import PrunableWeight, WeightPlan, prunable_weights, weight_plan
from keras_prune.layers.wrapper import PruneWrapper, find_wrappers

__all__ = [
    "PrunableWeight",
    "PruneWrapper",
    "WeightPlan",
    "find_wrappers",
    "prunable_weights",
    "weight_plan",
]
