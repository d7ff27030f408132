"""keras_prune: pruning for Keras 3, exported to TFLite / LiteRT.

Example:

```python
import keras_prune as kp

pruned = kp.prune(model, schedule=kp.PolynomialDecay(0.0, 0.9, begin_step=0, end_step=1000))
pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
pruned.fit(x, y, epochs=5, callbacks=[kp.PruningCallback()])
kp.summary(pruned)
plain = kp.strip(pruned)
```
"""

from keras_prune import callbacks, engine, export, graph, layers, methods, posttraining, pruning
from keras_prune.callbacks import PruningCallback, PruningSummaries, UpdatePruningStep
from keras_prune.core import (
    allocation,
    criteria,
    granularity,
    mask_types,
    masks,
    regularizers,
    schedules,
)
from keras_prune.core.allocation import (
    ERKAllocation,
    GlobalAllocation,
    PercentileAllocation,
    PerLayerAllocation,
    ThresholdAllocation,
)
from keras_prune.core.granularity import Block, Channel, NofM, Unstructured
from keras_prune.core.mask_types import BinaryMask, LearnableMask, SigmoidGateMask
from keras_prune.core.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule
from keras_prune.distill import losses as distill
from keras_prune.distill.distiller import Distiller
from keras_prune.distill.losses import (
    AttentionTransfer,
    DistillSchedule,
    FeatureMatching,
    SoftTargets,
)
from keras_prune.engine.gradients import collect_gradients
from keras_prune.graph import groups
from keras_prune.graph.groups import Group, Member, channel_groups
from keras_prune.layers import layouts
from keras_prune.layers.wrapper import PruneWrapper, find_wrappers
from keras_prune.methods import (
    SET,
    IterativeSparsity,
    LotteryTicket,
    OneShotSparsity,
    RigL,
    penalize_masks,
    prune_once,
)
from keras_prune.posttraining import prune_posttraining
from keras_prune.pruning import (
    PrunableLayer,
    PrunedModel,
    PruneReport,
    prune,
    prune_low_magnitude,
    prune_scope,
    strip,
    strip_pruning,
    update_masks,
)
from keras_prune.reporting import macs
from keras_prune.reporting.summary import summary
from keras_prune.surgery import depth, ffn, heads
from keras_prune.surgery import prune_channels as channel_pruning
from keras_prune.surgery.channel_importance import group_scores, zero_group_channels
from keras_prune.surgery.prune_channels import loss_gradients, prune_channels
from keras_prune.surgery.shrink import ShrinkReport, shrink

__version__ = "0.1.0"
