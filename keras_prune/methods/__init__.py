"""Pruning methods built on the mask engine: lottery tickets, sparse training from scratch
(SET, RigL), sparsity penalties on learnable masks."""

from keras_prune.methods.lottery_ticket import LotteryTicket
from keras_prune.methods.regularization import penalize_masks
from keras_prune.methods.sparse_training import SET, RigL, drop_and_grow

__all__ = ["SET", "LotteryTicket", "RigL", "drop_and_grow", "penalize_masks"]
