"""Callbacks that drive mask updates from `model.fit` and record sparsity."""

from keras_prune.callbacks.pruning_callback import (
    PruningCallback,
    PruningSummaries,
    StepWindows,
    UpdatePruningStep,
    layer_sparsity,
    realised_sparsity,
)
