"""Structured surgery: remove channels for real, so the model gets smaller and faster.

`shrink` turns zeroed channels into a smaller dense model with the same outputs;
`prune_channels` prunes a trained model one shot to a sparsity or a MACs / parameter budget,
which `ShrunkCost` prices for any channels kept per group without building the model.
Transformer structure has a module each: `heads` (attention heads), `ffn` (feed-forward
neurons) and `depth` (whole residual blocks): score, mask, and remove with `shrink`.
"""

from keras_prune.surgery import depth, ffn, heads
from keras_prune.surgery.prune_channels import prune_channels
from keras_prune.surgery.shrink import ShrinkReport, shrink
from keras_prune.surgery.shrunk_cost import ShrunkCost
from keras_prune.surgery.zeros import removable_channels, zero_channels, zero_group_channels

__all__ = [
    "ShrinkReport",
    "ShrunkCost",
    "depth",
    "ffn",
    "heads",
    "prune_channels",
    "removable_channels",
    "shrink",
    "zero_channels",
    "zero_group_channels",
]
