"""Post-training pruning from calibration data, without retraining: SparseGPT, Wanda, magnitude.

Example:

```python
pruned = kp.posttraining.prune_posttraining(
    trained, x_train[:256], method="wanda", granularity="2:4"
)
print(pruned.posttraining_report)
```
"""

from keras_prune.posttraining.calibration import Calibration, calibration_batches
from keras_prune.posttraining.methods import Magnitude, PosttrainingMethod, SparseGPT, Wanda
from keras_prune.posttraining.prune_posttraining import prune_posttraining
from keras_prune.posttraining.report import PosttrainingReport
from keras_prune.posttraining.wanda import wanda_scores

__all__ = [
    "Calibration",
    "Magnitude",
    "PosttrainingMethod",
    "PosttrainingReport",
    "SparseGPT",
    "Wanda",
    "calibration_batches",
    "prune_posttraining",
    "wanda_scores",
]
