"""Dynamic pruning: a model that does less work when it can, measured on LiteRT.

- Runtime-adaptive width: `SlimmableModel` trains one set of weights at several widths
  (sandwich rule, in-place distillation); `export_widths` writes one verified `.tflite` file per
  width; `WidthPicker` chooses the widest width that meets a latency budget;
  `kp.shrink(model, width=...)` materialises any trained width.
- Input-dependent early exit: `EarlyExitModel` adds exit heads; `calibrate_threshold` picks the
  confidence threshold for a target accuracy; `export_stages` writes one verified file per
  stage; `StagedRunner` runs them until an exit is confident.
- Channel gating: `ChannelGate`, a per-input channel saliency gate with top-k selection,
  trained with the sparsity regularizers. LiteRT cannot skip the channels it zeroes, so it
  saves no time on the device; its statistics (`gate_channel_scores`) rank channels for static
  pruning (`remove_gates`, `prune_by_gate_scores`, then `kp.shrink`).
"""

from keras_prune.dynamic.batchnorm import recalibrate_batchnorm
from keras_prune.dynamic.early_exit import EarlyExitModel
from keras_prune.dynamic.gating import (
    ChannelGate,
    gate_channel_scores,
    prune_by_gate_scores,
    remove_gates,
)
from keras_prune.dynamic.permutation import order_channels, permute_channels, permuted_values
from keras_prune.dynamic.slimmable import SlimmableModel
from keras_prune.dynamic.stage_export import export_stages
from keras_prune.dynamic.staged_runner import StagedRunner
from keras_prune.dynamic.stages import StageSplitError, stage_models
from keras_prune.dynamic.threshold import ThresholdCalibration, calibrate_threshold
from keras_prune.dynamic.width_export import export_widths
from keras_prune.dynamic.width_picker import WidthPicker
from keras_prune.surgery.width import width_channels

__all__ = [
    "ChannelGate",
    "EarlyExitModel",
    "SlimmableModel",
    "StageSplitError",
    "StagedRunner",
    "ThresholdCalibration",
    "WidthPicker",
    "calibrate_threshold",
    "export_stages",
    "export_widths",
    "gate_channel_scores",
    "order_channels",
    "permute_channels",
    "permuted_values",
    "prune_by_gate_scores",
    "recalibrate_batchnorm",
    "remove_gates",
    "stage_models",
    "width_channels",
]
