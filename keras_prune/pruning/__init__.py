"""Whole-model pruning: `prune`, `strip`, `prune_once`, `update_masks`, the allocation `prune`
declares by default, and the report and model class they return."""

from keras_prune.pruning.one_shot import prune_once
from keras_prune.pruning.planning import PruneReport
from keras_prune.pruning.prune_strip import default_allocation, prune, strip, update_masks
from keras_prune.pruning.pruned_model import PrunedModel

__all__ = [
    "PruneReport",
    "PrunedModel",
    "default_allocation",
    "prune",
    "prune_once",
    "strip",
    "update_masks",
]
