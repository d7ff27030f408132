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

from keras_prune import (
    allocation,
    channel_pruning,
    criteria,
    distill,
    export,
    granularity,
    groups,
    layouts,
    macs,
    mask_types,
    masks,
    methods,
    regularizers,
    schedules,
)
from keras_prune.allocation import (
    ERKAllocation,
    GlobalAllocation,
    PercentileAllocation,
    PerLayerAllocation,
    ThresholdAllocation,
)
from keras_prune.callbacks import PruningCallback, PruningSummaries, UpdatePruningStep
from keras_prune.channel_pruning import loss_gradients, prune_channels
from keras_prune.criteria import collect_gradients
from keras_prune.distill import AttentionTransfer, DistillSchedule, FeatureMatching, SoftTargets
from keras_prune.distiller import Distiller
from keras_prune.granularity import Block, Channel, NofM, Unstructured
from keras_prune.groups import Group, Member, channel_groups, group_scores, zero_group_channels
from keras_prune.mask_types import BinaryMask, LearnableMask, SigmoidGateMask
from keras_prune.methods import (
    SET,
    IterativeSparsity,
    LotteryTicket,
    OneShotSparsity,
    RigL,
    penalize_masks,
    prune_once,
)
from keras_prune.pruning import (
    PruneReport,
    find_wrappers,
    prune,
    prune_low_magnitude,
    strip,
    strip_pruning,
    update_masks,
)
from keras_prune.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule
from keras_prune.shrink import ShrinkReport, shrink
from keras_prune.summary import summary
from keras_prune.wrapper import PruneWrapper

__version__ = "0.1.0"
