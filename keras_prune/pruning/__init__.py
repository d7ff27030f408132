"""Whole-model pruning: `prune`, `strip`, `prune_once`, `update_masks` and tfmot's names."""

from keras_prune.pruning.one_shot import prune_once
from keras_prune.pruning.prune_strip import (
    PruneReport,
    prune,
    prune_low_magnitude,
    strip,
    strip_pruning,
    update_masks,
)
from keras_prune.pruning.pruned_model import PrunedModel
from keras_prune.pruning.tfmot_names import PrunableLayer, PruneForLatencyOnXNNPack, prune_scope

__all__ = [
    "PrunableLayer",
    "PruneForLatencyOnXNNPack",
    "PruneReport",
    "PrunedModel",
    "prune",
    "prune_low_magnitude",
    "prune_once",
    "prune_scope",
    "strip",
    "strip_pruning",
    "update_masks",
]
