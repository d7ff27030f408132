"""The mask engine: the one owner of mask state, and the gradient statistics it ranks by."""

from keras_prune.engine.engine import MaskEngine, engine_for, realised_sparsity
from keras_prune.engine.gradients import collect_gradients, gradient_statistics

__all__ = [
    "MaskEngine",
    "collect_gradients",
    "engine_for",
    "gradient_statistics",
    "realised_sparsity",
]
