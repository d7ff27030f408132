"""Distillation-aware pruning: train a (pruned) student with a frozen teacher in `model.fit`."""

from keras_prune.distill.distiller import Distiller, ends_in_softmax
from keras_prune.distill.losses import (
    AttentionTransfer,
    FeatureMatching,
    SoftTargets,
    attention_map,
    attention_transfer_loss,
    feature_matching_loss,
    soft_target_loss,
)
from keras_prune.distill.schedule import DistillSchedule

__all__ = [
    "AttentionTransfer",
    "DistillSchedule",
    "Distiller",
    "FeatureMatching",
    "SoftTargets",
    "attention_map",
    "attention_transfer_loss",
    "ends_in_softmax",
    "feature_matching_loss",
    "soft_target_loss",
]
