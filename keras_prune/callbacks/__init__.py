"""Callbacks that drive mask updates from `model.fit` and record sparsity."""

from keras_prune.callbacks.pruning_callback import PruningCallback, UpdatePruningStep
from keras_prune.callbacks.pruning_summaries import PruningSummaries, layer_sparsity
from keras_prune.callbacks.steps import StepWindows
from keras_prune.engine.engine import realised_sparsity

__all__ = [
    "PruningCallback",
    "PruningSummaries",
    "StepWindows",
    "UpdatePruningStep",
    "layer_sparsity",
    "realised_sparsity",
]
