"""Dynamic pruning: runtime-adaptive width (slimmable models) and input-dependent early exit."""

from keras_prune.dynamic.batchnorm import recalibrate_batchnorm
from keras_prune.dynamic.permutation import order_channels, permute_channels, permuted_values
from keras_prune.dynamic.slimmable import SlimmableModel
from keras_prune.dynamic.width import width_channels

__all__ = [
    "SlimmableModel",
    "order_channels",
    "permute_channels",
    "permuted_values",
    "recalibrate_batchnorm",
    "width_channels",
]
