"""Whole-model pruning: `prune`, `strip`, `prune_once`, `update_masks` and tfmot's names."""

from keras_prune.pruning.prune_strip import (
    PruneReport,
    find_wrappers,
    prune,
    prune_low_magnitude,
    strip,
    strip_pruning,
    update_masks,
)
