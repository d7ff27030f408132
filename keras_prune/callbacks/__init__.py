"""Callbacks that drive mask updates from `model.fit` and record sparsity."""

from keras_prune.callbacks.pruning_callback import PruningCallback
from keras_prune.callbacks.pruning_summaries import PruningSummaries, layer_sparsity
from keras_prune.callbacks.steps import StepWindows

__all__ = ["PruningCallback", "PruningSummaries", "StepWindows", "layer_sparsity"]
