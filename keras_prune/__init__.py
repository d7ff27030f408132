"""keras_prune: pruning for Keras 3, exported to TFLite / LiteRT.

The everyday calls live here; everything else in named namespaces: `kp.schedules`,
`kp.granularity`, `kp.mask_types`, `kp.criteria`, `kp.allocation`, `kp.masks`,
`kp.regularizers` (pure math), `kp.layers`, `kp.graph`, `kp.engine`, `kp.pruning`,
`kp.callbacks`, `kp.methods`, `kp.posttraining`, `kp.surgery`, `kp.distill`, `kp.reporting`,
`kp.export`, `kp.auto` (sensitivity, latency profiles, search), `kp.dynamic` (slimmable widths,
early exit, gating) and `kp.tfmot` (tfmot's names, for migrating code).

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
    auto,
    callbacks,
    distill,
    dynamic,
    engine,
    export,
    graph,
    layers,
    methods,
    posttraining,
    pruning,
    reporting,
    surgery,
    tfmot,
)
from keras_prune.callbacks import PruningCallback
from keras_prune.core import (
    allocation,
    criteria,
    granularity,
    mask_types,
    masks,
    regularizers,
    schedules,
)
from keras_prune.core.schedules import ConstantSparsity, PolynomialDecay, PruningSchedule
from keras_prune.layers import PruneWrapper
from keras_prune.pruning import prune, prune_once, strip
from keras_prune.reporting import report, summary
from keras_prune.surgery import prune_channels, shrink

__version__ = "0.1.0"

__all__ = [
    "ConstantSparsity",
    "PolynomialDecay",
    "PruneWrapper",
    "PruningCallback",
    "PruningSchedule",
    "allocation",
    "auto",
    "callbacks",
    "criteria",
    "distill",
    "dynamic",
    "engine",
    "export",
    "granularity",
    "graph",
    "layers",
    "mask_types",
    "masks",
    "methods",
    "posttraining",
    "prune",
    "prune_channels",
    "prune_once",
    "pruning",
    "regularizers",
    "report",
    "reporting",
    "schedules",
    "shrink",
    "strip",
    "summary",
    "surgery",
    "tfmot",
]
