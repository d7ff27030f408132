"""tensorflow-model-optimization's pruning names, for code migrating from Keras 2.

Replace `tfmot.sparsity.keras` by `kp.tfmot` and keep the rest: `prune_low_magnitude`,
`strip_pruning`, `UpdatePruningStep`, `PruningSummaries`, `ConstantSparsity`,
`PolynomialDecay`, `PruningSchedule`, `PrunableLayer`, `prune_scope`,
`PruneForLatencyOnXNNPack`. The schedules step exactly as tfmot's (the k-th batch is step k).
docs/migrating_from_tfmot.md lists what differs on purpose.

Example:

```python
import keras_prune as kp

pruned = kp.tfmot.prune_low_magnitude(
    model, pruning_schedule=kp.tfmot.PolynomialDecay(0.0, 0.5, begin_step=0, end_step=100))
pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
pruned.fit(x, y, callbacks=[kp.tfmot.UpdatePruningStep()])
plain = kp.tfmot.strip_pruning(pruned)
```
"""

from keras_prune.callbacks.pruning_callback import UpdatePruningStep
from keras_prune.callbacks.pruning_summaries import PruningSummaries
from keras_prune.core.schedules import PolynomialDecay, PruningSchedule
from keras_prune.tfmot.compat import PrunableLayer, PruneForLatencyOnXNNPack, prune_scope
from keras_prune.tfmot.entry_points import prune_low_magnitude, strip_pruning
from keras_prune.tfmot.schedules import ConstantSparsity

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PrunableLayer",
    "PruneForLatencyOnXNNPack",
    "PruningSchedule",
    "PruningSummaries",
    "UpdatePruningStep",
    "prune_low_magnitude",
    "prune_scope",
    "strip_pruning",
]
